"""Write Tests/EvalTests/Fixtures/metrics_reference.json: reference PSNR / SSIM / MS-SSIM values
for RepTokMetrics' `Metrics`, from the reference implementations.

Run from the repository root:
    pip install -e 'python[train,reference]'     # torch and numpy pinned as for the fixtures
    python3 python/scripts/metrics_reference.py

What it does:
  - builds small deterministic RGB8 test pairs with numpy only (a synthetic "photo" with smooth
    shading, edges and texture; distortions: Gaussian noise, Gaussian blur, a JPEG-like 8x8 block
    DCT quantization, a colour shift, an inverted channel), at sizes chosen to exercise every
    MS-SSIM scale count (1, 3 and 5 scales) and the avg-pool padding of odd sizes;
  - stores each image as a base64 PNG (lossless; the Swift test decodes it with RepTokImage);
  - stores, per pair:
      psnr, psnr_per_channel  skimage.metrics.peak_signal_noise_ratio(a, b, data_range=255), over
                              all channels and per channel;
      ssim, ssim_per_channel  skimage.metrics.structural_similarity(a, b, channel_axis=-1,
                              data_range=255, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False) (per channel: the same on each plane);
      ssim_pytorch_msssim     pytorch_msssim.ssim(X, Y, data_range=255) on float64 tensors (valid
                              convolution). It differs from skimage's value by ~1e-6 only because
                              pytorch_msssim builds its Gaussian window in float32: the script
                              checks that with a float64 window the valid computation equals
                              skimage's to 1e-12 (skimage crops exactly the (win_size-1)//2 border
                              whose windows touch the reflect padding, so the padding never counts);
      msssim, msssim_scales   MS-SSIM as pytorch_msssim.ms_ssim(X, Y, data_range=255,
                              size_average=True, win_size=11, win_sigma=1.5, K=(0.01, 0.03)),
                              in float64. For images with smaller side <= (11-1)*2^4 = 160, which
                              pytorch_msssim refuses (assert), it is the same computation with the
                              first `msssim_scales` weights renormalized to sum to 1 (RepTokMetrics'
                              documented fallback), computed by `ms_ssim_scales` below, a
                              line-for-line copy of ms_ssim's loop over pytorch_msssim's own
                              `_ssim` and avg_pool2d, checked against ms_ssim itself for 5 scales;
      msssim_float32          the same in float32 (what ms_ssim gives on float32 tensors).
  - records python/numpy/scipy/scikit-image/torch/pytorch-msssim versions.

Deterministic (fixed seeds, one torch thread).
"""

from __future__ import annotations

import base64
import importlib.metadata as md
import io
import json
import math
import os
import platform
import sys
import warnings
import zlib
import struct

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim, ssim as pm_ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "EvalTests", "Fixtures", "metrics_reference.json")

WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
WIN = 11


# ----------------------------------------------------------------------------- images (numpy only)

