#!/usr/bin/env python3
"""Packs the training set small enough to travel to a lent GPU machine (the workplace's `device`
tool: the working tree plus carried paths must stay under 64 MiB, and that machine cannot reach
the network to rebuild the set itself).

    python3 python/scripts/device_pack.py [--data data/] [--out device-data/] [--short-side 256] [--quality 92]

Reads data/train.rtds and data/val.rtds (reptok.build_dataset) and writes them as ImageFolder
trees of JPEGs, OUT/train/CLASS/NNNNN.jpg and OUT/val/CLASS/NNNNN.jpg (the class names of the
packs), each picture shrunk (area filter) so that its short side is at most --short-side. The
split stays the packs' split. reptok.train reads such folders (--data OUT/train --val
OUT/val); tools/device_train.sh runs it there. The JPEG copies only feed training and the
exporter's own estimates: every number reported is measured afterwards here, by `rttrain eval`
on data/val.rtds. Exits non-zero when the result is over --max-mb (default 36 MB).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys

from reptok.rtds import DataError, RTDSPack


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data", help="folder with train.rtds and val.rtds (default data/)")
    ap.add_argument("--out", default="device-data", help="output folder (replaced; default device-data/)")
    ap.add_argument("--short-side", type=int, default=256, help="short side cap in pixels (default 256)")
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality (default 92)")
    ap.add_argument("--max-mb", type=float, default=36.0, help="fail above this many MB in all (default 36)")
    a = ap.parse_args(argv)
    if a.short_side < 16 or not 1 <= a.quality <= 100:
        print("device_pack: --short-side must be >= 16 and --quality 1..100", file=sys.stderr)
        return 2
    try:
        from PIL import Image
    except ImportError:
        print("device_pack: needs Pillow (pip install Pillow)", file=sys.stderr)
        return 2
    tmp = a.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    total = 0
    for split in ("train", "val"):
        path = os.path.join(a.data, split + ".rtds")
        try:
            ds = RTDSPack(path)
        except DataError as e:
            print(f"device_pack: {e} (build it: reptok-build-dataset --out {a.data})", file=sys.stderr)
            return 1
        n = 0
        for i in range(ds.count):
            px = ds.pixels(i)
            h, w = px.shape[:2]
            im = Image.fromarray(px.copy(), "RGB")
            s = min(w, h)
            if s > a.short_side:
                k = a.short_side / s
                im = im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.BOX)
            d = os.path.join(tmp, split, ds.class_names[ds.class_id(i)])
            os.makedirs(d, exist_ok=True)
            f = os.path.join(d, f"{i:05d}.jpg")
            im.save(f, "JPEG", quality=a.quality, subsampling=0)
            total += os.path.getsize(f)
            n += 1
        print(f"device_pack: {split}: {n} pictures", file=sys.stderr)
    mb = total / 1e6
    if mb > a.max_mb:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"device_pack: {mb:.1f} MB is over --max-mb {a.max_mb:g}: lower --short-side or --quality", file=sys.stderr)
        return 1
    shutil.rmtree(a.out, ignore_errors=True)
    os.replace(tmp, a.out)
    print(f"device_pack: {a.out}: {mb:.1f} MB (short side <= {a.short_side}, JPEG quality {a.quality})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
