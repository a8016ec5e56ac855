#!/usr/bin/env python3
"""Classical-codec baseline for reptok: JPEG, WebP, AVIF and JPEG XL at tiny byte budgets.

Run from the repository root (Python 3.11; numpy, Pillow, scikit-image, torch, pytorch-msssim):

    python3 python/scripts/compare_classical.py --json runs/classical.json            # corpus/*.png
    python3 python/scripts/compare_classical.py img1.png img2.png --json out.json     # other images

Use validation images only (corpus/ is validation data, never training data).

Codecs are the Debian command-line tools; missing ones are installed with
`apt-get update` (once) + `apt-get install -y PKG` unless --no-install is given. A codec whose
package does not exist on this system is skipped with a message.

    jpeg  cjpeg/djpeg    (libjpeg-turbo-progs)  cjpeg -quality Q -optimize
    webp  cwebp/dwebp    (webp)                 cwebp -q Q -m 6 -metadata none
    avif  avifenc/avifdec(libavif-bin)          avifenc --min Q --max Q -y 420 -s 6 -j 1 (Q: 0..63 quantizer)
    jxl   cjxl/djxl      (libjxl-tools)         cjxl -d D -e 7 --num_threads=1

Two families of settings per codec and image:
  (a) "full":  the original image at its original size over the codec's quality range, down to
               its lowest quality (smallest file);
  (b) "down":  the image downscaled with Pillow Lanczos (antialiased) so that its LONGER side is
               16, 24, 32 or 48 px (aspect kept, shorter side >= 1), encoded at the codec's lowest
               quality and a few others, decoded and upscaled back (Pillow bicubic) to the original
               size -- the fair classical answer to "a picture in ~100 bytes".

For each (codec, family, setting, image) the row holds: file bytes, bpp = bytes*8 / original
pixels, PSNR, SSIM (skimage, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False) and MS-SSIM (pytorch_msssim.ms_ssim(data_range=255) on float32
tensors, only when the smaller side > 160; null otherwise), all against the original RGB image.

Summary (printed, and stored under "summary" in the JSON): per codec and byte budget
64/128/256/512 B, the mean over images of the best PSNR reachable per image with a file of
<= budget bytes, choosing per image among all (a)+(b) settings (the SSIM of that same choice is
shown too); plus the mean of the per-image smallest file, overall and at the original size only.
A budget cell is "-" unless every image has at least one fitting file (the count is shown).

Input files are re-written as metadata-free PNG/PPM in a temporary directory before encoding, so
file sizes never carry ICC/EXIF payloads from the source. Everything is deterministic (single
threaded encoders, fixed settings, one torch thread).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

CODECS = {
    "jpeg": {"pkg": "libjpeg-turbo-progs", "bins": ["cjpeg", "djpeg"]},
    "webp": {"pkg": "webp", "bins": ["cwebp", "dwebp"]},
    "avif": {"pkg": "libavif-bin", "bins": ["avifenc", "avifdec"]},
    "jxl": {"pkg": "libjxl-tools", "bins": ["cjxl", "djxl"]},
}

# (a) full-size quality sweeps, lowest quality first.
FULL_SETTINGS = {
    "jpeg": [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95],
    "webp": [0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95],
    "avif": [63, 62, 60, 58, 55, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 10],  # quantizer
    "jxl": [25.0, 20.0, 15.0, 12.0, 10.0, 8.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.5],  # distance
}
# (b) downscaled: lowest quality plus a few others.
DOWN_SETTINGS = {
    "jpeg": [1, 10, 30, 60, 90],
    "webp": [0, 25, 50, 80, 95],
    "avif": [63, 52, 40, 28, 16],
    "jxl": [25.0, 10.0, 4.0, 1.5, 0.5],
}
DOWN_SIDES = [16, 24, 32, 48]
BUDGETS = [64, 128, 256, 512]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


# ----------------------------------------------------------------------------- tools

_apt_updated = False


def ensure_codec(name: str, install: bool) -> bool:
    global _apt_updated
    info = CODECS[name]
    if all(shutil.which(b) for b in info["bins"]):
        return True
    if not install:
        log(f"[skip] {name}: {', '.join(info['bins'])} not found (and --no-install given)")
        return False
    if shutil.which("apt-get") is None:
        log(f"[skip] {name}: binaries missing and apt-get not available")
        return False
    try:
        if not _apt_updated:
            log("[apt] apt-get update")
            subprocess.run(["apt-get", "update"], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _apt_updated = True
        pol = subprocess.run(["apt-cache", "policy", info["pkg"]], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout
        if "Candidate:" not in pol or "Candidate: (none)" in pol:
            log(f"[skip] {name}: package {info['pkg']} does not exist on this system")
            return False
        log(f"[apt] apt-get install -y {info['pkg']}")
        r = subprocess.run(["apt-get", "install", "-y", info["pkg"]], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            log(f"[skip] {name}: apt-get install {info['pkg']} failed:\n{r.stdout[-2000:]}")
            return False
    except OSError as e:
        log(f"[skip] {name}: {e}")
        return False
    ok = all(shutil.which(b) for b in info["bins"])
    if not ok:
        log(f"[skip] {name}: {info['pkg']} installed but {info['bins']} still missing")
    return ok


def tool_versions(codecs) -> dict:
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            lines = [l.strip() for l in r.stdout.splitlines() if l.strip()]
            return lines[0] if lines else ""
        except OSError as e:
            return f"unavailable: {e}"

    cmds = {
        "jpeg": {"cjpeg": ["cjpeg", "-version"], "djpeg": ["djpeg", "-version"]},
        "webp": {"cwebp": ["cwebp", "-version"], "dwebp": ["dwebp", "-version"]},
        "avif": {"avifenc": ["avifenc", "--version"], "avifdec": ["avifdec", "--version"]},
        "jxl": {"cjxl": ["cjxl", "--version"], "djxl": ["djxl", "--version"]},
    }
    out = {}
    for c in codecs:
        for b, cmd in cmds[c].items():
            out[b] = first_line(cmd)
    for c in codecs:
        pkg = CODECS[c]["pkg"]
        try:
            v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True).stdout.strip()
            out[f"deb:{pkg}"] = v or None
        except OSError:
            out[f"deb:{pkg}"] = None
    import PIL, skimage, torch
    out["python"] = platform.python_version()
    out["numpy"] = np.__version__
    out["Pillow"] = PIL.__version__
    out["scikit-image"] = skimage.__version__
    out["torch"] = torch.__version__
    try:
        from importlib.metadata import version
        out["pytorch-msssim"] = version("pytorch-msssim")
    except Exception:  # noqa: BLE001
        out["pytorch-msssim"] = None
    return out


# ----------------------------------------------------------------------------- codecs

def encode_decode(codec: str, q, img: Image.Image, tmp: str) -> tuple[int, Image.Image]:
    """Encode `img` (RGB) with `codec` at setting `q`; return (file bytes, decoded RGB image)."""
    png = os.path.join(tmp, "in.png")
    ppm = os.path.join(tmp, "in.ppm")
    out_ppm = os.path.join(tmp, "out.ppm")
    out_png = os.path.join(tmp, "out.png")
    for p in (out_ppm, out_png):
        if os.path.exists(p):
            os.remove(p)
    if codec == "jpeg":
        img.save(ppm)
        comp = os.path.join(tmp, "c.jpg")
        run(["cjpeg", "-quality", str(q), "-optimize", "-outfile", comp, ppm])
        run(["djpeg", "-ppm", "-outfile", out_ppm, comp])
        dec = out_ppm
    elif codec == "webp":
        img.save(png)
        comp = os.path.join(tmp, "c.webp")
        run(["cwebp", "-quiet", "-q", str(q), "-m", "6", "-metadata", "none", png, "-o", comp])
        run(["dwebp", "-quiet", comp, "-ppm", "-o", out_ppm])
        dec = out_ppm
    elif codec == "avif":
        img.save(png)
        comp = os.path.join(tmp, "c.avif")
        run(["avifenc", "--min", str(q), "--max", str(q), "-y", "420", "-s", "6", "-j", "1",
             "--ignore-exif", "--ignore-xmp", "--ignore-icc", png, comp])
        run(["avifdec", "-j", "1", comp, out_png])
        dec = out_png
    elif codec == "jxl":
        img.save(png)
        comp = os.path.join(tmp, "c.jxl")
        run(["cjxl", png, comp, "-d", f"{q:g}", "-e", "7", "--num_threads=1", "--quiet"])
        run(["djxl", comp, out_png, "--num_threads=1", "--quiet"])
        dec = out_png
    else:
        raise ValueError(codec)
    nbytes = os.path.getsize(comp)
    with Image.open(dec) as d:
        rec = d.convert("RGB")
        rec.load()
    if rec.size != img.size:
        raise RuntimeError(f"{codec}: decoded size {rec.size} != {img.size}")
    return nbytes, rec


# ----------------------------------------------------------------------------- metrics

def metrics(ref: np.ndarray, rec: np.ndarray) -> dict:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    import torch
    from pytorch_msssim import ms_ssim

    psnr = float(peak_signal_noise_ratio(ref, rec, data_range=255))
    ssim = float(structural_similarity(ref, rec, channel_axis=-1, data_range=255,
                                       gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))
    msssim = None
    if min(ref.shape[0], ref.shape[1]) > 160:
        x = torch.from_numpy(ref.astype(np.float32)).permute(2, 0, 1)[None]
        y = torch.from_numpy(rec.astype(np.float32)).permute(2, 0, 1)[None]
        with torch.no_grad():
            msssim = float(ms_ssim(x, y, data_range=255, size_average=True))
    return {"psnr": psnr if np.isfinite(psnr) else 99.0, "ssim": ssim, "msssim": msssim}


def down_size(w: int, h: int, side: int) -> tuple[int, int]:
    if w >= h:
        return side, max(1, round(h * side / w))
    return max(1, round(w * side / h)), side


# ----------------------------------------------------------------------------- main

def summarize(rows, codecs, images):
    summ = {}
    for c in codecs:
        cr = [r for r in rows if r["codec"] == c]
        per_img = {im: [r for r in cr if r["image"] == im] for im in images}
        s = {"budgets": {}}
        for b in BUDGETS:
            best = []
            for im in images:
                fit = [r for r in per_img[im] if r["bytes"] <= b]
                if fit:
                    r = max(fit, key=lambda r: (r["psnr"], -r["bytes"]))
                    best.append(r)
            n = len(best)
            cell = {"n_fit": n, "n_images": len(images),
                    "choices": [{"image": r["image"], "family": r["family"], "side": r["side"],
                                 "setting": r["setting"], "bytes": r["bytes"],
                                 "psnr": r["psnr"], "ssim": r["ssim"]} for r in best]}
            if n == len(images) and n:
                cell["mean_psnr"] = float(np.mean([r["psnr"] for r in best]))
                cell["mean_ssim"] = float(np.mean([r["ssim"] for r in best]))
            else:
                cell["mean_psnr"] = None
                cell["mean_ssim"] = None
            s["budgets"][str(b)] = cell
        mins = [min(r["bytes"] for r in per_img[im]) for im in images if per_img[im]]
        mins_full = [min(r["bytes"] for r in per_img[im] if r["family"] == "full")
                     for im in images if any(r["family"] == "full" for r in per_img[im])]
        s["smallest_bytes_mean"] = float(np.mean(mins)) if mins else None
        s["smallest_bytes_full_size_mean"] = float(np.mean(mins_full)) if mins_full else None
        # quality of the smallest full-size file (lowest setting), mean over images
        low = [min((r for r in per_img[im] if r["family"] == "full"), key=lambda r: r["bytes"])
               for im in images if any(r["family"] == "full" for r in per_img[im])]
        s["smallest_full_size_mean_psnr"] = float(np.mean([r["psnr"] for r in low])) if low else None
        summ[c] = s
    return summ


def print_summary(summ, codecs, n_images):
    hdr = f"{'codec':6}" + "".join(f"  {'<=' + str(b) + ' B':>17}" for b in BUDGETS) + \
        f"  {'min B (any)':>11}  {'min B (full)':>12}  {'PSNR@min full':>13}"
    print(f"\nBest mean PSNR dB (mean SSIM) per image at <= budget, {n_images} images; "
          "'-' = not every image fits (n fit shown)")
    print(hdr)
    print("-" * len(hdr))
    for c in codecs:
        s = summ[c]
        line = f"{c:6}"
        for b in BUDGETS:
            cell = s["budgets"][str(b)]
            if cell["mean_psnr"] is not None:
                txt = f"{cell['mean_psnr']:.2f} ({cell['mean_ssim']:.3f})"
            else:
                txt = f"- ({cell['n_fit']}/{cell['n_images']} fit)"
            line += f"  {txt:>17}"
        sb = s["smallest_bytes_mean"]
        sf = s["smallest_bytes_full_size_mean"]
        sp = s["smallest_full_size_mean_psnr"]
        line += f"  {sb:>11.1f}  {sf:>12.1f}  {sp:>13.2f}"
        print(line)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="*", help="PNG images (default: corpus/*.png)")
    ap.add_argument("--json", metavar="OUT.json", help="write all rows + versions + summary")
    ap.add_argument("--codecs", default="jpeg,webp,avif,jxl")
    ap.add_argument("--no-install", action="store_true", help="never call apt-get")
    ap.add_argument("--sides", default=",".join(map(str, DOWN_SIDES)),
                    help="longer-side lengths for the downscaled family (default 16,24,32,48)")
    args = ap.parse_args(argv)

    images = args.images or sorted(glob.glob("corpus/*.png"))
    if not images:
        ap.error("no images (run from the repository root or pass paths)")

    sides = [int(x) for x in args.sides.split(",") if x.strip()]

    import torch
    torch.set_num_threads(1)

    wanted = [c.strip() for c in args.codecs.split(",") if c.strip()]
    for c in wanted:
        if c not in CODECS:
            ap.error(f"unknown codec {c}")
    codecs = [c for c in wanted if ensure_codec(c, not args.no_install)]
    if not codecs:
        log("no codec available")
        return 1
    versions = tool_versions(codecs)

    rows = []
    names = []
    with tempfile.TemporaryDirectory(prefix="compare_classical_") as tmp:
        for path in images:
            with Image.open(path) as im0:
                orig = im0.convert("RGB")
                orig.load()
            name = os.path.basename(path)
            names.append(name)
            W, H = orig.size
            ref = np.asarray(orig)
            npix = W * H
            log(f"{name}: {W}x{H}")
            for c in codecs:
                jobs = [("full", None, q) for q in FULL_SETTINGS[c]]
                jobs += [("down", s, q) for s in sides for q in DOWN_SETTINGS[c]]
                for fam, side, q in jobs:
                    if fam == "full":
                        src = orig
                        size = (W, H)
                    else:
                        size = down_size(W, H, side)
                        src = orig.resize(size, Image.Resampling.LANCZOS)
                    try:
                        nbytes, rec = encode_decode(c, q, src, tmp)
                    except subprocess.CalledProcessError as e:
                        log(f"  [fail] {c} {fam} side={side} q={q}: "
                            f"{e.stderr.decode(errors='replace')[-300:]}")
                        continue
                    if fam == "down":
                        rec = rec.resize((W, H), Image.Resampling.BICUBIC)
                    m = metrics(ref, np.asarray(rec))
                    rows.append({
                        "image": name, "width": W, "height": H, "codec": c, "family": fam,
                        "side": side, "coded_width": size[0], "coded_height": size[1],
                        "setting": q,
                        "setting_kind": {"jpeg": "quality", "webp": "q", "avif": "quantizer",
                                         "jxl": "distance"}[c],
                        "bytes": nbytes, "bpp": nbytes * 8 / npix, **m,
                    })
                log(f"  {c}: {sum(1 for r in rows if r['image'] == name and r['codec'] == c)} rows")

    summ = summarize(rows, codecs, names)
    print_summary(summ, codecs, len(names))
    if args.json:
        d = os.path.dirname(args.json)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"images": names, "codecs": codecs, "versions": versions,
                       "settings": {"full": FULL_SETTINGS, "down": DOWN_SETTINGS,
                                    "down_sides_longer": sides},
                       "budgets": BUDGETS, "summary": summ, "rows": rows}, f, indent=1)
        log(f"wrote {args.json} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