def base_image(h: int, w: int, seed: int) -> np.ndarray:
    """A synthetic photo-like RGB8 image: shading, sinusoid texture, hard-edged shapes, fine grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        a, b, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * math.pi)
        img[..., c] = (110 + 60 * (x / w) * (c - 1) + 50 * (y / h)
                       + 25 * np.sin(2 * math.pi * (a * x / w + b * y / h) + ph)
                       + 10 * np.sin(2 * math.pi * x / rng.uniform(4, 9)) * np.cos(2 * math.pi * y / rng.uniform(5, 11)))
    for _ in range(6):  # discs and rectangles with hard edges
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.08, 0.3) * min(h, w)
        col = rng.uniform(10, 245, size=3)
        if rng.uniform() < 0.5:
            m = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        else:
            m = (abs(x - cx) < r) & (abs(y - cy) < 0.6 * r)
        img[m] = 0.35 * img[m] + 0.65 * col
    img += rng.normal(0, 3.0, size=img.shape)  # sensor grain
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    r = int(3 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    f = img.astype(np.float64)
    p = np.pad(f, ((r, r), (0, 0), (0, 0)), mode="edge")
    f = sum(k[i] * p[i:i + f.shape[0]] for i in range(2 * r + 1))
    p = np.pad(f, ((0, 0), (r, r), (0, 0)), mode="edge")
    f = sum(k[i] * p[:, i:i + f.shape[1]] for i in range(2 * r + 1))
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def add_noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(img + rng.normal(0, sigma, size=img.shape)), 0, 255).astype(np.uint8)


def jpeg_like(img: np.ndarray, quality_scale: float) -> np.ndarray:
    """8x8 block DCT on YCbCr with JPEG's luma/chroma tables times `quality_scale` (no entropy coding)."""
    qy = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                   14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                   49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64).reshape(8, 8)
    qc = np.full((8, 8), 99.0)
    qc[:4, :4] = np.array([17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 99, 47, 66, 99, 99], np.float64).reshape(4, 4)
    n = np.arange(8)
    D = np.sqrt(2 / 8) * np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / 16)
    D[0] /= np.sqrt(2)
    f = img.astype(np.float64)
    ycc = np.stack([0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2],
                    128 - 0.168736 * f[..., 0] - 0.331264 * f[..., 1] + 0.5 * f[..., 2],
                    128 + 0.5 * f[..., 0] - 0.418688 * f[..., 1] - 0.081312 * f[..., 2]], -1) - 128
    h, w = img.shape[:2]
    H, W = -(-h // 8) * 8, -(-w // 8) * 8
    p = np.pad(ycc, ((0, H - h), (0, W - w), (0, 0)), mode="edge")
    out = np.empty_like(p)
    for c in range(3):
        q = (qy if c == 0 else qc) * quality_scale
        blocks = p[..., c].reshape(H // 8, 8, W // 8, 8).transpose(0, 2, 1, 3)
        coef = D @ blocks @ D.T
        coef = np.rint(coef / q) * q
        out[..., c] = (D.T @ coef @ D).transpose(0, 2, 1, 3).reshape(H, W)
    out = out[:h, :w] + 128
    yy, cb, cr = out[..., 0], out[..., 1] - 128, out[..., 2] - 128
    rgb = np.stack([yy + 1.402 * cr, yy - 0.344136 * cb - 0.714136 * cr, yy + 1.772 * cb], -1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def colour_shift(img: np.ndarray, gains, offsets) -> np.ndarray:
    f = img.astype(np.float64) * np.asarray(gains) + np.asarray(offsets)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def pairs():
    """(name, a, b) with a, b uint8 arrays [H, W, 3]."""
    out = []
    a = base_image(64, 64, 1)
    out.append(("noise_64x64", a, add_noise(a, 12.0, 101)))
    a = base_image(80, 96, 2)  # H=80, W=96
    out.append(("blur_96x80", a, gaussian_blur(a, 1.2)))
    a = base_image(180, 200, 3)
    out.append(("jpeglike_200x180", a, jpeg_like(a, 2.5)))
    a = base_image(256, 256, 4)
    out.append(("mixed_256x256", a,
                add_noise(colour_shift(gaussian_blur(a, 0.8), (1.05, 0.97, 1.0), (-4, 3, 6)), 4.0, 104)))
    a = base_image(173, 161, 5)  # smallest side 161 > 160: 5 scales, odd sizes 161 -> 81 -> 41 -> 21 -> 11
    out.append(("jpeglike_noise_161x173", a, add_noise(jpeg_like(a, 1.0), 3.0, 105)))
    a = base_image(13, 24, 6)   # 1 scale
    out.append(("noise_24x13", a, add_noise(a, 20.0, 106)))
    a = base_image(48, 41, 7)   # 3 scales, red channel inverted: negative cs -> relu -> 0
    b = add_noise(a, 2.0, 107)
    b[..., 0] = 255 - b[..., 0]
    out.append(("invert_red_41x48", a, b))
    a = base_image(33, 35, 8)   # 2 scales, strong distortion
    out.append(("heavy_35x33", a, add_noise(jpeg_like(a, 8.0), 25.0, 108)))
    return out


# ----------------------------------------------------------------------------- references

def to_tensor(img: np.ndarray, dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).to(dtype).unsqueeze(0)


def msssim_scales_for(h: int, w: int) -> int:
    """RepTokMetrics' rule: the most scales K <= 5 with smaller side > (win-1) * 2^(K-1)."""
    s = min(h, w)
    k = 0
    while k < 5 and s > (WIN - 1) * 2 ** k:
        k += 1
    return k


def ms_ssim_scales(X: torch.Tensor, Y: torch.Tensor, scales: int) -> float:
    """pytorch_msssim.ms_ssim's loop (data_range 255, win 11, sigma 1.5, K (0.01, 0.03),
    size_average) without the 5-scale size assert. Weights: the default five as they are for 5
    scales (they sum to 1.0001, and ms_ssim uses them unnormalized), else the first `scales`
    default weights renormalized to sum to 1."""
    weights = WEIGHTS if scales == 5 else [w_ / sum(WEIGHTS[:scales]) for w_ in WEIGHTS[:scales]]
    weights_tensor = X.new_tensor(weights)
    win = _fspecial_gauss_1d(WIN, 1.5).repeat([X.shape[1], 1, 1, 1])
    levels = weights_tensor.shape[0]
    mcs = []
    for i in range(levels):
        ssim_per_channel, cs = _ssim(X, Y, win=win, data_range=255, size_average=False, K=(0.01, 0.03))
        if i < levels - 1:
            mcs.append(torch.relu(cs))
            padding = [s % 2 for s in X.shape[2:]]
            X = F.avg_pool2d(X, kernel_size=2, padding=padding)
            Y = F.avg_pool2d(Y, kernel_size=2, padding=padding)
    ssim_per_channel = torch.relu(ssim_per_channel)
    mcs_and_ssim = torch.stack(mcs + [ssim_per_channel], dim=0)
    val = torch.prod(mcs_and_ssim ** weights_tensor.view(-1, 1, 1), dim=0)
    return float(val.mean())


def png_b64(img: np.ndarray) -> str:
    """Minimal PNG writer (8-bit RGB, Paeth filter on every row, zlib level 9): numpy + zlib only."""
    h, w = img.shape[:2]
    cur = img.reshape(h, 3 * w).astype(np.int16)
    a = np.zeros_like(cur)
    a[:, 3:] = cur[:, :-3]                  # left
    b = np.zeros_like(cur)
    b[1:] = cur[:-1]                        # up
    c = np.zeros_like(cur)
    c[1:, 3:] = cur[:-1, :-3]               # up-left
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    filt = ((cur - pred) & 0xFF).astype(np.uint8)
    raw = b"".join(b"\x04" + filt[y].tobytes() for y in range(h))

    def chunk(t: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode("ascii")


def png_decode_check(b64: str, img: np.ndarray) -> None:
    """Decodes png_b64's output (Paeth rows) and checks it gives `img` back."""
    data = base64.b64decode(b64)
    h, w = img.shape[:2]
    i = 8
    idat = b""
    while i < len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        if data[i + 4:i + 8] == b"IDAT":
            idat += data[i + 8:i + 8 + n]
        i += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 4).all()
    out = np.zeros((h, 3 * w), np.int32)
    for y in range(h):
        for x in range(3 * w):
            a = out[y, x - 3] if x >= 3 else 0
            b = out[y - 1, x] if y >= 1 else 0
            c = out[y - 1, x - 3] if x >= 3 and y >= 1 else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[y, x] = (int(raw[y, 1 + x]) + pred) & 0xFF
    assert np.array_equal(out.reshape(h, w, 3), img)


def reference(name: str, a: np.ndarray, b: np.ndarray) -> dict:
    h, w = a.shape[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # divide-by-zero for identical channels (inf)
        psnr = peak_signal_noise_ratio(a, b, data_range=255)
        psnr_c = [peak_signal_noise_ratio(a[..., c], b[..., c], data_range=255) for c in range(3)]
    kw = dict(data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    ssim = structural_similarity(a, b, channel_axis=-1, **kw)
    ssim_c = [structural_similarity(a[..., c], b[..., c], **kw) for c in range(3)]
    X64, Y64 = to_tensor(a, torch.float64), to_tensor(b, torch.float64)
    X32, Y32 = to_tensor(a, torch.float32), to_tensor(b, torch.float32)
    ssim_pm = float(pm_ssim(X64, Y64, data_range=255, size_average=True, win_size=11, win_sigma=1.5))
    # skimage's reflect-padded filtering + crop == valid filtering: exact with the same (float64) kernel.
    coords = torch.arange(WIN, dtype=torch.float64) - WIN // 2
    g = torch.exp(-(coords ** 2) / (2 * 1.5 ** 2))
    win64 = (g / g.sum()).view(1, 1, 1, WIN).repeat(3, 1, 1, 1)
    ssim_valid = float(_ssim(X64, Y64, data_range=255, win=win64, K=(0.01, 0.03))[0].mean())
    assert abs(ssim_valid - ssim) < 1e-12, (name, ssim_valid, ssim)
    scales = msssim_scales_for(h, w)
    ms64 = ms_ssim_scales(X64, Y64, scales)
    ms32 = ms_ssim_scales(X32, Y32, scales)
    if scales == 5:  # the copied loop is ms_ssim itself
        lib64 = float(ms_ssim(X64, Y64, data_range=255, size_average=True, win_size=11, win_sigma=1.5,
                              K=(0.01, 0.03)))
        lib32 = float(ms_ssim(X32, Y32, data_range=255, size_average=True, win_size=11, win_sigma=1.5,
                              K=(0.01, 0.03)))
        assert lib64 == ms64 and lib32 == ms32, (name, lib64, ms64, lib32, ms32)
    png_a, png_b = png_b64(a), png_b64(b)
    png_decode_check(png_a, a)
    png_decode_check(png_b, b)

    def num(v: float):
        return v if math.isfinite(v) else "inf"

    return {
        "name": name, "width": w, "height": h,
        "a_png_base64": png_a, "b_png_base64": png_b,
        "psnr": num(float(psnr)), "psnr_per_channel": [num(float(v)) for v in psnr_c],
        "ssim": float(ssim), "ssim_per_channel": [float(v) for v in ssim_c],
        "ssim_pytorch_msssim": ssim_pm,
        "msssim": ms64, "msssim_float32": ms32, "msssim_scales": scales,
    }


def main() -> None:
    entries = []
    for name, a, b in pairs():
        assert a.shape == b.shape and a.dtype == np.uint8 and b.dtype == np.uint8
        e = reference(name, a, b)
        entries.append(e)
        print(f"{name:24s} {e['width']}x{e['height']}  psnr {e['psnr']:.4f}  ssim {e['ssim']:.6f}  "
              f"ms-ssim {e['msssim']:.6f} ({e['msssim_scales']} scales; float32 {e['msssim_float32']:.6f})")
    doc = {
        "description": "Reference PSNR/SSIM/MS-SSIM for RepTokMetrics.Metrics; written by python/scripts/metrics_reference.py "
                       "(see its docstring for the exact calls). Images: base64 PNG, 8-bit RGB. "
                       "'inf' stands for +infinity.",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": md.version("scipy"),
            "scikit-image": md.version("scikit-image"),
            "torch": torch.__version__,
            "pytorch-msssim": md.version("pytorch-msssim"),
        },
        "msssim_weights": WEIGHTS,
        "pairs": entries,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
