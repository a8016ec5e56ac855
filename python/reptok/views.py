"""Training views keyed by (seed, view index), as Sources/RepTokData/ViewSampler.swift renders
them (random-resized crops or whole pictures, flips, colour jitter, integer antialiased triangle
weights), and `ViewStream`, a torch IterableDataset of one rank's share of every step's batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._floats import MASK32, f32
from .rng import philox_np
from .rtds import DataError

__all__ = ["ViewConfig", "ViewSampler", "ViewStream", "axis_weights", "TAG_PERM", "TAG_VIEW"]

TAG_PERM, TAG_VIEW = 0x5045524D, 0x56494557


def axis_weights(n: int, a: float, L: float, S: int):
    """AxisWeights: source indices [S, K] (clamped) and integer weights [S, K] summing to 2^14."""
    scale = L / S
    support = max(scale, 1.0)
    stride = int(2 * support) + 3
    c = a + (np.arange(S, dtype=np.float64) + 0.5) * scale
    j0 = np.maximum(0, np.floor(c - support - 0.5)).astype(np.int64)
    j1 = np.minimum(n - 1, np.ceil(c + support - 0.5)).astype(np.int64)
    j1 = np.minimum(j1, j0 + stride - 1)
    j = j0[:, None] + np.arange(stride)[None, :]
    valid = j <= j1[:, None]
    w = np.where(valid, np.maximum(0.0, 1.0 - np.abs(j + 0.5 - c[:, None]) / support), 0.0)
    total = np.zeros(S)
    for k in range(stride):   # sequential, as the Swift loop
        total = total + w[:, k]
    empty = total <= 0
    if empty.any():           # cannot happen for a window inside the picture
        jn = np.minimum(n - 1, np.maximum(0, c.astype(np.int64)))
        j[empty] = jn[empty, None]
        w[empty] = 0
        w[empty, 0] = 1
        total[empty] = 1
    q = np.floor(w * (16384.0 / total)[:, None] + 0.5).astype(np.int64)
    big = np.argmax(q, axis=1)
    q[np.arange(S), big] += 16384 - q.sum(1)
    return np.minimum(j, n - 1), q.astype(np.float32)


class ViewConfig:
    def __init__(self, size, whole_fraction=0.25, min_area=0.35, max_area=1.0, max_aspect=16 / 9, flip=0.5,
                 brightness=0.1, contrast=0.1, saturation=0.1, augment_whole=True):
        self.size, self.whole, self.min_area, self.max_area = size, whole_fraction, min_area, max_area
        self.max_aspect, self.flip, self.augment_whole = max_aspect, flip, augment_whole
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation


class ViewSampler:
    """Views keyed by (seed, view index): the same bytes as RepTokData's ViewSampler up to the
    rounding of the last float32 additions."""

    def __init__(self, ds, config: ViewConfig, batch: int, seed: int):
        if ds.count == 0:
            raise DataError("view sampler: the dataset has no images")
        self.ds, self.cfg, self.batch_size, self.seed = ds, config, batch, seed
        self._perm_epoch, self._perm = -1, None

    def permutation(self, e: int) -> np.ndarray:
        if e == self._perm_epoch:
            return self._perm
        n = self.ds.count
        p = np.arange(n, dtype=np.int64)
        if n > 1:
            i = np.arange(n - 1, 0, -1, dtype=np.uint64)
            b0, b1, _, _ = philox_np(self.seed, i, e & MASK32, TAG_PERM, (e >> 32) & MASK32)
            r = (b0 << np.uint64(32)) | b1
            js = (r % (i + np.uint64(1))).astype(np.int64)
            for ii, jj in zip(range(n - 1, 0, -1), js.tolist()):
                p[ii], p[jj] = p[jj], p[ii]
        self._perm_epoch, self._perm = e, p
        return p

    def params(self, v: int) -> dict:
        n = self.ds.count
        img = int(self.permutation(v // n)[v % n])
        W, H = float(self.ds.width(img)), float(self.ds.height(img))
        blocks = philox_np(self.seed, np.array([v & MASK32] * 3, np.uint64), (v >> 32) & MASK32, TAG_VIEW,
                           np.arange(3, dtype=np.uint64))
        u = [(float(blocks[j][blk]) + 0.5) * (1.0 / 4294967296.0) for blk in range(3) for j in range(4)]
        c = self.cfg
        p = dict(image=img, whole=True, x=0.0, y=0.0, w=W, h=H, flip=False, b=1.0, c=1.0, s=1.0)
        if u[0] >= c.whole:
            p["whole"] = False
            la = math.log(c.max_aspect)
            r = math.exp(-la + 2 * la * u[1])
            area = (c.min_area + (c.max_area - c.min_area) * u[2]) * W * H
            w, h = math.sqrt(area * r), math.sqrt(area / r)
            shrink = min(1.0, W / w, H / h)
            w, h = min(w * shrink, W), min(h * shrink, H)
            p.update(w=w, h=h, x=max(0.0, W - w) * u[3], y=max(0.0, H - h) * u[4])
        if not p["whole"] or c.augment_whole:
            p["flip"] = u[5] < c.flip
            p["b"] = f32(1 + c.brightness * (2 * u[6] - 1))
            p["c"] = f32(1 + c.contrast * (2 * u[7] - 1))
            p["s"] = f32(1 + c.saturation * (2 * u[8] - 1))
        return p

    @staticmethod
    def render(px: np.ndarray, p: dict, S: int) -> np.ndarray:
        """One view of an [H, W, 3] uint8 picture: planar [3, S, S] float32 in [-1, 1]."""
        H, W = px.shape[:2]
        cx, cy = min(max(0.0, p["x"]), float(W)), min(max(0.0, p["y"]), float(H))
        cw, ch = max(min(p["w"], W - cx), 1e-6), max(min(p["h"], H - cy), 1e-6)
        xj, xq = axis_weights(W, cx, cw, S)
        yj, yq = axis_weights(H, cy, ch, S)
        lo, hi = int(xj.min()), int(xj.max()) + 1
        rows = np.zeros((S, hi - lo, 3), np.float32)     # exact integers (< 2^22)
        for k in range(yq.shape[1]):
            rows += yq[:, k, None, None] * px[yj[:, k], lo:hi, :].astype(np.float32)
        acc = np.zeros((S, S, 3), np.float32)
        for k in range(xq.shape[1]):
            acc = acc + xq[None, :, k, None] * rows[:, xj[:, k] - lo, :]
        v = acc * (np.float32(1.0 / (1 << 28)) * np.float32(p["b"]))
        if p["b"] > 1:
            v = np.minimum(v, np.float32(255))
        if p["flip"]:
            v = v[:, ::-1, :]
        c, s = np.float32(p["c"]), np.float32(p["s"])
        r, g, b = v[:, :, 0], v[:, :, 1], v[:, :, 2]
        if not (c == 1 and s == 1):
            luma = np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b
            row_sums = np.zeros(S, np.float32)
            for i in range(S):
                row_sums = row_sums + luma[:, i]
            m = np.float32(sum(float(x) for x in row_sums) / (S * S))
            lo0, hi255 = np.float32(0), np.float32(255)
            if c != 1:
                r, g, b = (np.clip((ch_ - m) * c + m, lo0, hi255) for ch_ in (r, g, b))
            if s != 1:
                lum = np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b
                r, g, b = (np.clip((ch_ - lum) * s + lum, lo0, hi255) for ch_ in (r, g, b))
        out = np.stack([r, g, b], 0) / np.float32(127.5) - np.float32(1)
        return np.ascontiguousarray(out, dtype=np.float32)

    def views(self, step: int, slot0: int, slot1: int):
        """Views of slots [slot0, slot1) of the batch of `step`: [n, 3, S, S] float32 and class ids."""
        S = self.cfg.size
        out = np.empty((slot1 - slot0, 3, S, S), np.float32)
        classes = []
        for k, slot in enumerate(range(slot0, slot1)):
            p = self.params(step * self.batch_size + slot)
            out[k] = self.render(np.asarray(self.ds.pixels(p["image"])), p, S)
            classes.append(self.ds.class_id(p["image"]))
        return out, classes


class ViewStream(torch.utils.data.IterableDataset):
    """This rank's share of every step's batch from `start` on (workers take steps in turn)."""

    def __init__(self, sampler: ViewSampler, start: int, slot0: int, slot1: int):
        super().__init__()
        self.sampler, self.start, self.slot0, self.slot1 = sampler, start, slot0, slot1

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        s = self.start + wid
        while True:
            x, _ = self.sampler.views(s, self.slot0, self.slot1)
            yield s, torch.from_numpy(x)
            s += nw


def _worker_init(_):
    torch.set_num_threads(1)
