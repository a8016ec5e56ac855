#!/usr/bin/env python3
"""Pick 6 small test pictures from the VALIDATION split into corpus/, with their provenance.

Run after reptok.build_dataset (it reads <data>/val.json and <data>/val.rtds; installs nothing):

    python3 python/scripts/make_corpus.py                # data/ -> corpus/
    python3 python/scripts/make_corpus.py --data data/ --out corpus/

Slots (one picture each, varied on purpose): nature, face, street, animal, object/indoor, video
frame. Within a slot the pick is the first by a seeded hash of the picture's key among the
validation pictures whose short side is at least --min-side (so the choice is reproducible and
changes only when the split does). Each picture is written as PNG, shrunk (Lanczos) so its long
side is at most --max-side and the file is under --max-bytes; a picture whose original file is a
small JPEG (already under both caps, upright, RGB) is copied unchanged instead. corpus/SOURCES.md
records, per file: source package and version, original path, licence and the transformation.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SLOTS = [
    # (slot name, predicate over a val.json record)
    ("nature", lambda r: r["class"] == "nature" and r["kind"] == "still"),
    ("face", lambda r: r["class"] == "faces" and r["kind"] == "still"),
    ("street", lambda r: r["class"] == "street"),
    ("animal", lambda r: r["class"] == "animals" and r["kind"] == "still"),
    ("object", lambda r: r["class"] in ("objects", "album") and r["kind"] == "still"),
    ("videoframe", lambda r: r["kind"] == "frame"),
]


def read_rtds(path: Path):
    """Minimal validating reader: returns (class names, [(offset, w, h, class)], bytes)."""
    b = path.read_bytes()
    if len(b) < 64 or b[:8] != b"RTDSPACK":
        raise SystemExit(f"{path}: not an .rtds pack")
    version, hsize, count, index_off, names_off, names_size, ncls, data_off, fsize = \
        struct.unpack_from("<IIQQQIIQQ", b, 8)
    if version != 1 or hsize != 64 or fsize != len(b) or index_off + 32 * count > len(b):
        raise SystemExit(f"{path}: bad .rtds header")
    names, p = [], names_off
    for _ in range(ncls):
        (n,) = struct.unpack_from("<H", b, p)
        names.append(b[p + 2:p + 2 + n].decode())
        p += 2 + n
    entries = []
    for i in range(count):
        off, w, h, cls = struct.unpack_from("<QIIH", b, index_off + 32 * i)
        if off + w * h * 3 > len(b):
            raise SystemExit(f"{path}: image {i} out of bounds")
        entries.append((off, w, h, cls))
    return names, entries, b


def seeded(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:40]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data"), help="folder with val.json / val.rtds (default data/)")
    ap.add_argument("--out", default=str(ROOT / "corpus"), help="output folder (default corpus/)")
    ap.add_argument("--seed", type=int, default=7, help="pick seed (default 7)")
    ap.add_argument("--max-side", type=int, default=320, help="long side cap in pixels (default 320)")
    ap.add_argument("--min-side", type=int, default=160, help="skip pictures whose short side is smaller (default 160)")
    ap.add_argument("--max-bytes", type=int, default=100_000, help="per-file size cap (default 100000)")
    a = ap.parse_args()

    data, out = Path(a.data), Path(a.out)
    sys.path.insert(0, str(data / "cache" / "pylib"))   # Pillow, if build_dataset had to install it
    try:
        from PIL import Image
    except ImportError:
        raise SystemExit("Pillow is missing: run reptok.build_dataset first (it installs it)")

    meta = json.loads((data / "val.json").read_text())
    names, entries, blob = read_rtds(data / "val.rtds")
    recs = meta["images"]
    if len(recs) != len(entries) or names != meta["classes"]:
        raise SystemExit("val.json and val.rtds disagree: rebuild with reptok.build_dataset")

    def key(r):
        return r["path"] + (f"#{r['frame']}" if r["frame"] is not None else "")

    chosen, used_units = [], set()
    for slot, pred in SLOTS:
        cands = [r for r in recs if pred(r) and r["unit"] not in used_units
                 and min(r["width"], r["height"]) >= min(a.min_side, 10**9)]
        if not cands:   # relax the size floor before giving up
            cands = [r for r in recs if pred(r) and r["unit"] not in used_units]
        if not cands:
            print(f"  ! no validation picture for slot '{slot}'")
            continue
        r = min(cands, key=lambda r: seeded(a.seed, key(r)))
        used_units.add(r["unit"])
        chosen.append((slot, r))

    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if re.match(r"^\d\d_.*\.(png|jpg)$", old.name):
            old.unlink()

    rows, total = [], 0
    for n, (slot, r) in enumerate(chosen, 1):
        off, w, h, _ = entries[r["index"]]
        im = Image.frombytes("RGB", (w, h), blob[off:off + w * h * 3])
        stem = Path(r["path"].split(":")[-1]).stem
        base = f"{n:02d}_{slot}_{slug(stem)}" + (f"_f{r['frame']:04d}" if r["frame"] is not None else "")
        data_bytes, how = None, None
        # an original small JPEG, unchanged
        orig = data / "cache" / "pkg" / r["source"] / r["path"].lstrip("/")
        if (r["kind"] == "still" and orig.suffix.lower() in (".jpg", ".jpeg") and orig.is_file()
                and orig.stat().st_size <= a.max_bytes and max(r["orig_width"], r["orig_height"]) <= a.max_side
                and r["flags"] & (2 | 4 | 8) == 0):
            data_bytes = orig.read_bytes()
            fname = base + ".jpg"
            how = (f"original JPEG, unchanged ({r['orig_width']}x{r['orig_height']}); identical in content "
                   f"to the training pipeline's input")
        else:
            side = a.max_side
            while True:
                s = min(1.0, side / max(w, h))
                tw, th = max(1, round(w * s)), max(1, round(h * s))
                small = im.resize((tw, th), Image.LANCZOS) if (tw, th) != (w, h) else im
                buf = io.BytesIO()
                small.save(buf, "PNG", optimize=True)
                if buf.tell() <= a.max_bytes or side <= 96:
                    break
                side -= 32
            data_bytes = buf.getvalue()
            fname = base + ".png"
            steps = [f"decoded ({r['orig_width']}x{r['orig_height']})"]
            if r["kind"] == "frame":
                by = "by ffmpeg " if r["path"].lower().endswith((".mp4", ".avi", ".mkv", ".webm")) else ""
                steps[0] = f"frame {r['frame']} of the clip decoded {by}({r['orig_width']}x{r['orig_height']})"
            if r["flags"] & 8:
                steps.append("turned upright (EXIF / album metadata)")
            if r["flags"] & 2:
                steps.append("grey replicated to RGB")
            steps.append(f"RGB8, Lanczos to {w}x{h} (reptok.build_dataset, short side <= 512)"
                         if r["flags"] & 16 else f"RGB8 at {w}x{h} (reptok.build_dataset)")
            if (tw, th) != (w, h):
                steps.append(f"Lanczos to {tw}x{th}")
            steps.append("PNG")
            how = ", ".join(steps)
        (out / fname).write_bytes(data_bytes)
        total += len(data_bytes)
        rows.append((fname, slot, r, how, len(data_bytes)))
        print(f"  {fname:50s} {len(data_bytes) / 1000:6.1f} KB  {r['source']}  {r['path']}")

    lines = [
        "# corpus/: small test pictures and where they come from",
        "",
        "Written by `python3 python/scripts/make_corpus.py` from the VALIDATION split of the training set",
        "(`python3 -m reptok.build_dataset --out data/`; see docs/DATASET.md), so none of them is a",
        "training picture. The pick is reproducible (seeded by `--seed`, default 7); rebuilding the",
        "dataset with the same inputs gives the same files. Licences are those of the source packages",
        "(for gcompris pictures, the per-picture credit from the README inside the .rcc resource).",
        "",
        "| file | what | class | source package | original path | licence | transformation |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for fname, slot, r, how, size in rows:
        pkg = r["source"] + (f" {r['package_version']}" if r.get("package_version") else "")
        path = r["path"] + (f" (frame {r['frame']})" if r["frame"] is not None else "")
        lic = r["licence"].replace("|", "/")
        lines.append(f"| `{fname}` | {slot} | {r['class']} | {pkg} | `{path}` | {lic} | {how} |")
    lines += ["", f"{len(rows)} files, {total / 1000:.1f} KB in all.", ""]
    (out / "SOURCES.md").write_text("\n".join(lines))
    print(f"  {len(rows)} files, {total / 1000:.1f} KB -> {out}/ (+ SOURCES.md)")


if __name__ == "__main__":
    main()
