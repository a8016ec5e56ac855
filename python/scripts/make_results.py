#!/usr/bin/env python3
"""Regenerate docs/RESULTS.md and its figures (docs/results/*.png): reptok beside JPEG, WebP,
AVIF and JPEG XL on the validation pictures of corpus/, with the speed table.

One command on a fresh machine (installs the packages, builds, measures, plots, writes):

    tools/results.sh                      # = this script inside .build-results/venv

Directly, with the Python packages present (numpy, Pillow, scikit-image, torch, pytorch-msssim,
matplotlib, and this package: pip install -e python) and the Debian codec tools installed or installable:

    python3 python/scripts/make_results.py [--images corpus/*.png] [--model FILE] [--skip-bench]
                                  [--bench-rounds 1] [--out docs/RESULTS.md]

What it runs (every number on the page comes from these runs, on this machine):
  1. swift build -c release; rtenc/rtdec/rteval/rtbench from the build's bin path.
  2. rteval --json -q 1-9 --realism on the images: bytes, bpp, times, PSNR/SSIM/MS-SSIM at the
     model resolution and at the original size, and the SSL-feature Frechet distance per level.
  3. rteval --json at the default level for --steps 1, 2, 4, 8, 16 (time and quality per steps).
  4. Batch throughput: rtenc -r / rtdec -r over 8 copies of the images with -j 1 and -j 2, three
     runs each (median wall time), peak resident memory of the process (wait4 ru_maxrss).
  5. python/scripts/compare_classical.py (the four codecs over their quality range and at our byte
     budgets via 16-48 px downscales; PSNR/SSIM from scikit-image, MS-SSIM from pytorch-msssim).
  6. The crops grid at matched bytes, and butteraugli / ssimulacra (libjxl-devtools) of every
     picture in it when those tools exist.
  7. rtgen at guidance 1, 1.5 and 3 (200 samples each) and the SSL-feature Frechet distance of
     each set to the validation pictures (data/val.rtds, built by reptok.build_dataset when
     missing), the training pictures' own distance for scale, and a grid of samples per class.
  8. tools/bench.sh (the engine against PyTorch, same weights and threads) unless --skip-bench.
Validation pictures only: corpus/ comes from the validation split (corpus/SOURCES.md).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import compare_classical as cc   # python/scripts/, the directory of this script

ROOT = Path(__file__).resolve().parents[2]

STEPS = [1, 2, 4, 8, 16]
COPIES = 8
GRID_BUDGET = 128
CODEC_NAMES = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF", "jxl": "JPEG XL"}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd, **kw) -> str:
    log("+ " + " ".join(map(str, cmd)))
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, **kw).stdout


def timed(cmd, env=None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one process; raises on a non-zero exit."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {err.strip()[-400:]}")
    return wall, ru.ru_maxrss


def rteval(bins, args) -> dict:
    return json.loads(sh([bins / "rteval", "--json", "--quiet"] + args))


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


# ----------------------------------------------------------------------------- measurements

def batch_speed(bins, images, model_args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="reptok_results_") as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for c in range(COPIES):
            for im in images:
                shutil.copyfile(im, src / f"{c}_{Path(im).name}")
        n = COPIES * len(images)
        for jobs in (1, 2):
            enc_t, dec_t, enc_m, dec_m = [], [], [], []
            for _ in range(3):
                enc, dec = Path(tmp) / "enc", Path(tmp) / "dec"
                shutil.rmtree(enc, ignore_errors=True)
                shutil.rmtree(dec, ignore_errors=True)
                w, m = timed([bins / "rtenc", *model_args, "-r", str(src), "-d", str(enc), "-j", str(jobs), "--quiet"])
                enc_t.append(w); enc_m.append(m)
                w, m = timed([bins / "rtdec", *model_args, "-r", str(enc), "-d", str(dec), "-j", str(jobs), "--quiet"])
                dec_t.append(w); dec_m.append(m)
            rows.append({"jobs": jobs, "images": n,
                         "encode_images_per_s": n / statistics.median(enc_t),
                         "decode_images_per_s": n / statistics.median(dec_t),
                         "encode_peak_mib": max(enc_m) / 1024, "decode_peak_mib": max(dec_m) / 1024})
    return rows


def classical(images, out_json) -> dict:
    rc = cc.main(["--json", str(out_json), *map(str, images)])
    if rc:
        raise RuntimeError("compare_classical failed")
    return json.loads(Path(out_json).read_text())


def pick(rows, image, codec, budget):
    """The best-PSNR file of <= budget bytes, or the smallest file the codec made."""
    mine = [r for r in rows if r["image"] == image and r["codec"] == codec]
    if not mine:
        return None
    fit = [r for r in mine if r["bytes"] <= budget]
    if fit:
        return max(fit, key=lambda r: r["psnr"]), True
    return min(mine, key=lambda r: r["bytes"]), False


def redo(row, orig: Image.Image, tmp) -> Image.Image:
    """Re-encode one compare_classical row and return its decode at the original size."""
    W, H = orig.size
    if row["family"] == "full":
        _, rec = cc.encode_decode(row["codec"], row["setting"], orig, tmp)
        return rec
    size = cc.down_size(W, H, row["side"])
    nbytes, rec = cc.encode_decode(row["codec"], row["setting"], orig.resize(size, Image.Resampling.LANCZOS), tmp)
    if nbytes != row["bytes"]:
        raise RuntimeError(f"{row['codec']}: re-encode gave {nbytes} bytes, not {row['bytes']}")
    return rec.resize((W, H), Image.Resampling.BICUBIC)


def perceptual(ref_png, dec_png) -> dict:
    out = {}
    if shutil.which("butteraugli_main"):
        p = subprocess.run(["butteraugli_main", ref_png, dec_png], capture_output=True, text=True)
        if p.returncode == 0:
            lines = p.stdout.strip().splitlines()
            out["butteraugli"] = float(lines[0])
            for ln in lines[1:]:
                if ln.startswith("3-norm:"):
                    out["butteraugli_3norm"] = float(ln.split(":")[1])
    if shutil.which("ssimulacra_main"):
        p = subprocess.run(["ssimulacra_main", ref_png, dec_png], capture_output=True, text=True)
        if p.returncode == 0:
            out["ssimulacra"] = float(p.stdout.strip().splitlines()[0])
    return out


def ours_row(ours, name, level):
    """rteval's row of picture `name` at `level` (its bytes and metrics: the harness's, not
    measured again here)."""
    for r in ours["rows"]:
        if Path(r["file"]).name == name and r["level"] == level:
            return r
    raise RuntimeError(f"rteval has no row for {name} at level {level}")


def ours_metrics(row) -> dict:
    """PSNR/SSIM/MS-SSIM at the original size from an rteval row (an infinite PSNR is null
    with psnr_infinite in its JSON)."""
    q = row["original_size"]
    psnr = float("inf") if q.get("psnr_infinite") else q["psnr"]
    return {"psnr": psnr, "ssim": q["ssim"], "msssim": q["msssim"]}


def grid_cells(bins, images, model_args, ours, cl, figdir):
    """Per image: original, reptok at the default level and at 9, and each codec's pick at
    <= GRID_BUDGET bytes (or its smallest file), with bytes, PSNR and perceptual scores. reptok's
    bytes and metrics are rteval's (the same record as rtenc writes: checked); the decodes are
    made again for the picture and the perceptual scores."""
    default_level = ours["default_level"]
    cells = []
    with tempfile.TemporaryDirectory(prefix="reptok_grid_") as tmp:
        for path in images:
            name = Path(path).name
            with Image.open(path) as im0:
                orig = im0.convert("RGB")
                orig.load()
            ref_png = os.path.join(tmp, "ref.png")
            orig.save(ref_png)
            row = {"image": name, "cells": []}
            for level in sorted({default_level, 9}):
                rtk, png = os.path.join(tmp, "x.rtk"), os.path.join(tmp, "x.png")
                sh([bins / "rtenc", *model_args, "-q", str(level), "-f", "-o", rtk, path])
                sh([bins / "rtdec", *model_args, "-f", "-o", png, rtk])
                with Image.open(png) as d:
                    rec = d.convert("RGB")
                    rec.load()
                ev = ours_row(ours, name, level)
                if os.path.getsize(rtk) != ev["bytes"]:
                    raise RuntimeError(f"{name} level {level}: rtenc wrote {os.path.getsize(rtk)} bytes, rteval counted {ev['bytes']}")
                row["cells"].append({"label": f"reptok q{level}", "bytes": ev["bytes"], "fits": True,
                                     "image": rec, **ours_metrics(ev), **perceptual(ref_png, png)})
            for codec in cl["codecs"]:
                got = pick(cl["rows"], name, codec, GRID_BUDGET)
                if not got:
                    continue
                r, fits = got
                rec = redo(r, orig, tmp)
                dec_png = os.path.join(tmp, "c.png")
                rec.save(dec_png)
                how = "full size" if r["family"] == "full" else f"{r['coded_width']}x{r['coded_height']}"
                row["cells"].append({"label": f"{CODEC_NAMES[codec]} ({how})", "bytes": r["bytes"], "fits": fits,
                                     "image": rec, "psnr": r["psnr"], "ssim": r["ssim"], "msssim": r["msssim"],
                                     **perceptual(ref_png, dec_png)})
            row["original"] = orig
            cells.append(row)
    return cells


# ----------------------------------------------------------------------------- plots

def budget_curve(rows, images, codec, metric):
    """Mean over images of the best `metric` with a file of <= B bytes, for B on a log grid,
    where every image has such a file (the envelope each codec can reach per byte budget)."""
    xs, ys = [], []
    for b in np.geomspace(32, 65536, 60):
        best = []
        for im in images:
            vals = [r[metric] for r in rows if r["image"] == im and r["codec"] == codec
                    and r["bytes"] <= b and r[metric] is not None]
            if not vals:
                break
            best.append(max(vals))
        else:
            xs.append(b); ys.append(float(np.mean(best)))
    return xs, ys


def plots(ours, cl, msssim_images, figdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for metric, label in [("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("msssim", "MS-SSIM (5 scales)")]:
        imgs = msssim_images if metric == "msssim" else cl["images"]
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        for codec in cl["codecs"]:
            xs, ys = budget_curve(cl["rows"], imgs, codec, metric)
            if xs:
                ax.plot(xs, ys, label=f"{CODEC_NAMES[codec]} (best file within budget)")
        # reptok: one point per quality level, at the original size; MS-SSIM over the images with 5 scales.
        px, py = [], []
        for lv in ours["levels"]:
            rs = [r for r in ours["rows"] if r["level"] == lv]
            if metric == "msssim":
                rs = [r for r in rs if Path(r["file"]).name in imgs and r["original_size"]["msssim_scales"] == 5]
            vals = [r["original_size"][metric] for r in rs if r["original_size"][metric] is not None]
            if vals:
                px.append(np.mean([r["bytes"] for r in rs])); py.append(np.mean(vals))
        ax.plot(px, py, "o-", color="black", label="reptok levels 1-9 (whole .rtk)")
        ax.set_xscale("log")
        ax.set_xlabel("bytes per picture (mean)")
        ax.set_ylabel(label + ", original size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{label} vs bytes, {len(imgs)} validation pictures")
        fig.tight_layout()
        f = figdir / f"rate_{metric}.png"
        fig.savefig(f)
        plt.close(fig)
        files.append(f)
    return files


def grid_plot(cells, figdir, crop=128):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = 1 + max(len(c["cells"]) for c in cells)
    fig, axes = plt.subplots(len(cells), ncol, figsize=(1.9 * ncol, 2.1 * len(cells)), dpi=100, squeeze=False)

    def centre(im: Image.Image):
        W, H = im.size
        s = min(crop, W, H)
        x, y = (W - s) // 2, (H - s) // 2
        return np.asarray(im.crop((x, y, x + s, y + s)))

    for i, row in enumerate(cells):
        axes[i][0].imshow(centre(row["original"]), interpolation="nearest")
        axes[i][0].set_title("original", fontsize=7)
        for j, c in enumerate(row["cells"], start=1):
            axes[i][j].imshow(centre(c["image"]), interpolation="nearest")
            tag = "" if c["fits"] else " (smallest)"
            axes[i][j].set_title(f"{c['label']}\n{c['bytes']} B{tag}, {c['psnr']:.1f} dB", fontsize=6)
        for ax in axes[i]:
            ax.set_xticks([]); ax.set_yticks([])
        for j in range(len(row["cells"]) + 1, ncol):
            axes[i][j].axis("off")
    fig.suptitle(f"centre crops ({crop} px) at the original size; codecs: best PSNR within {GRID_BUDGET} B, "
                 f"else their smallest file", fontsize=8)
    fig.tight_layout()
    f = figdir / "grid.png"
    fig.savefig(f)
    plt.close(fig)
    return f


# ----------------------------------------------------------------------------- generation

GEN_CFGS = [1.0, 1.5, 3.0]
GEN_COUNT = 100


def generation(bins, model_args, g_args, fe, figdir):
    """rtgen samples at several guidance scales, their SSL-feature Frechet distance to the
    validation pictures (and the training pictures' distance, real against real), and a grid
    of samples per class."""
    if not Path("data/val.rtds").exists():
        sh([sys.executable, "-m", "reptok.build_dataset", "--out", "data/"])
    classes = sh([bins / "rtgen", *g_args, "--list-classes"]).split("\n")
    classes = [c for c in classes if c]
    rows = []
    with tempfile.TemporaryDirectory(prefix="reptok_gen_") as tmp:
        for cfg in GEN_CFGS:
            d = f"{tmp}/cfg{cfg}"
            t0 = time.perf_counter()
            sh([bins / "rtgen", *model_args, *g_args, "-n", str(GEN_COUNT), "--cfg", str(cfg), "-o", d, "--quiet"])
            secs = time.perf_counter() - t0
            e = json.loads(sh([bins / "rteval", *model_args, "--realism", "--sets", *fe, "--json", "--quiet", d, "data/val.rtds"]))
            rows.append({"what": f"rtgen, {GEN_COUNT} samples, --cfg {cfg:g}", "seconds": secs, **e})
        e = json.loads(sh([bins / "rteval", *model_args, "--realism", "--sets", *fe, "--json", "--quiet",
                           "data/train.rtds", "data/val.rtds"]))
        rows.append({"what": "training pictures (real against real)", "seconds": None, **e})
        per = 8
        for c in classes:
            sh([bins / "rtgen", *model_args, *g_args, "-n", str(per), "--class", c, "-o", f"{tmp}/grid/{c}", "--quiet"])
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(len(classes), per, figsize=(per * 0.9, len(classes) * 0.95), dpi=110, squeeze=False)
        for i, c in enumerate(classes):
            files = sorted(Path(f"{tmp}/grid/{c}").glob("*.png"))
            for j, f in enumerate(files):
                with Image.open(f) as im:
                    axes[i][j].imshow(np.asarray(im.convert("RGB")), interpolation="nearest")
            for ax in axes[i]:
                ax.set_xticks([]); ax.set_yticks([])
            axes[i][0].set_ylabel(c, fontsize=6, rotation=0, ha="right", va="center")
        fig.suptitle("rtgen --class C -n 8 (seed 0, --cfg 1.5), per class", fontsize=7)
        fig.tight_layout()
        grid = figdir / "generation_grid.png"
        fig.savefig(grid)
        plt.close(fig)
    return {"rows": rows, "grid": grid, "classes": classes}


# ----------------------------------------------------------------------------- page

def fmt(v, p=2):
    return "-" if v is None else f"{v:.{p}f}"


def write_page(out, ctx):
    o, cl = ctx["ours"], ctx["classical"]
    L = []
    L.append("# Results: reptok beside JPEG, WebP, AVIF and JPEG XL")
    L.append("")
    L.append("Regenerate this page, its figures and every number on it with ONE command (a fresh Debian "
             "machine with Swift: it installs the packages, builds, measures and writes):")
    L.append("")
    L.append("```sh")
    L.append("tools/results.sh            # = python3 python/scripts/make_results.py inside .build-results/venv")
    L.append("```")
    L.append("")
    L.append(f"Measured {ctx['date']} on {ctx['cpu']}, {os.cpu_count()} cores; wall "
             f"{ctx['wall_minutes']:.1f} min. Pictures: the {len(cl['images'])} validation pictures of `corpus/` "
             "(never training data; corpus/SOURCES.md).")
    boot = " It is the **bootstrap** model (trained minutes from scratch, not SSL-pretrained: "\
           "see docs/MODELS.md), so these curves are the starting point, not the method's result." if o["bootstrap"] else ""
    L.append(f"Model: `{o['model']}` ({o['resolution']}x{o['resolution']}, default level {o['default_level']}, "
             f"{o['steps']} decoder step{'s' if o['steps'] != 1 else ''}).{boot}")
    L.append("")
    L.append("## Rate and quality")
    L.append("")
    L.append("Quality at the original size (decode resized back with Lanczos-3, as `rtdec` writes it). "
             "Classical codecs: for each byte budget, each picture's best file within it (full size over the "
             "quality range, or downscaled to a 16-48 px longer side and upscaled bicubically), mean over pictures "
             "(docs/CLASSICAL.md). MS-SSIM (5 scales) over the pictures whose shorter side is above 160 px "
             f"({len(ctx['msssim_images'])} of {len(cl['images'])}).")
    L.append("")
    for f in ctx["figures"]:
        L.append(f"![{f.stem}](results/{f.name})")
    L.append("")
    L.append("### reptok per level (`rteval -q 1-9 --realism corpus/`)")
    L.append("")
    L.append("| level | bytes | bpp | PSNR at model res | SSIM at model res | PSNR original | SSIM original | "
             "MS-SSIM original | SSL Frechet [95% interval] |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    fd = {x["level"]: x for x in o.get("realism", {}).get("levels", [])}
    for m in o["means"]:
        f = fd.get(m["level"])
        fds = f"{f['frechet']:.3f} [{f['low']:.3f}, {f['high']:.3f}]" if f else "-"
        ms = m["original_size"]
        L.append(f"| {m['level']} | {m['bytes']:.1f} | {m['bpp']:.4f} | {fmt(m['model_resolution']['psnr'])} | "
                 f"{fmt(m['model_resolution']['ssim'], 4)} | {fmt(ms['psnr'])} | {fmt(ms['ssim'], 4)} | "
                 f"{fmt(ms['msssim'], 4)} (scales {','.join(map(str, ms['msssim_scales']))}) | {fds} |")
    r = o.get("realism")
    if r:
        fl = r["floor"]
        L.append("")
        L.append(f"SSL Frechet distance: between Gaussians of the [CLS] features of one fixed frozen SSL encoder "
                 f"(`{r['feature_encoder']}`, {r['dims']} dims at {r['resolution']} px), inputs against decodes at "
                 f"the model resolution, {r['views_per_image']} views per picture ({fl['samples']} samples), "
                 f"paired bootstrap over pictures ({r['resamples']} resamples). Floor (inputs against themselves, "
                 f"other views): {fl['frechet']:.3f} [{fl['low']:.3f}, {fl['high']:.3f}]. Not FID: other features, "
                 "comparable only with the same encoder (rteval(1)).")
    L.append("")
    L.append("### Classical codecs at reptok's budgets (`python/scripts/compare_classical.py`)")
    L.append("")
    L.append("| codec | <= 64 B | <= 128 B | <= 256 B | <= 512 B | smallest file (any) | smallest at full size |")
    L.append("| --- | --- | --- | --- | --- | --- | --- |")
    for c in cl["codecs"]:
        s = cl["summary"][c]
        cells = []
        for b in cl["budgets"]:
            x = s["budgets"][str(b)]
            if x["mean_psnr"] is not None:
                cells.append(f"{x['mean_psnr']:.2f} dB ({x['mean_ssim']:.3f})")
            else:
                cells.append(f"- ({x['n_fit']}/{x['n_images']} fit)")
        L.append(f"| {CODEC_NAMES[c]} | " + " | ".join(cells) + f" | {fmt(s['smallest_bytes_mean'], 1)} B | "
                 f"{fmt(s['smallest_bytes_full_size_mean'], 1)} B |")
    L.append("")
    L.append("Cells: mean PSNR (mean SSIM) of each picture's best file within the budget; `-` when some picture "
             "has no file that small. Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(cl["versions"].items())) + ".")
    L.append("")
    L.append("## Crops at matched bytes")
    L.append("")
    L.append(f"![grid](results/{ctx['grid'].name})")
    L.append("")
    have_p = any("butteraugli" in c for row in ctx["cells"] for c in row["cells"])
    hdr = "| picture | decode | bytes | PSNR | SSIM |" + (" butteraugli (max) | butteraugli 3-norm | ssimulacra |" if have_p else "")
    L.append(hdr)
    L.append("| --- " * (hdr.count("|") - 1) + "|")
    for row in ctx["cells"]:
        for c in row["cells"]:
            line = f"| {row['image']} | {c['label']} | {c['bytes']}{'' if c['fits'] else ' (smallest)'} | {c['psnr']:.2f} | {c['ssim']:.4f} |"
            if have_p:
                line += f" {fmt(c.get('butteraugli'))} | {fmt(c.get('butteraugli_3norm'))} | {fmt(c.get('ssimulacra'), 4)} |"
            L.append(line)
    L.append("")
    if have_p:
        L.append("butteraugli and ssimulacra: `butteraugli_main` and `ssimulacra_main` of Debian's libjxl-devtools "
                 "(lower is better), original against decode at the original size.")
    else:
        L.append("butteraugli / ssimulacra: libjxl-devtools is not installed here, so they are left out.")
    L.append("")
    g = ctx.get("generation")
    if g:
        L.append("## Generation (`rtgen`)")
        L.append("")
        L.append(f"SSL-feature Frechet distance to the {g['rows'][0]['images'][1]} validation pictures (`rteval --realism --sets "
                 "DIR data/val.rtds`: both sets squashed to the model resolution, views per picture for 4x the feature "
                 "dimension, 95% bootstrap interval resampling each set); rtgen with the default generator, seed 0, "
                 "50 generator steps, the model's decoder steps, classes in turn:")
        L.append("")
        L.append("| set | Frechet [95% interval] | images | time |")
        L.append("| --- | --- | --- | --- |")
        for r in g["rows"]:
            t = f"{r['seconds']:.1f} s" if r["seconds"] is not None else "-"
            L.append(f"| {r['what']} | {r['frechet']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {r['images'][0]} | {t} |")
        L.append("")
        L.append("Intervals are percentile bootstraps over pictures: a resample repeats pictures, which narrows the spread of the features and so raises the Frechet distance; the interval can therefore sit above the estimate (as for the training pictures here). Use the intervals to compare runs measured the same way, not as coverage of the true distance.")
        L.append("")
        L.append(f"![generation](results/{g['grid'].name})")
        L.append("")
    L.append("## Speed")
    L.append("")
    L.append(f"Per picture at the default level (`rteval -q {o['default_level']} --steps N`, one picture at a time, "
             "engine threads = all cores; the first picture also pays for warming up):")
    L.append("")
    L.append("| steps | encode ms | decode ms | PSNR at model res |")
    L.append("| --- | --- | --- | --- |")
    for s in ctx["steps"]:
        L.append(f"| {s['steps']} | {s['encode_ms']:.1f} | {s['decode_ms']:.1f} | {fmt(s['psnr'])} |")
    L.append("")
    L.append(f"Batch mode (`rtenc -r` / `rtdec -r`, {ctx['batch'][0]['images']} pictures = {COPIES} copies of the "
             "set, median of 3 runs, whole process including model load; peak = maximum resident set size):")
    L.append("")
    L.append("| -j | encode pictures/s | decode pictures/s | encode peak MiB | decode peak MiB |")
    L.append("| --- | --- | --- | --- | --- |")
    for b in ctx["batch"]:
        L.append(f"| {b['jobs']} | {b['encode_images_per_s']:.1f} | {b['decode_images_per_s']:.1f} | "
                 f"{b['encode_peak_mib']:.0f} | {b['decode_peak_mib']:.0f} |")
    L.append("")
    if ctx.get("bench"):
        L.append(f"Engine against PyTorch (`tools/bench.sh`, ROUNDS={ctx['bench_rounds']}; width 256, depth 8, "
                 "257 tokens; ratio > 1: reptok faster):")
        L.append("")
        L.extend(ctx["bench"].strip().splitlines())
    else:
        L.append("Engine against PyTorch: not run this time (`--skip-bench`); see docs/PERFORMANCE.md.")
    L.append("")
    Path(out).write_text("\n".join(L) + "\n")


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", nargs="*", help="validation pictures (default: corpus/*.png)")
    ap.add_argument("--model", help="model file (default: the embedded default model)")
    ap.add_argument("--feature-encoder", help="SSL encoder for the realism figure (default: the bundled one)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "RESULTS.md"))
    ap.add_argument("--skip-bench", action="store_true", help="leave out tools/bench.sh")
    ap.add_argument("--skip-generation", action="store_true", help="leave out the rtgen section")
    ap.add_argument("--generator", help="generator file for rtgen (default: the installed one; needed with --model)")
    ap.add_argument("--bench-rounds", type=int, default=1)
    args = ap.parse_args(argv)
    t0 = time.time()
    os.chdir(ROOT)
    images = args.images or sorted(glob.glob("corpus/*.png"))
    if not images:
        ap.error("no images")
    out = Path(args.out).resolve()
    figdir = out.parent / "results"
    figdir.mkdir(parents=True, exist_ok=True)
    model_args = ["-m", args.model] if args.model else []

    sh(["swift", "build", "-c", "release"])
    bins = Path(sh(["swift", "build", "-c", "release", "--show-bin-path"]).strip())

    fe = ["--feature-encoder", args.feature_encoder] if args.feature_encoder else []
    ours = rteval(bins, [*model_args, "-q", "1-9", "--realism", *fe, *images])
    info = sh([bins / "rtinfo", "--version"]) if not args.model else ""
    # The default level: the model's (rtenc without -q); read it off a record.
    with tempfile.TemporaryDirectory() as tmp:
        sh([bins / "rtenc", *model_args, "-f", "-o", f"{tmp}/x.rtk", images[0]])
        rec = json.loads(sh([bins / "rtinfo", "--json", f"{tmp}/x.rtk"]))
    ours["default_level"] = int(rec[0]["level"])
    log(info.strip())

    steps = []
    for n in STEPS:
        e = rteval(bins, [*model_args, "-q", str(ours["default_level"]), "--steps", str(n), *images])
        m = e["means"][0]
        steps.append({"steps": n, "encode_ms": m["encode_ms"], "decode_ms": m["decode_ms"],
                      "psnr": m["model_resolution"]["psnr"]})

    batch = batch_speed(bins, images, model_args)

    cl_json = Path(tempfile.gettempdir()) / "reptok_classical.json"
    cl = classical(images, cl_json)
    msssim_images = sorted({r["image"] for r in cl["rows"] if r["msssim"] is not None})

    figures = plots(ours, cl, msssim_images, figdir)
    cells = grid_cells(bins, images, model_args, ours, cl, figdir)
    grid = grid_plot(cells, figdir)

    g_args = ["-g", args.generator] if args.generator else []
    gen = None
    if not args.skip_generation and (args.generator or not args.model):
        gen = generation(bins, model_args, g_args, fe, figdir)

    bench = None
    if not args.skip_bench:
        env = dict(os.environ, ROUNDS=str(args.bench_rounds))
        bench = subprocess.run(["tools/bench.sh"], check=True, stdout=subprocess.PIPE, text=True, env=env).stdout

    ctx = {"ours": ours, "classical": cl, "figures": figures, "grid": grid, "cells": cells, "steps": steps,
           "batch": batch, "bench": bench, "generation": gen, "bench_rounds": args.bench_rounds, "msssim_images": msssim_images,
           "cpu": cpu_name(), "date": time.strftime("%Y-%m-%d"), "wall_minutes": (time.time() - t0) / 60}
    write_page(out, ctx)
    log(f"wrote {out} and {figdir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
