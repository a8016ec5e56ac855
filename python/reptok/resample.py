"""Resampling of RGB8 pictures as Sources/RepTokImage/Resample.swift does it: the codec's model
view (`model_view`: the WHOLE picture squashed to S x S with the antialiased triangle filter, no
crop) and the trainer's shrunk copies (`shrink_pictures`, area filter). numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from .rtds import MemorySet, shrunk_size

__all__ = ["filter_taps", "resize_u8", "quantize_u8", "model_view", "shrink_pictures"]


def filter_taps(src: int, dst: int, origin: float, span: float, filt: str):
    """FilterTaps: per output j, (start, count, float32 weights) as arrays [dst], [dst], [dst, widest]."""
    scale = span / dst
    stretch = max(scale, 1.0)
    support = {"area": 0.5, "bilinear": 1.0}[filt] * stretch
    widest = max(min(int(math.ceil(2 * support)) + 2, src), 1)
    starts = np.zeros(dst, np.int64)
    counts = np.zeros(dst, np.int64)
    weights = np.zeros((dst, widest), np.float32)
    for j in range(dst):
        center = origin + (j + 0.5) * scale
        a = max(int(math.floor(center - support)), 0)
        b = min(int(math.ceil(center + support)), src)
        count, ws, total = 0, [], 0.0
        if a < b:
            count = min(b - a, widest)
            for k in range(count):
                x = float(a + k)
                if filt == "area":
                    lft, rgt = center - 0.5 * stretch, center + 0.5 * stretch
                    w = max(0.0, min(x + 1, rgt) - max(x, lft))
                else:
                    w = max(0.0, 1 - abs((x + 0.5 - center) / stretch))
                ws.append(w)
            first = 0
            while first < count and ws[first] == 0:
                first += 1
            while count > first and ws[count - 1] == 0:
                count -= 1
            ws = ws[first:count]
            count -= first
            a += first
            for w in ws:
                total += w
        if count == 0 or abs(total) < 1e-9:
            a = min(max(int(math.floor(center)), 0), src - 1)
            count, ws, total = 1, [1.0], 1.0
        starts[j], counts[j] = a, count
        weights[j, :count] = [np.float32(w / total) for w in ws]
    return starts, counts, weights


def _vpass(src: np.ndarray, taps) -> np.ndarray:
    """Vertical pass over [rows, cols] float32: out[j] = w0 * src[s] + w1 * src[s+1] + ... (sequential)."""
    starts, counts, weights = taps
    out = weights[:, 0, None] * src[starts]
    for k in range(1, int(counts.max())):
        rows = np.minimum(starts + k, src.shape[0] - 1)
        w = np.where(k < counts, weights[:, k], np.float32(0))
        out = out + w[:, None] * src[rows]
    return out


def _hpass(src: np.ndarray, taps) -> np.ndarray:
    """Horizontal pass over [rows, cols] float32 with the four partial sums of Resample.hPass."""
    starts, counts, weights = taps
    acc = [np.zeros((src.shape[0], len(starts)), np.float32) for _ in range(4)]
    full = (counts // 4) * 4
    for k in range(int(counts.max())):
        cols = np.minimum(starts + k, src.shape[1] - 1)
        w = np.where(k < counts, weights[:, k], np.float32(0))
        target = np.where(k < full, k % 4, 0)
        prod = w[None, :] * src[:, cols]
        for a in range(4):
            sel = target == a
            if sel.any():
                acc[a] = acc[a] + np.where(sel[None, :], prod, np.float32(0))
    return (acc[0] + acc[1]) + (acc[2] + acc[3])


def quantize_u8(v: np.ndarray) -> np.ndarray:
    """RGBImage.quantize: round half up of positive values, NaN and <= 0 to 0, >= 255 to 255."""
    v = np.asarray(v, dtype=np.float32)
    out = np.floor(v.astype(np.float64) + 0.5)
    out = np.where(v > 0, out, 0)
    out = np.where(v >= 255, 255, out)
    return out.astype(np.uint8)


def resize_u8(img: np.ndarray, width: int, height: int, filt: str) -> np.ndarray:
    """Resample.resize of an RGB8 picture [H, W, 3] (float32 passes, rounded to bytes)."""
    H, W = img.shape[:2]
    if (W, H) == (width, height):
        return img
    ht = filter_taps(W, width, 0.0, float(W), filt)
    vt = filter_taps(H, height, 0.0, float(H), filt)
    h_id, v_id = width == W, height == H
    lo_v, hi_v = int(vt[0].min()), int((vt[0] + vt[1]).max())
    lo_h, hi_h = int(ht[0].min()), int((ht[0] + ht[1]).max())
    rows_needed, cols_needed = hi_v - lo_v, hi_h - lo_h
    h_total, v_total = int(ht[1].sum()), int(vt[1].sum())
    horizontal_first = rows_needed * h_total * 3 + width * v_total <= cols_needed * v_total + height * h_total * 3
    out = np.empty((height, width, 3), np.uint8)
    for c in range(3):
        plane = np.ascontiguousarray(img[:, :, c], dtype=np.float32)
        if v_id:
            res = _hpass(plane, ht)
        elif h_id:
            res = _vpass(plane, vt)
        elif horizontal_first:
            res = _vpass(_hpass(plane, ht), vt)
        else:
            res = _hpass(_vpass(plane, vt), ht)
        out[:, :, c] = quantize_u8(res)
    return out


def model_view(img: np.ndarray, S: int) -> np.ndarray:
    """Codec.modelView: the WHOLE picture squashed to S x S (bilinear = antialiased triangle)."""
    return resize_u8(img, S, S, "bilinear")


def shrink_pictures(ds, max_side: int) -> MemorySet:
    """Pictures.shrunk: copies shrunk (area filter) to a long side of at most `max_side`."""
    pics = []
    for i in range(ds.count):
        p = np.asarray(ds.pixels(i))
        h, w = p.shape[:2]
        if max(w, h) > max_side:
            nw, nh = shrunk_size(w, h, max_side)
            p = resize_u8(p, nw, nh, "area")
        else:
            p = np.array(p)
        pics.append(p)
    return MemorySet(pics, [ds.class_id(i) for i in range(ds.count)], ds.class_names)
