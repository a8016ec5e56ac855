#!/usr/bin/env python3
"""PyTorch trainer for the RepTok tokenizer, for users with GPUs (docs/TRAINING_TORCH.md).

The same recipe as `rttrain tokenizer` (docs/TRAINING.md), run with torchrun /
DistributedDataParallel, writing the same files the Swift tools load:

  * checkpoints (RUN/checkpoint.safetensors) in the layout of Sources/RepTokTrain/Trainer.swift:
    param.<key>, frozen.cls_token, frozen.encoder.* (tune last:K / all), adam.m.<key>,
    adam.v.<key>, ema.<key>, metadata reptok.train (TrainState JSON) + reptok.config;
  * RUN/metrics.jsonl, one line per step (step loss flow cos lr grad_norm token_noise_std
    seconds wall);
  * at the end (rank 0) a codec model file exactly as Sources/RepTokCodec/CodecModel.swift loads
    it: EMA weights (encoder.*, adapter.*, decoder.*, frozen.cls_token; F32 or --fp16),
    quantizer.mean / rotation / sigma (F32), quantizer.dictionary (U8 zstd dictionary) and
    metadata reptok.config = {format, version, encoder, decoder, codec, training}, with the
    base step and default level chosen as Sources/RepTokTrain/Export.swift chooses them.

Randomness mirrors the Swift trainer: every draw of step s (views, t, flow noise, token noise)
comes from Philox4x32-10 keyed by mix64(seed, s) (views: by the seed), so the global batch of a
step does not depend on the number of processes, and --resume continues the same sequence.

  torchrun --standalone --nproc_per_node 8 tools/train_torch.py --data data/train.rtds \
      --val data/val.rtds --out runs/NAME --encoder ssl_encoder.safetensors --tune cls \
      --batch 256 --steps 100000 --bf16
  python3 tools/train_torch.py --fingerprint model.safetensors     # the model's 16-hex-digit id
  python3 tools/train_torch.py --self-test
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import math
import os
import signal
import stat
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reptok_torch as rt  # noqa: E402

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1


def f32(x: float) -> float:
    """The value a Swift `Float` field holds (rounded to float32), as a Python float."""
    return float(np.float32(x))


def f32_json(x: float):
    """A float as Swift's JSONEncoder writes a Float: the shortest decimal that round-trips the
    float32; integral values as integers."""
    v = np.float32(x)
    if float(v).is_integer() and abs(float(v)) < 2 ** 53:
        return int(v)
    return float(str(v))


# ==============================================================================================
# Philox4x32-10 and the per-step random streams (Sources/RepTokTensor/Random.swift,
# Sources/RepTokTrain/Views.swift)

def mix64(a: int, b: int) -> int:
    """splitmix64 finalizer of (a, b): `SplitMix64.mix` in Sources/RepTokTensor/Random.swift."""
    z = (a + 0x9E3779B97F4A7C15 * ((b + 1) & MASK64)) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def philox_np(seed: int, c0, c1, c2, c3):
    """Philox4x32-10 blocks for (broadcast) uint32 counters; key = (seed low, seed high)."""
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    x0, x1, x2, x3 = (np.asarray(c, dtype=np.uint64) & np.uint64(MASK32) for c in np.broadcast_arrays(c0, c1, c2, c3))
    m0, m1, s32, m32 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57), np.uint64(32), np.uint64(MASK32)
    for r in range(10):
        p0 = m0 * x0
        p1 = m1 * x2
        x0, x1, x2, x3 = ((p1 >> s32) ^ x1 ^ np.uint64(k0), p1 & m32, (p0 >> s32) ^ x3 ^ np.uint64(k1), p0 & m32)
        if r < 9:
            k0, k1 = (k0 + 0x9E3779B9) & MASK32, (k1 + 0xBB67AE85) & MASK32
    return x0, x1, x2, x3


def _mulhilo_t(m: int, x: torch.Tensor):
    """(hi, lo) 32-bit halves of m * x for int64 tensors x in [0, 2^32), without int64 overflow."""
    xl, xh = x & 0xFFFF, x >> 16
    a, b = m * xl, m * xh                      # both < 2^48
    t = a + ((b & 0xFFFF) << 16)               # < 2^49
    return ((b >> 16) + (t >> 32)) & MASK32, t & MASK32


def philox_torch(seed: int, c0: torch.Tensor, c1: int, c2: torch.Tensor, c3: int):
    """Philox4x32-10 on int64 tensors (any device); c1 and c3 are scalars."""
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    x0, x2 = c0 & MASK32, c2 & MASK32
    x1 = torch.full_like(x0, c1 & MASK32)
    x3 = torch.full_like(x0, c3 & MASK32)
    for r in range(10):
        hi0, lo0 = _mulhilo_t(0xD2511F53, x0)
        hi1, lo1 = _mulhilo_t(0xCD9E8D57, x2)
        x0, x1, x2, x3 = hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0
        if r < 9:
            k0, k1 = (k0 + 0x9E3779B9) & MASK32, (k1 + 0xBB67AE85) & MASK32
    return x0, x1, x2, x3


def philox_uniforms(seed: int, stream: int, start: int, count: int) -> np.ndarray:
    """`Philox4x32.uniforms(stream:start:count:)`: (u >> 8 + 0.5) / 2^24, counter (k, stream, k >> 32, 1)."""
    if count <= 0:
        return np.zeros(0)
    kb, ke = start >> 2, ((start + count - 1) >> 2) + 1
    k = np.arange(kb, ke, dtype=np.uint64)
    u = philox_np(seed, k & np.uint64(MASK32), stream, k >> np.uint64(32), 1)
    vals = np.stack([((x >> np.uint64(8)).astype(np.float64) + 0.5) / 16777216.0 for x in u], axis=1).reshape(-1)
    off = start - 4 * kb
    return vals[off:off + count]


def philox_gaussians(seed: int, stream: int, start: int, count: int, device="cpu") -> torch.Tensor:
    """`Philox4x32.gaussians(stream:start:count:)` as a float32 tensor on `device`: Box-Muller in
    double precision from counter (k, stream, k >> 32, 0)."""
    if count <= 0:
        return torch.zeros(0, device=device)
    kb, ke = start >> 2, ((start + count - 1) >> 2) + 1
    k = torch.arange(kb, ke, dtype=torch.int64, device=device)
    u = philox_torch(seed, k & MASK32, stream, k >> 32, 0)
    a = [((x >> 8).to(torch.float64) + 0.5) / 16777216.0 for x in u]
    r0, t0 = torch.sqrt(-2 * torch.log(a[0])), 2 * math.pi * a[1]
    r1, t1 = torch.sqrt(-2 * torch.log(a[2])), 2 * math.pi * a[3]
    vals = torch.stack([r0 * torch.cos(t0), r0 * torch.sin(t0), r1 * torch.cos(t1), r1 * torch.sin(t1)], 1).reshape(-1)
    off = start - 4 * kb
    return vals[off:off + count].to(torch.float32)


class StepRandom:
    """The random streams of one training step (StepRandom in Views.swift)."""
    FLOW, TIME, TOKEN = 0, 1, 2

    def __init__(self, seed: int, step: int):
        self.key = mix64(seed, step)

    def times(self, B: int, uniform_fraction: float, one_fraction: float) -> np.ndarray:
        u = philox_uniforms(self.key, self.TIME, 0, 3 * B)
        one, uni = f32(one_fraction), f32(uniform_fraction)
        out = np.empty(B, dtype=np.float32)
        for b in range(B):
            if u[3 * b] < one:
                out[b] = 1
            elif u[3 * b] < one + uni:
                out[b] = u[3 * b + 1]
            else:
                n = math.sqrt(-2 * math.log(u[3 * b + 1])) * math.cos(2 * math.pi * u[3 * b + 2])
                out[b] = 1 / (1 + math.exp(-n))
        return out


# ==============================================================================================
# Pictures: .rtds packs (docs/DATASET.md; validated as Sources/RepTokData/PackedDataset.swift)
# and ImageFolders

RTDS_MAGIC = b"RTDSPACK"
RTDS_INDEX = np.dtype([("off", "<u8"), ("w", "<u4"), ("h", "<u4"), ("cls", "<u2"), ("flags", "<u2"),
                       ("src", "<u4"), ("grp", "<u4"), ("crc", "<u4")])


class DataError(Exception):
    pass


class RTDSPack:
    """A memory-mapped .rtds pack, validated like the Swift reader (which rejects the pack
    otherwise). pixels(i) is an [H, W, 3] uint8 view."""

    def __init__(self, path: str, verify_crc: bool = False):
        self.path = path
        try:
            st = os.stat(path)
        except OSError as e:
            raise DataError(f"rtds: cannot open {path}: {e.strerror}")
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"rtds: {path} is not a regular file")
        size = st.st_size

        def bad(m):
            return DataError(f"rtds: invalid pack {path}: {m}")

        if size < 64:
            raise bad(f"file is {size} bytes, shorter than the 64-byte header")
        with open(path, "rb") as f:
            h = f.read(64)
        if h[:8] != RTDS_MAGIC:
            raise bad("no RTDSPACK magic")
        version, hsize, count, index_off, names_off, names_size, class_count, data_off, declared = \
            struct.unpack_from("<IIQQQIIQQ", h, 8)
        if version != 1:
            raise bad(f"unsupported version {version} (this reader knows 1)")
        if hsize != 64:
            raise bad(f"header size {hsize}, expected 64")
        if count > 1 << 24:
            raise bad(f"count {count} is over the cap {1 << 24}")
        for v, what in ((index_off, "index offset"), (names_off, "names offset"), (data_off, "data offset")):
            if v > size:
                raise bad(f"{what} {v} is beyond the end of the file ({size} bytes)")
        if declared != size:
            raise bad(f"header says {declared} bytes, the file has {size}")
        if class_count > 65535:
            raise bad(f"class count {class_count} is over the cap 65535")
        if count and class_count < 1:
            raise bad("images but no classes")
        if index_off < 64:
            raise bad(f"index offset {index_off} overlaps the header")
        index_end = index_off + 32 * count
        if index_end > size:
            raise bad(f"index ({count} entries) runs past the end of the file")
        if names_off < index_end:
            raise bad("class names overlap the index")
        if names_size > size - names_off:
            raise bad("class names run past the end of the file")
        if data_off < names_off + names_size:
            raise bad("pixel data overlaps the class names")
        with open(path, "rb") as f:
            f.seek(names_off)
            table = f.read(names_size)
        names, p = [], 0
        for c in range(class_count):
            if p + 2 > names_size:
                raise bad(f"class name {c} runs past the name table")
            n = struct.unpack_from("<H", table, p)[0]
            if not 1 <= n <= 255:
                raise bad(f"class name {c} has length {n}")
            if p + 2 + n > names_size:
                raise bad(f"class name {c} runs past the name table")
            try:
                names.append(table[p + 2:p + 2 + n].decode("utf-8"))
            except UnicodeDecodeError:
                raise bad(f"class name {c} is not UTF-8")
            p += 2 + n
        if p != names_size:
            raise bad(f"name table has {names_size - p} stray bytes")
        idx = np.fromfile(path, dtype=RTDS_INDEX, count=count, offset=index_off) if count else np.zeros(0, RTDS_INDEX)
        prev_end = data_off
        ws, hs, cl, fl, of = (idx[k].tolist() for k in ("w", "h", "cls", "flags", "off"))
        for i in range(count):   # the Swift reader's checks, in its order
            wi, hi = ws[i], hs[i]
            if not (1 <= wi <= 16384 and 1 <= hi <= 16384):
                raise bad(f"image {i} is {wi}x{hi} (sides must be 1...16384)")
            if cl[i] >= class_count:
                raise bad(f"image {i} has class {cl[i]} of {class_count}")
            if fl[i] & ~0x1F:
                raise bad(f"image {i} has unknown flags {fl[i]}")
            o = of[i]
            n = wi * hi * 3
            if o > size or o < prev_end:
                raise bad(f"image {i} starts at {o}, before the end of the previous image or the data area ({prev_end})")
            if n > size - o:
                raise bad(f"image {i} ({wi}x{hi}) runs past the end of the file")
            prev_end = o + n
        self.count = count
        self.class_names = names
        self.size = size
        self._off, self._w, self._h, self._cls = of, ws, hs, cl
        self._crc = idx["crc"].tolist()
        self._mm = None
        if verify_crc:
            for i in range(count):
                if self._crc[i] and zlib.crc32(self.pixels(i).tobytes()) != self._crc[i]:
                    raise bad(f"image {i}: pixel CRC-32 mismatch")

    def __getstate__(self):       # data-loader workers map the file themselves
        d = dict(self.__dict__)
        d["_mm"] = None
        return d

    def width(self, i):
        return self._w[i]

    def height(self, i):
        return self._h[i]

    def class_id(self, i):
        return self._cls[i]

    def pixels(self, i) -> np.ndarray:
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        o, w, h = self._off[i], self._w[i], self._h[i]
        return self._mm[o:o + w * h * 3].reshape(h, w, 3)


class MemorySet:
    """Pictures held in memory (the shrunk copy of a pack)."""

    def __init__(self, pics, classes, class_names):
        self.pics, self._cls, self.class_names = pics, classes, class_names
        self.count = len(pics)

    def width(self, i):
        return self.pics[i].shape[1]

    def height(self, i):
        return self.pics[i].shape[0]

    def class_id(self, i):
        return self._cls[i]

    def pixels(self, i):
        return self.pics[i]


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise DataError("reading an ImageFolder needs Pillow (pip install Pillow)")
    return Image, ImageOps


class ImageFolderSet:
    """DIR/classname/**/*.{jpg,png,webp,...}: sorted subfolders are the classes. Pictures are decoded
    with Pillow as tools/build_dataset.py does (EXIF orientation, alpha over mid grey, grey to RGB);
    with `max_side` they are shrunk (Pillow box filter) to that long side when larger."""

    def __init__(self, root: str, max_side: int | None = None):
        Image, _ = _pil()
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if not classes:
            raise DataError(f"{root}: no class subfolders (ImageFolder layout DIR/classname/*.jpg)")
        files, cls = [], []
        for c, name in enumerate(classes):
            for dp, dn, fn in os.walk(os.path.join(root, name)):
                dn.sort()
                for f in sorted(fn):
                    if f.lower().endswith(IMAGE_EXTS):
                        files.append(os.path.join(dp, f))
                        cls.append(c)
        if not files:
            raise DataError(f"{root}: no pictures")
        self.files, self._cls, self.class_names, self.count = files, cls, classes, len(files)
        self.max_side = max_side
        self._w, self._h = [], []
        for f in files:   # sizes from the headers (views need them before decoding)
            with Image.open(f) as im:
                w, h = im.size
                o = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
            if o in (5, 6, 7, 8):
                w, h = h, w
            if max_side and max(w, h) > max_side:
                w, h = shrunk_size(w, h, max_side)
            self._w.append(w)
            self._h.append(h)

    def width(self, i):
        return self._w[i]

    def height(self, i):
        return self._h[i]

    def class_id(self, i):
        return self._cls[i]

    def pixels(self, i) -> np.ndarray:
        Image, ImageOps = _pil()
        with Image.open(self.files[i]) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                im = im.point(lambda v: v / 257).convert("L") if max(im.getextrema()) > 255 else im.convert("L")
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            if im.mode in ("RGBA", "LA", "PA"):
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (128, 128, 128, 255)), rgba)
            im = im.convert("RGB")
            if im.size != (self._w[i], self._h[i]):
                im = im.resize((self._w[i], self._h[i]), Image.BOX)
            return np.asarray(im, dtype=np.uint8)


def open_pictures(path: str, verify_crc: bool = False, max_side: int | None = None):
    if os.path.isdir(path):
        return ImageFolderSet(path, max_side)
    return RTDSPack(path, verify_crc)


def shrunk_size(w: int, h: int, max_side: int):
    long = max(w, h)
    return (max(1, int(math.floor(w * max_side / long + 0.5))), max(1, int(math.floor(h * max_side / long + 0.5))))


# ==============================================================================================
# Resampling (Sources/RepTokImage/Resample.swift): the codec's view and the shrunk copies

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


# ==============================================================================================
# Training views (Sources/RepTokData/ViewSampler.swift)

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


# ==============================================================================================
# Model

ENC_KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "patch_size", "image_size",
            "num_channels", "layer_norm_eps", "layerscale_value", "num_register_tokens", "qkv_bias",
            "use_swiglu_ffn", "hidden_act", "image_mean", "image_std"]
DEC_KEYS = ["image_size", "patch_size", "width", "depth", "num_heads", "mlp_ratio", "token_dim", "freq_dim",
            "prediction", "t_eps", "layer_norm_eps"]


def clean_config(cfg: dict, keys) -> dict:
    """Only the fields the Swift configs know, floats as Swift writes its Floats."""
    out = {}
    for k in keys:
        v = cfg[k]
        if isinstance(v, bool) or isinstance(v, str):
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = [f32_json(x) for x in v]
        elif isinstance(v, float):
            out[k] = f32_json(v)
        else:
            out[k] = int(v)
    return out


def sdpa_attention(x, q, k, v, heads):
    b, t, _ = q.shape
    hd = q.shape[-1] // heads
    q, k, v = (y.reshape(b, t, heads, hd).transpose(1, 2) for y in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, heads * hd)


def init_encoder(enc: rt.Dinov2Encoder, seed: int):
    """Dinov2Encoder.initialize: truncated normal(0.02) weights and embeddings, zero biases, unit
    norms, LayerScale at layerscale_value, zero mask token."""
    g = torch.Generator().manual_seed(seed & (2 ** 63 - 1))
    ls = enc.config["layerscale_value"]
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
            elif "norm" in name:
                p.fill_(1)
            elif "layer_scale" in name:
                p.fill_(ls)
            elif name == "embeddings.mask_token":
                p.zero_()
            else:
                p.copy_(torch.nn.init.trunc_normal_(torch.empty(p.shape), std=0.02, a=-0.04, b=0.04, generator=g))


def init_decoder(dec: rt.FlowDecoder, seed: int):
    """FlowDecoder.initialize: Xavier weights, zero biases, adaLN-Zero, t_embed weights normal(0.02)."""
    torch.manual_seed(seed & (2 ** 63 - 1))
    dec.reset_parameters()
    with torch.no_grad():
        dec.t_embed.fc1.weight.normal_(0, 0.02)
        dec.t_embed.fc2.weight.normal_(0, 0.02)


def load_encoder_file(path: str, S: int) -> rt.Dinov2Encoder:
    """TokenizerTrainer.loadEncoder: encoder.* + reptok.config's encoder part; the position table
    is resampled once (the encoder's own bicubic interpolation) when image_size differs from S."""
    tensors, meta = rt.load_state_dict_file(path)
    if rt.CONFIG_KEY not in meta:
        raise SystemExit(f"{path}: no reptok.config metadata")
    cfg = rt.encoder_config(json.loads(meta[rt.CONFIG_KEY])["encoder"])
    if S % cfg["patch_size"]:
        raise SystemExit(f"image size {S} is not a multiple of the encoder's patch {cfg['patch_size']}")
    src = rt.Dinov2Encoder(cfg)
    sd = {k: tensors["encoder." + k].float() for k in src.state_dict()}
    extra = [k for k in tensors if k.startswith("encoder.") and k[8:] not in sd]
    if extra:
        raise SystemExit(f"{path}: unexpected tensors {extra[:5]}")
    src.load_state_dict(sd)
    if cfg["image_size"] == S:
        return src
    g = S // cfg["patch_size"]
    with torch.no_grad():
        table = src.embeddings.interpolate_pos_encoding(g * g, S, S)
    dst = rt.Dinov2Encoder(dict(cfg, image_size=S))
    sd2 = dict(sd)
    sd2["embeddings.position_embeddings"] = table.detach().clone()
    dst.load_state_dict(sd2)
    return dst


def parse_tune(s: str):
    if s in ("cls", "all"):
        return s, 0
    if s.startswith("last:") and s[5:].isdigit() and int(s[5:]) >= 1:
        return "last", int(s[5:])
    raise SystemExit(f"--tune must be cls, last:K or all (got {s})")


class Tokenizer(nn.Module):
    """Encoder + adapter + decoder and the frozen reference (RepTokModel with setTune)."""

    def __init__(self, encoder: rt.Dinov2Encoder, decoder: rt.FlowDecoder):
        super().__init__()
        self.encoder = encoder
        self.adapter = rt.Adapter(encoder.config["hidden_size"])
        self.decoder = decoder
        self.register_buffer("frozen_cls", encoder.embeddings.cls_token.detach().clone())
        self._frozen = [None]    # frozen encoder copy (tune last:K / all), not a registered module
        e = encoder.config
        self.register_buffer("img_mean", torch.tensor(e["image_mean"], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("img_std", torch.tensor(e["image_std"], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    @property
    def frozen_encoder(self):
        return self._frozen[0]

    def named_weights(self):
        """(checkpoint key, parameter) in the Swift order: encoder, adapter, decoder."""
        out = []
        for prefix, m in (("encoder.", self.encoder), ("adapter.", self.adapter), ("decoder.", self.decoder)):
            out += [(prefix + k, p) for k, p in m.named_parameters()]
        return out

    def set_tune(self, mode: str, k: int = 0):
        """RepTokModel.setTune: the frozen reference keeps the CURRENT encoder weights."""
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.embeddings.cls_token.requires_grad_(True)
        with torch.no_grad():
            self.frozen_cls.copy_(self.encoder.embeddings.cls_token)
        if mode == "cls":
            self._frozen[0] = None
        else:
            if mode == "last":
                for layer in self.encoder.encoder.layer[-k:]:
                    for p in layer.parameters():
                        p.requires_grad_(True)
                for p in self.encoder.layernorm.parameters():
                    p.requires_grad_(True)
            else:
                for p in self.encoder.parameters():
                    p.requires_grad_(True)
                self.encoder.embeddings.mask_token.requires_grad_(False)
            fe = copy.deepcopy(self.encoder)
            for p in fe.parameters():
                p.requires_grad_(False)
            self._frozen[0] = fe
        for p in list(self.adapter.parameters()) + list(self.decoder.parameters()):
            p.requires_grad_(True)

    def normalize(self, x):
        """The encoder's input for decoder-space pixels x in [-1, 1]: ((x + 1) 127.5 / 255 - mean) / std."""
        return ((x + 1) * 127.5 / 255 - self.img_mean) / self.img_std

    def encode_pixels255(self, px):
        return self.adapter(self.encoder((px / 255 - self.img_mean) / self.img_std)[0])

    def forward(self, x, t, noise, tn_draw, tn_rel: float, lam: float, amp: torch.dtype | None, world: int):
        """(loss, flow, cos, token noise std): TokenizerObjective.lossAndGradients."""
        ac = torch.autocast(device_type=x.device.type, dtype=amp) if amp is not None else _null()
        with ac:
            pe = self.normalize(x)
            with torch.no_grad():
                fe = self.frozen_encoder
                c0 = fe(pe)[0] if fe is not None else self.encoder(pe, cls_token=self.frozen_cls)[0]
            c = self.encoder(pe)[0]
            z = self.adapter(c).float()
        c0 = c0.float()
        std = torch.zeros((), device=x.device)
        zn = z
        if tn_rel > 0:
            zd = z.detach()
            if world > 1:
                parts = [torch.empty_like(zd) for _ in range(world)]
                dist.all_gather(parts, zd.contiguous())
                zd = torch.cat(parts, 0)
            if zd.shape[0] >= 2:
                var = zd.double().var(dim=0, unbiased=True)
                std = (tn_rel * var.mean().sqrt()).float()
                zn = z + std * tn_draw
        tb = t.view(-1, 1, 1, 1)
        xt = (1 - tb) * x + tb * noise
        with ac:
            out = self.decoder(xt, t, zn)
        v = self.decoder.to_velocity(xt, t, out.float())
        flow = torch.mean((v - (noise - x)) ** 2)
        na = z.norm(dim=-1).clamp_min(1e-8)
        nb = c0.norm(dim=-1).clamp_min(1e-8)
        cos = torch.mean(1 - (z * c0).sum(-1) / (na * nb))
        return flow + lam * cos, flow.detach(), cos.detach(), std.detach()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def decay_mask(model: Tokenizer):
    """Names with AdamW weight decay: weights of Linear layers (the patch projection included)."""
    out = set()
    for prefix, m in (("encoder.", model.encoder), ("adapter.", model.adapter), ("decoder.", model.decoder)):
        for mn, mod in m.named_modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                out.add(prefix + (mn + "." if mn else "") + "weight")
    return out


def warmup_cosine(s: int, peak: float, lo: float, warmup: int, total: int) -> float:
    peak, lo = f32(peak), f32(lo)
    if s < warmup:   # peakLR * Float(s + 1) / Float(warmupSteps), in float32
        return float(np.float32(peak) * np.float32(s + 1) / np.float32(warmup))
    span = max(1, total - warmup)
    p = min(1.0, (s - warmup) / span)
    return f32(lo + (peak - lo) * f32(0.5 * (1 + math.cos(math.pi * p))))


# ==============================================================================================
# safetensors writing (per-tensor dtypes) and the checkpoint

_ST = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.uint8: "U8",
       torch.int64: "I64", torch.int32: "I32", torch.float64: "F64"}


def write_safetensors(path: str, tensors: dict, metadata: dict, atomic: bool = True):
    """Tensors written as given (dtype kept), sorted by name; atomically (temp + fsync + rename)."""
    header = {"__metadata__": {str(k): str(v) for k, v in sorted(metadata.items())}}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _ST[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    h += b" " * (-len(h) % 8)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp" if atomic else path
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    if atomic:
        os.replace(tmp, path)
        try:
            fd = os.open(d, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        except OSError:
            pass


def read_header(path: str):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return h.pop("__metadata__", {}), h, 8 + n


def config_json(enc: dict, dec: dict, **extra) -> str:
    obj = {"format": rt.FORMAT, "version": rt.VERSION, "encoder": clean_config(enc, ENC_KEYS),
           "decoder": dict(clean_config(dec, DEC_KEYS), **({"skip_size": int(dec["skip_size"])} if dec.get("skip_size") else {}))}
    obj.update(extra)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# TrainConfig fields (Sources/RepTokTrain/TrainConfig.swift), snake_case, and the argparse names
TRAIN_FIELDS = [
    ("data", "data"), ("val", "val"), ("encoder_path", "encoder"), ("enc_width", "enc_width"),
    ("enc_depth", "enc_depth"), ("enc_heads", "enc_heads"), ("enc_patch", "enc_patch"), ("tune", "tune"),
    ("lambda", "lam"), ("image_size", "image_size"), ("patch", "patch"), ("width", "width"), ("depth", "depth"),
    ("heads", "heads"), ("prediction", "prediction"), ("skip_size", "skip_size"), ("skip_init_std", "skip_init_std"), ("batch", "batch"), ("lr", "lr"), ("min_lr", "min_lr"),
    ("warmup", "warmup"), ("steps", "steps"), ("minutes", "minutes"), ("weight_decay", "weight_decay"),
    ("clip", "clip"), ("ema", "ema"), ("ema_warmup", "ema_warmup"), ("token_noise", "token_noise"),
    ("t_uniform", "t_uniform"), ("t_one", "t_one"), ("whole_view", "whole_view"),
    ("min_crop_area", "min_crop_area"), ("max_aspect", "max_aspect"), ("jitter", "jitter"),
    ("shrink_pictures", "shrink_pictures"), ("seed", "seed"), ("checkpoint_minutes", "checkpoint_minutes"),
    ("log_every", "log_every")]
FLOAT32_FIELDS = {"lambda", "lr", "min_lr", "weight_decay", "clip", "ema", "token_noise", "t_uniform", "t_one", "skip_init_std",
                  "whole_view", "min_crop_area", "jitter"}


def train_config(args) -> dict:
    cfg = {}
    for key, attr in TRAIN_FIELDS:
        v = getattr(args, attr)
        if key in FLOAT32_FIELDS and v is not None:
            v = f32_json(v)
        cfg[key] = v
    return cfg


def apply_config(args, cfg: dict):
    for key, attr in TRAIN_FIELDS:
        if key in cfg:
            setattr(args, attr, cfg[key])


# ==============================================================================================
# Quantizer, zstd payloads and records (Sources/RepTokCodec/Quantizer.swift, RepTokFormat)

LEVELS = range(1, 10)


class FastCoverParams(ctypes.Structure):
    """ZDICT_fastCover_params_t (zdict.h, ZDICT_STATIC_LINKING_ONLY), passed by value."""
    _fields_ = [("k", ctypes.c_uint), ("d", ctypes.c_uint), ("f", ctypes.c_uint), ("steps", ctypes.c_uint),
                ("nbThreads", ctypes.c_uint), ("splitPoint", ctypes.c_double), ("accel", ctypes.c_uint),
                ("shrinkDict", ctypes.c_uint), ("shrinkDictMaxRegression", ctypes.c_uint),
                ("compressionLevel", ctypes.c_int), ("notificationLevel", ctypes.c_uint),
                ("dictID", ctypes.c_uint)]


class Zstd:
    """zstd as RTKZstd uses it. `system`: the libzstd the Swift tools link (ctypes), so dictionaries
    and payloads are byte-identical to theirs on this machine; `python`: the `zstandard` package
    (bundles its own libzstd: a different version trains other dictionaries, payloads may differ by
    a byte); `auto`: system if loadable, else python."""

    def __init__(self, which: str = "auto"):
        self.lib = None
        if which in ("auto", "system"):
            import ctypes.util
            for name in ("libzstd.so.1", "libzstd.so", "libzstd.1.dylib", "libzstd.dylib", ctypes.util.find_library("zstd")):
                if not name:
                    continue
                try:
                    lib = ctypes.CDLL(name)
                    lib.ZSTD_versionString.restype = ctypes.c_char_p
                    lib.ZSTD_createCCtx.restype = ctypes.c_void_p
                    lib.ZSTD_freeCCtx.argtypes = [ctypes.c_void_p]
                    lib.ZSTD_CCtx_setParameter.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
                    lib.ZSTD_CCtx_setParameter.restype = ctypes.c_size_t
                    lib.ZSTD_CCtx_loadDictionary.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
                    lib.ZSTD_CCtx_loadDictionary.restype = ctypes.c_size_t
                    lib.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
                    lib.ZSTD_compressBound.restype = ctypes.c_size_t
                    lib.ZSTD_compress2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                   ctypes.c_char_p, ctypes.c_size_t]
                    lib.ZSTD_compress2.restype = ctypes.c_size_t
                    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
                    lib.ZDICT_trainFromBuffer_fastCover.argtypes = [
                        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t),
                        ctypes.c_uint, FastCoverParams]
                    lib.ZDICT_trainFromBuffer_fastCover.restype = ctypes.c_size_t
                    lib.ZDICT_isError.argtypes = [ctypes.c_size_t]
                    self.lib, self.ct = lib, ctypes
                    break
                except (OSError, AttributeError):
                    continue
            if self.lib is None and which == "system":
                raise SystemExit("--zstd system: libzstd not found")
        if self.lib is None:
            try:
                import zstandard
            except ImportError:
                raise SystemExit("export needs libzstd (system) or the zstandard package (pip install zstandard)")
            self.zs = zstandard

    @property
    def version(self) -> str:
        if self.lib is not None:
            return "libzstd " + self.lib.ZSTD_versionString().decode()
        return "python-zstandard %s (libzstd %s)" % (self.zs.__version__, ".".join(map(str, self.zs.ZSTD_VERSION)))

    def train(self, samples, max_bytes: int) -> bytes:
        """RTKZstd.trainDictionary: ZDICT_trainFromBuffer_fastCover with its fixed parameters (k 64,
        d 8, f 20, accel 1, splitPoint 1, no parameter search) over the samples followed by zero
        slack of their total size + 64 bytes (libzstd <= 1.5.7 reads past the end of small sample
        sets: facebook/zstd #4499, #4710; Sources/RepTokFormat/Zstd.swift). b"" where Swift's
        `try?` gives []."""
        lengths = [len(x) for x in samples]
        total = sum(lengths)
        if total == 0:
            return b""
        if self.lib is not None:
            ct = self.ct
            joined = b"".join(samples) + bytes(total + 64)
            sizes = (ct.c_size_t * len(samples))(*lengths)
            buf = ct.create_string_buffer(max_bytes)
            params = FastCoverParams(k=64, d=8, f=20, steps=0, nbThreads=1, splitPoint=1.0, accel=1)
            n = self.lib.ZDICT_trainFromBuffer_fastCover(buf, max_bytes, joined, sizes, len(samples), params)
            return b"" if self.lib.ZDICT_isError(n) else buf.raw[:n]
        # the package runs the same trainer with the same fixed parameters (steps 0, threads 0: no
        # search), on its own libzstd and without the slack
        try:
            return self.zs.train_dictionary(max_bytes, samples, k=64, d=8, f=20, split_point=1.0, accel=1,
                                            steps=0, threads=0).as_bytes()
        except self.zs.ZstdError:
            return b""

    def compress(self, raw: bytes, dictionary: bytes) -> bytes:
        """RTKZstd.compress: level 19, content size, no checksum, no dictionary id, magic dropped."""
        if self.lib is not None:
            lib, ct = self.lib, self.ct
            c = lib.ZSTD_createCCtx()
            try:
                for param, value in ((100, 19), (200, 1), (201, 0), (202, 0)):
                    assert not lib.ZSTD_isError(lib.ZSTD_CCtx_setParameter(c, param, value))
                if dictionary:
                    assert not lib.ZSTD_isError(lib.ZSTD_CCtx_loadDictionary(c, dictionary, len(dictionary)))
                cap = lib.ZSTD_compressBound(len(raw))
                buf = ct.create_string_buffer(cap)
                n = lib.ZSTD_compress2(c, buf, cap, raw, len(raw))
                assert not lib.ZSTD_isError(n), "zstd compression failed"
                out = buf.raw[:n]
            finally:
                lib.ZSTD_freeCCtx(c)
        else:
            kw = dict(level=19, write_checksum=False, write_content_size=True, write_dict_id=False)
            if dictionary:
                kw["dict_data"] = self.zs.ZstdCompressionDict(dictionary)
            out = self.zs.ZstdCompressor(**kw).compress(raw)
        assert out[:4] == b"\x28\xb5\x2f\xfd"
        return out[4:]


ZSTD: Zstd | None = None


def zstd() -> Zstd:
    global ZSTD
    if ZSTD is None:
        ZSTD = Zstd("auto")
    return ZSTD


class Quantizer:
    def __init__(self, mean, rotation, sigma, dictionary: bytes, base_step: float):
        self.mean = np.asarray(mean, np.float32)
        self.rotation = np.asarray(rotation, np.float32)
        self.sigma = np.asarray(sigma, np.float32)
        self.dictionary = dictionary
        self.base_step = np.float32(base_step)
        self.dim = len(self.mean)

    @staticmethod
    def fit(tokens: np.ndarray) -> "Quantizer":
        """Quantizer.fit: mean, PCA rotation (rows by decreasing variance, largest-magnitude entry
        positive) and sigmas, in float64 (numpy eigh instead of the Swift Jacobi)."""
        t = tokens.astype(np.float64)
        n, D = t.shape
        mean = t.mean(0) if n else np.zeros(D)
        d = t - mean
        cov = d.T @ d / max(n - 1, 1)
        vals, vecs = np.linalg.eigh(cov)
        order = sorted(range(D), key=lambda e: -vals[e])   # stable: ties keep eigh's order
        rot = np.zeros((D, D), np.float32)
        sig = np.zeros(D, np.float32)
        for k, e in enumerate(order):
            v = vecs[:, e]
            j = int(np.argmax(np.abs(v)))
            sign = -1.0 if v[j] < 0 else 1.0
            rot[k] = (sign * v).astype(np.float32)
            sig[k] = np.float32(math.sqrt(max(vals[e], 0.0)))
        return Quantizer(mean.astype(np.float32), rot, sig, b"", max(float(sig[0]) if D else 1.0, 1e-6) * 0.25)

    def step(self, level: int) -> np.float32:
        return np.float32(self.base_step * np.float32(2.0 ** ((5 - level) / 2)))

    def rotate(self, z: np.ndarray) -> np.ndarray:
        """y = R (z - mean): differences in float32, sums in float64, rounded to float32. z [n, D]."""
        d = (z.astype(np.float32) - self.mean).astype(np.float64)
        return (d @ self.rotation.astype(np.float64).T).astype(np.float32)

    def symbols(self, z: np.ndarray, level: int) -> np.ndarray:
        a = (self.rotate(z) / self.step(level)).astype(np.float64)
        q = np.sign(a) * np.floor(np.abs(a) + 0.5)      # .rounded(): half away from zero
        return np.clip(q, -1_000_000, 1_000_000).astype(np.int64)

    def dequantized(self, z: np.ndarray, level: int) -> np.ndarray:
        """The token a decoder gets back: mean + R^T (q step)."""
        y = (self.symbols(z, level).astype(np.float32) * self.step(level)).astype(np.float64)
        return ((y @ self.rotation.astype(np.float64)).astype(np.float32) + self.mean).astype(np.float32)

    @staticmethod
    def pack(q) -> bytes:
        """Zigzag LEB128 varints, trailing zeros dropped."""
        q = list(int(v) for v in q)
        n = len(q)
        while n > 0 and q[n - 1] == 0:
            n -= 1
        out = bytearray()
        for v in q[:n]:
            u = ((v << 1) ^ (v >> 31)) & MASK32
            while u >= 0x80:
                out.append((u & 0x7F) | 0x80)
                u >>= 7
            out.append(u)
        return bytes(out)

    def with_dictionary(self, tokens: np.ndarray, max_bytes: int = 2048) -> "Quantizer":
        """Quantizer.withDictionary: samples = pack(symbols) of every token at every level 1...9
        (token-major), ZDICT_trainFromBuffer-equivalent training; no dictionary if it fails."""
        syms = {L: self.symbols(tokens, L) for L in LEVELS}
        samples = [self.pack(syms[L][r]) for r in range(len(tokens)) for L in LEVELS]
        return Quantizer(self.mean, self.rotation, self.sigma, zstd().train(samples, max_bytes), self.base_step)

    def compress(self, raw: bytes) -> bytes:
        return zstd().compress(raw, self.dictionary)

    def payloads(self, tokens: np.ndarray, level: int):
        s = self.symbols(tokens, level)
        return [self.compress(self.pack(row)) for row in s]


def varint_len(v: int) -> int:
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def record_bytes(width: int, height: int, payload_len: int, seed: int = 0, steps: int = 1) -> int:
    """RTKRecord.serializedCount without a name (14-byte fixed header, varints, payload, CRC)."""
    return 14 + varint_len(width) + varint_len(height) + varint_len(seed) + varint_len(steps) \
        + varint_len(payload_len) + payload_len + 4


# ==============================================================================================
# Fingerprint (CodecModel.fingerprint): FNV-1a 64 over the decode tensors and the config parts

def swift_json(v) -> str:
    """JSONSerialization.data(withJSONObject:options:.sortedKeys) text of a parsed JSON value."""
    if isinstance(v, dict):
        return "{" + ",".join(swift_json(k) + ":" + swift_json(v[k]) for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(swift_json(x) for x in v) + "]"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 2 ** 53:
            return str(int(v))
        return repr(v)
    out = ['"']
    for ch in v:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "/":
            out.append("\\/")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif o < 0x20:
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def fingerprint(path: str) -> str:
    meta, header, base = read_header(path)
    h = 0xCBF29CE484222325
    prime = 0x100000001B3

    def eat(data: bytes):
        nonlocal h
        x = h
        for b in data:
            x = ((x ^ b) * prime) & MASK64
        h = x

    names = sorted((k for k in header if k.startswith(("encoder.", "adapter.", "decoder.", "quantizer."))),
                   key=lambda s: s.encode("utf-8"))
    with open(path, "rb") as f:
        for n in names:
            info = header[n]
            eat(n.encode() + b"\0")
            eat(info["dtype"].encode() + b"\0")
            eat(",".join(str(s) for s in info["shape"]).encode() + b"\0")
            a, b = info["data_offsets"]
            f.seek(base + a)
            eat(f.read(b - a))
    if rt.CONFIG_KEY in meta:
        try:
            obj = json.loads(meta[rt.CONFIG_KEY])
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            for part in ("encoder", "decoder", "codec"):
                if part in obj:
                    eat(swift_json(obj[part]).encode("utf-8") + b"\0")
    return "%016x" % h


# ==============================================================================================
# Export (Sources/RepTokTrain/Export.swift)

@torch.no_grad()
def tokens_of(model: Tokenizer, ds, S: int, device, limit: int | None = None, batch: int = 64) -> np.ndarray:
    """Latents z of every picture's codec view (whole picture squashed to S x S), float32."""
    idx = list(range(ds.count))
    if limit and limit < len(idx):
        idx = [int(round(i * (ds.count - 1) / max(limit - 1, 1))) for i in range(limit)]
    out = []
    for i in range(0, len(idx), batch):
        views = [model_view(np.asarray(ds.pixels(j)), S) for j in idx[i:i + batch]]
        px = torch.from_numpy(np.stack(views).transpose(0, 3, 1, 2).astype(np.float32)).to(device)
        out.append(model.encode_pixels255(px).float().cpu().numpy())
    return np.concatenate(out, 0) if out else np.zeros((0, model.encoder.config["hidden_size"]), np.float32)


def philox_noise_image(S: int, seed: int = 0) -> torch.Tensor:
    return philox_gaussians(seed, 0, 0, 3 * S * S).view(1, 3, S, S)


@torch.no_grad()
def decode_tokens(model: Tokenizer, z: np.ndarray, S: int, steps: int, sampler: str, device, batch: int = 64):
    """Codec.decodeRaw with the record's noise (seed 0) for every token: uint8 [n, 3, S, S]."""
    noise = philox_noise_image(S).to(device)
    ts = [f32(1 - np.float32(i) / np.float32(steps)) for i in range(steps + 1)]
    outs = []
    for i in range(0, len(z), batch):
        zb = torch.from_numpy(z[i:i + batch]).to(device)
        B = zb.shape[0]
        x = noise.expand(B, -1, -1, -1).clone()
        for k in range(steps):
            t0, t1 = ts[k], ts[k + 1]
            h = f32(t1 - t0)
            v0 = model.decoder.velocity(x, torch.full((B,), t0, device=device), zb)
            if sampler == "euler" or k == steps - 1:
                x = x + h * v0
            else:
                xe = x + h * v0
                v1 = model.decoder.velocity(xe, torch.full((B,), t1, device=device), zb)
                x = x + (h / 2) * v0
                x = x + (h / 2) * v1
        outs.append(quantize_u8(((x + 1) * 127.5).float().cpu().numpy()))
    return np.concatenate(outs, 0)


def mean_psnr(decoded: np.ndarray, refs: np.ndarray) -> float:
    """Metrics.psnr averaged over pictures (decoded [n,3,S,S], refs [n,S,S,3])."""
    total = 0.0
    for a, b in zip(decoded, refs):
        mse = float(np.mean((a.transpose(1, 2, 0).astype(np.float64) - b.astype(np.float64)) ** 2))
        total += 99.0 if mse == 0 else 10 * math.log10(255 * 255 / mse)
    return total / max(len(refs), 1)


def export_model(model: Tokenizer, args, state: dict, device, log) -> dict:
    """The model file as CodecModel loads it (call with the EMA weights in place)."""
    S = model.decoder.config["image_size"]
    model.eval()
    if device.type == "cuda":   # tokens and decodes in full fp32, as the Swift engine computes them
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    weights = dict((k, p.detach()) for k, p in model.named_weights())
    if args.fp16:   # round now, so tokens and the quantizer see exactly what the file holds
        with torch.no_grad():
            for p in weights.values():
                p.copy_(p.half().float())
    train_set = open_pictures(args.data)
    val_path = args.val or default_val_path(args.data)
    if not val_path or not os.path.exists(val_path):
        raise SystemExit("export: no validation data (give --val)")
    val_set = open_pictures(val_path)
    log(f"export: tokens of {train_set.count if not args.fit_limit else min(args.fit_limit, train_set.count)} "
        f"training pictures, {val_set.count} validation pictures")
    train_tokens = tokens_of(model, train_set, S, device, args.fit_limit)
    val_tokens = tokens_of(model, val_set, S, device)
    val_dims = [(val_set.width(i), val_set.height(i)) for i in range(val_set.count)]

    log(f"export: zstd: {zstd().version}")
    pca = Quantizer.fit(train_tokens)
    sigma1 = max(float(pca.sigma[0]), 1e-6)

    def plain(base):
        return Quantizer(pca.mean, pca.rotation, pca.sigma, b"", base)

    def with_dict(base):
        return plain(base).with_dictionary(train_tokens)

    def sizes(q, level):
        return [record_bytes(w, h, len(p)) for (w, h), p in zip(val_dims, q.payloads(val_tokens, level))]

    def fits(q):
        s = sizes(q, args.default_level)
        return sum(x <= args.record_bytes for x in s) >= args.fit_fraction * len(s) - 1e-9

    lo, hi = math.log2(sigma1 * 1e-3), math.log2(sigma1 * 20)
    if not fits(with_dict(f32(2.0 ** hi))):
        raise SystemExit(f"export: even a step of 20 sigma does not fit {args.record_bytes} bytes")
    for _ in range(18):
        mid = (lo + hi) / 2
        if fits(with_dict(f32(2.0 ** mid))):
            hi = mid
        else:
            lo = mid
    budget_step = f32(2.0 ** hi)
    base = budget_step
    knee = None
    refs = np.stack([model_view(np.asarray(val_set.pixels(i)), S) for i in range(val_set.count)])

    def psnr_of(z):
        return mean_psnr(decode_tokens(model, z, S, args.default_steps, args.sampler, device), refs)

    ceiling = psnr_of(val_tokens)    # reported also without the rule
    if args.quality_tolerance > 0:
        chosen = psnr_of(plain(base).dequantized(val_tokens, args.default_level))
        for _ in range(24):
            nxt = f32(np.float32(base) * np.float32(math.sqrt(2.0)))
            p = psnr_of(plain(nxt).dequantized(val_tokens, args.default_level))
            if p < ceiling - args.quality_tolerance:
                break
            base, chosen = nxt, p
        knee = (ceiling, chosen)
        log(f"export: unquantized PSNR {ceiling:.3f} dB; level {args.default_level} at base step {base:.4g}: "
            f"{chosen:.3f} dB")
    q = with_dict(base)
    log(f"export: base step {base:.4g} ({base / sigma1:.3f} sigma_1; the byte budget allows {budget_step:.4g}), "
        f"dictionary {len(q.dictionary)} bytes")

    minutes = int(math.floor(state["wall_seconds"] / 60 + 0.5))
    codec = {"base_step": f32_json(base), "bootstrap": bool(args.bootstrap), "default_level": int(args.default_level),
             "default_sampler": args.sampler, "default_steps": int(args.default_steps),
             "description": args.description.replace("{minutes}", str(minutes))}
    training = {k: v for k, v in train_config(args).items() if v is not None}   # as JSONEncoder: no nulls
    training.update(steps=state["step"], wall_seconds=round(state["wall_seconds"], 1), samples=state["samples"],
                    threads=state["threads"], weights="ema", trainer="tools/train_torch.py",
                    world_size=state.get("world_size", 1), device=str(device), torch=torch.__version__)
    meta = {rt.CONFIG_KEY: config_json(model.encoder.config, model.decoder.config, codec=codec, training=training)}
    wdt = torch.float16 if args.fp16 else torch.float32
    tensors = {k: v.to(wdt) for k, v in weights.items()}
    tensors["frozen.cls_token"] = model.frozen_cls.detach().to(wdt)
    tensors["quantizer.mean"] = torch.from_numpy(q.mean.copy())
    tensors["quantizer.rotation"] = torch.from_numpy(q.rotation.copy())
    tensors["quantizer.sigma"] = torch.from_numpy(q.sigma.copy())
    tensors["quantizer.dictionary"] = torch.frombuffer(bytearray(q.dictionary or b"\0"), dtype=torch.uint8)
    out = args.export_out
    write_safetensors(out, tensors, meta)

    verify_model_file(out, model)
    levels = []
    for L in LEVELS:
        s = sizes(q, L)
        levels.append({"level": L, "mean": round(sum(s) / len(s), 2), "max": max(s), "min": min(s),
                       "within_budget": round(sum(x <= args.record_bytes for x in s) / len(s), 4)})
    size = os.path.getsize(out)
    report = {"path": out, "file_bytes": size, "base_step": f32_json(base), "base_step_in_sigma": round(base / sigma1, 4),
              "budget_step": f32_json(budget_step), "default_level": args.default_level,
              "dictionary_bytes": len(q.dictionary), "zstd": zstd().version, "train_pictures": len(train_tokens),
              "val_pictures": len(val_tokens), "record_budget": args.record_bytes, "predicted_levels": levels,
              "unquantized_psnr": ceiling, "default_level_psnr": knee[1] if knee else None}
    if size <= 256 << 20:
        report["fingerprint"] = fingerprint(out)
    return report


def default_val_path(data: str):
    if os.path.isdir(data):
        return None
    d = os.path.dirname(data)
    p = os.path.join(d if d else ".", "val.rtds")
    return None if os.path.normpath(p) == os.path.normpath(data) else p


def verify_model_file(path: str, model: Tokenizer):
    """Checks the written file against what CodecModel(path:) requires: every tensor of each part
    with its shape, nothing extra under encoder./adapter./decoder./quantizer., quantizer dtypes,
    a decodable config; then reloads it and compares a token with the live model's."""
    meta, header, _ = read_header(path)
    cfg = json.loads(meta[rt.CONFIG_KEY])
    assert cfg["format"] == "reptok-model" and cfg["version"] == 1
    enc, dec, codec = cfg["encoder"], cfg["decoder"], cfg["codec"]
    assert dec["token_dim"] == enc["hidden_size"] and enc["image_size"] == dec["image_size"]
    assert codec["default_level"] in LEVELS and 1 <= codec["default_steps"] <= 1000
    assert codec["default_sampler"] in ("euler", "heun")
    want = {}
    for prefix, m in (("encoder.", model.encoder), ("adapter.", model.adapter), ("decoder.", model.decoder)):
        for k, v in m.state_dict().items():
            want[prefix + k] = list(v.shape)
    D = enc["hidden_size"]
    for k, shp in want.items():
        assert k in header, f"missing tensor {k}"
        assert header[k]["shape"] == shp, f"{k}: shape {header[k]['shape']} != {shp}"
    for k in header:
        if k.startswith(("encoder.", "adapter.", "decoder.")):
            assert k in want, f"unexpected tensor {k}"
    qk = {"quantizer.mean": ("F32", [D]), "quantizer.rotation": ("F32", [D, D]), "quantizer.sigma": ("F32", [D])}
    for k, (dt, shp) in qk.items():
        assert header[k]["dtype"] == dt and header[k]["shape"] == shp, f"{k}: {header[k]}"
    assert header["quantizer.dictionary"]["dtype"] == "U8"
    assert set(k for k in header if k.startswith("quantizer.")) == set(qk) | {"quantizer.dictionary"}
    back = rt.load_reptok(path)
    S = dec["image_size"]
    g = torch.Generator().manual_seed(1)
    px = torch.randint(0, 256, (2, 3, S, S), generator=g).float()
    live = Tokenizer(copy.deepcopy(model.encoder).cpu().float(), copy.deepcopy(model.decoder).cpu().float())
    live.adapter.load_state_dict({k: v.cpu().float() for k, v in model.adapter.state_dict().items()})
    with torch.no_grad():
        z_live = live.encode_pixels255(px)
        pe = (px / 255 - live.img_mean) / live.img_std
        z_file = back.adapter(back.encoder(pe)[0])
    assert torch.allclose(z_live, z_file, rtol=1e-5, atol=1e-5), "token from the file differs from the live model"


# ==============================================================================================
# Training

class Run:
    def __init__(self, args):
        self.args = args
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.device == "auto":
            dev = f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"
        elif args.device == "cuda":
            dev = f"cuda:{self.local_rank}"
        else:
            dev = args.device
        self.device = torch.device(dev)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = args.tf32
            torch.backends.cudnn.allow_tf32 = args.tf32
        if self.world > 1:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
        self.stop = False

    def log(self, s):
        if self.rank == 0:
            print(s, file=sys.stderr, flush=True)

    def barrier(self):
        if self.world > 1:
            dist.barrier()


def build(args, run: Run, ckpt=None):
    """Model, frozen reference and (for a checkpoint) the saved tensors."""
    S = args.image_size
    if ckpt is not None:
        tensors, meta = rt.load_state_dict_file(ckpt)
        cfg = json.loads(meta[rt.CONFIG_KEY])
        encoder = rt.Dinov2Encoder(cfg["encoder"])
        decoder = rt.FlowDecoder(cfg["decoder"])
        model = Tokenizer(encoder, decoder)
        # the frozen reference: the frozen encoder, or the live encoder with the frozen [CLS]
        src = "frozen.encoder." if "frozen.encoder.layernorm.weight" in tensors else "param.encoder."
        encoder.load_state_dict({k: tensors[src + k] for k in encoder.state_dict()})
        if src == "param.encoder.":
            with torch.no_grad():
                encoder.embeddings.cls_token.copy_(tensors["frozen.cls_token"].view(1, 1, -1))
        mode, k = parse_tune(args.tune)
        model.set_tune(mode, k)
        with torch.no_grad():
            for name, p in model.named_weights():
                p.copy_(tensors["param." + name])
        return model, tensors, meta
    if args.encoder:
        encoder = load_encoder_file(args.encoder, S)
    else:
        encoder = rt.Dinov2Encoder(dict(hidden_size=args.enc_width, num_hidden_layers=args.enc_depth,
                                        num_attention_heads=args.enc_heads, patch_size=args.enc_patch, image_size=S,
                                        layerscale_value=1.0, layer_norm_eps=1e-6))
        init_encoder(encoder, mix64(args.seed, 0xE1C0DE))
    decoder = rt.FlowDecoder(dict(image_size=S, patch_size=args.patch, width=args.width, depth=args.depth,
                                  num_heads=args.heads, token_dim=encoder.config["hidden_size"],
                                  prediction=args.prediction, skip_size=args.skip_size))
    init_decoder(decoder, mix64(args.seed, 0xDEC0DE))
    if args.skip_init_std > 0 and decoder.latent_skip is not None:
        with torch.no_grad():
            decoder.latent_skip.weight.normal_(0, args.skip_init_std)
    model = Tokenizer(encoder, decoder)
    mode, k = parse_tune(args.tune)
    model.set_tune(mode, k)
    return model, None, None


def validate(args):
    def bad(s):
        raise SystemExit(f"bad training config: {s}")
    parse_tune(args.tune)
    if not args.encoder and args.tune != "all":
        bad("without --encoder the encoder is randomly initialized and must be trained: use --tune all")
    if not 1 <= args.batch <= 1 << 20:
        bad(f"--batch {args.batch}")
    if not (args.lr > 0 and math.isfinite(args.lr) and 0 <= args.min_lr <= args.lr):
        bad("--lr/--min-lr")
    if args.warmup < 0:
        bad(f"--warmup {args.warmup}")
    if (args.steps is None) == (args.minutes is None):
        bad("give exactly one of --steps and --minutes")
    if args.steps is not None and args.steps < 1:
        bad(f"--steps {args.steps}")
    if args.minutes is not None and not (args.minutes > 0 and math.isfinite(args.minutes)):
        bad(f"--minutes {args.minutes}")
    if not 0 <= args.ema < 1:
        bad("--ema must be in [0, 1)")
    if args.weight_decay < 0 or args.clip <= 0:
        bad("--weight-decay/--clip")
    if args.token_noise < 0:
        bad("--token-noise")
    if not (0 <= args.t_uniform <= 1 and 0 <= args.t_one <= 1 and args.t_uniform + args.t_one <= 1):
        bad("--t-uniform and --t-one must be in [0, 1] with a sum <= 1")
    if not (0 <= args.whole_view <= 1 and 0 < args.min_crop_area <= 1 and 0 <= args.jitter < 1
            and args.max_aspect >= 1):
        bad("view settings (--whole-view, --min-crop-area, --max-aspect, --jitter)")
    if args.lam < 0:
        bad("--lambda")
    if not 0 <= args.seed < 2 ** 64:
        bad("--seed must be in [0, 2^64)")
    if args.checkpoint_minutes <= 0 or args.log_every < 1:
        bad("--checkpoint-minutes/--log-every")
    if not args.encoder:
        if args.enc_width % args.enc_heads or args.image_size % args.enc_patch:
            bad("encoder shape (--enc-width multiple of --enc-heads, --image-size multiple of --enc-patch)")
    if args.width % 4 or args.width % args.heads or args.image_size % args.patch or args.image_size < 8:
        bad("decoder shape (--width multiple of 4 and --heads, --image-size >= 8 and a multiple of --patch)")
    if args.prediction not in ("x", "v"):
        bad("--prediction must be x or v")
    if not 0 <= args.skip_size <= min(64, args.image_size) or (args.skip_size and args.prediction != "x"):
        bad("--skip-size must be 0-64 (at most --image-size) and needs --prediction x")


def train(args):
    run = Run(args)
    rank, world, device = run.rank, run.world, run.device
    if args.attention == "sdpa":
        rt.attention = sdpa_attention
    run_dir = args.out
    ckpt_path = os.path.join(run_dir, "checkpoint.safetensors")
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    torch_meta = {}
    if args.resume or args.export_only:
        if not os.path.exists(ckpt_path):
            raise SystemExit(f"no checkpoint at {ckpt_path}")
        meta, _, _ = read_header(ckpt_path)
        st = json.loads(meta["reptok.train"])
        keep = {k: getattr(args, k) for k in ("data", "val")}
        apply_config(args, st["config"])
        # the pictures may have moved: an explicit --data / --val wins
        for k, v in keep.items():
            if v is not None and v != getattr(args, k):
                setattr(args, k, v)
        torch_meta = json.loads(meta.get("reptok.torch", "{}"))
        state = dict(step=st["step"], total_steps=st.get("total_steps"), wall_seconds=st["wall_seconds"],
                     samples=st["samples"], threads=st.get("threads", 1))
        model, tensors, _ = build(args, run, ckpt_path)
    else:
        validate(args)
        state = dict(step=0, total_steps=args.steps, wall_seconds=0.0, samples=0, threads=torch.get_num_threads())
        model, tensors = build(args, run)[:2]
    state["world_size"] = world
    state["threads"] = torch.get_num_threads()
    model.to(device)
    named = model.named_weights()
    trainable = [(n, p) for n, p in named if p.requires_grad]
    if model.frozen_encoder is not None:
        model.frozen_encoder.to(device)
    decay = decay_mask(model)
    groups = [{"params": [p for n, p in trainable if n in decay], "weight_decay": f32(args.weight_decay)},
              {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0}]
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(groups, lr=f32(args.lr), betas=(0.9, 0.999), eps=1e-8, fused=fused or None)
    ema = [p.detach().clone() for _, p in trainable]
    ema_updates = 0
    if tensors is not None:
        opt_step = int(torch_meta.get("optimizer_step", state["step"]))
        for n, p in trainable:
            opt.state[p] = {"step": torch.tensor(float(opt_step), device=device if fused else "cpu"),
                            "exp_avg": tensors["adam.m." + n].to(device).clone(),
                            "exp_avg_sq": tensors["adam.v." + n].to(device).clone()}
        for (n, _), e in zip(trainable, ema):
            e.copy_(tensors["ema." + n].to(device))
        ema_updates = int(torch_meta.get("ema_updates", state["step"]))
        if rank == 0 and torch_meta.get("world_size", world) != world:
            run.log(f"train_torch: checkpoint written with {torch_meta.get('world_size')} processes, now {world}")
    del tensors

    def save_checkpoint():
        if rank != 0:
            return
        ts = {}
        for n, p in named:
            ts["param." + n] = p.detach().float()
        ts["frozen.cls_token"] = model.frozen_cls.detach().float()
        if model.frozen_encoder is not None:
            for k, v in model.frozen_encoder.state_dict().items():
                ts["frozen.encoder." + k] = v.float()
        for (n, p), e in zip(trainable, ema):
            s = opt.state.get(p, {})
            ts["adam.m." + n] = s.get("exp_avg", torch.zeros_like(p)).float()
            ts["adam.v." + n] = s.get("exp_avg_sq", torch.zeros_like(p)).float()
            ts["ema." + n] = e.float()
        cfg = {k: v for k, v in train_config(args).items() if v is not None}
        st = {"format": "reptok-train-checkpoint", "version": 1, "config": cfg, "step": state["step"],
              "total_steps": state["total_steps"], "wall_seconds": round(wall(), 3), "samples": state["samples"],
              "threads": state["threads"]}
        first = next(iter(opt.state.values()), None)
        tm = {"trainer": "tools/train_torch.py", "world_size": world, "ema_updates": ema_updates,
              "optimizer_step": int(first["step"]) if first else 0, "torch": torch.__version__,
              "device": device.type, "bf16": bool(args.bf16), "attention": args.attention}
        meta = {"reptok.train": json.dumps(st, sort_keys=True), "reptok.torch": json.dumps(tm, sort_keys=True),
                rt.CONFIG_KEY: config_json(model.encoder.config, model.decoder.config)}
        write_safetensors(ckpt_path, ts, meta)

    seg_start = time.time()
    wall_before = state["wall_seconds"]

    def wall():
        return wall_before + (time.time() - seg_start)

    if args.export_only:
        return finish(args, run, model, trainable, ema, state, device, wall)

    B = args.batch
    if B % world:
        raise SystemExit(f"--batch {B} must be a multiple of the process count {world}")
    Bl = B // world
    slot0, slot1 = rank * Bl, (rank + 1) * Bl
    S = args.image_size
    D = model.encoder.config["hidden_size"]
    data = open_pictures(args.data, args.verify_crc, 4 * S if args.shrink_pictures and os.path.isdir(args.data) else None)
    if args.shrink_pictures and not os.path.isdir(args.data):
        t0 = time.time()
        data = shrink_pictures(data, 4 * S)
        run.log(f"train_torch: {data.count} pictures shrunk to a long side of at most {4 * S} in {time.time() - t0:.1f} s")
    vc = ViewConfig(S, whole_fraction=f32(args.whole_view), min_area=f32(args.min_crop_area), max_area=1.0,
                    max_aspect=float(args.max_aspect), flip=0.5, brightness=f32(args.jitter),
                    contrast=f32(args.jitter), saturation=f32(args.jitter))
    sampler = ViewSampler(data, vc, B, args.seed)
    stream = ViewStream(sampler, state["step"], slot0, slot1)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.workers,
                                         pin_memory=device.type == "cuda", worker_init_fn=_worker_init,
                                         prefetch_factor=4 if args.workers else None,
                                         persistent_workers=False)
    it = iter(loader)

    objective = model
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(objective) if args.compile else objective
    amp = torch.bfloat16 if args.bf16 else None
    if amp is not None and device.type != "cuda":
        run.log("train_torch: --bf16 on CPU: autocast bfloat16 on the CPU")

    def handler(signum, frame):
        if run.stop:
            raise KeyboardInterrupt
        run.stop = True
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)

    mf = None
    if rank == 0:
        os.makedirs(run_dir, exist_ok=True)
        kept = []
        if os.path.exists(metrics_path):
            for line in open(metrics_path):
                try:
                    if json.loads(line)["step"] <= state["step"]:
                        kept.append(line if line.endswith("\n") else line + "\n")
                except (ValueError, KeyError):
                    pass
        with open(metrics_path, "w") as f:
            f.writelines(kept)
        mf = open(metrics_path, "a")
    n_train = sum(p.numel() for _, p in trainable)
    run.log(f"train_torch: {world} process(es) on {device.type}, global batch {B} ({Bl} per process), "
            f"{n_train / 1e6:.2f} M trainable parameters, tune {args.tune}, from step {state['step']}")

    budget = args.minutes * 60 if args.minutes is not None else None
    seg_start = time.time()     # the wall clock counts training, not the set-up (as rttrain)
    timed, seg_time, seg_steps = 0, 0.0, 0
    last_ckpt = time.time()
    smooth = None
    recent = []
    per = 3 * S * S
    t_one, t_uni, lam, tn_rel = f32(args.t_one), f32(args.t_uniform), f32(args.lam), f32(args.token_noise)
    ema_decay = f32(args.ema)
    stopped = False
    while True:
        if state["total_steps"] is not None:
            total = state["total_steps"]
        else:
            est = torch.zeros(1, dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
            if rank == 0:
                avg = seg_time / timed if timed >= 3 else 1.0
                left = max(0.0, budget - wall())
                est[0] = max(state["step"] + 1, state["step"] + int(left / max(avg, 1e-3)))
            if world > 1:
                dist.broadcast(est, 0)
            total = int(est.item())
            if state["step"] >= max(args.warmup, 20):
                state["total_steps"] = total
                run.log(f"train_torch: step budget fixed at {total} steps")
        if state["step"] >= total:
            break
        t_start = time.time()
        s = state["step"]
        got, xb = next(it)
        assert got == s, f"view stream out of order: {got} != {s}"
        x = xb.to(device, non_blocking=True)
        rnd = StepRandom(args.seed, s)
        t = torch.from_numpy(rnd.times(B, t_uni, t_one)[slot0:slot1].copy()).to(device)
        noise = philox_gaussians(rnd.key, StepRandom.FLOW, slot0 * per, Bl * per, device).view(Bl, 3, S, S)
        draw = philox_gaussians(rnd.key, StepRandom.TOKEN, slot0 * D, Bl * D, device).view(Bl, D) \
            if tn_rel > 0 else None
        opt.zero_grad()
        loss, flow, cos, nstd = fwd(x, t, noise, draw, tn_rel, lam, amp, world)
        loss.backward()
        gn = float(torch.nn.utils.clip_grad_norm_([p for _, p in trainable], f32(args.clip)))
        rate = warmup_cosine(s, args.lr, args.min_lr, args.warmup, total)
        if math.isfinite(gn):
            for g in opt.param_groups:
                g["lr"] = rate
            opt.step()
            ema_updates += 1
            k = np.float32(ema_updates)
            d = float(min(np.float32(ema_decay), (1 + k) / (10 + k))) if args.ema_warmup else ema_decay
            with torch.no_grad():
                torch._foreach_mul_(ema, d)
                torch._foreach_add_(ema, [p.detach() for _, p in trainable], alpha=f32(1 - d))
        elif rank == 0:
            run.log(f"train_torch: step {s}: non-finite gradient norm, update skipped")
        red = torch.stack([loss.detach().float(), flow.float(), cos.float(),
                           torch.tensor(1.0 if run.stop else 0.0, device=device)]).double()
        if world > 1:
            red = red.cpu() if device.type != "cuda" else red
            dist.all_reduce(red)
        red = red.cpu().tolist()
        m_loss, m_flow, m_cos = (v / world for v in red[:3])
        stop_now = red[3] > 0 or (args.stop_after is not None and s + 1 >= args.stop_after)
        state["step"] = s + 1
        state["samples"] += B
        sec = time.time() - t_start
        seg_steps += 1
        if seg_steps > 2:
            seg_time += sec
            timed += 1
        recent = (recent + [sec])[-50:]
        k98 = 0.98
        smooth = (m_loss, m_flow, m_cos) if smooth is None else tuple(
            k98 * a + (1 - k98) * b for a, b in zip(smooth, (m_loss, m_flow, m_cos)))
        if rank == 0:
            mf.write(json.dumps({"step": state["step"], "loss": m_loss, "flow": m_flow, "cos": m_cos, "lr": rate,
                                 "grad_norm": gn, "token_noise_std": float(nstd), "seconds": round(sec, 6),
                                 "wall": round(wall(), 3)}) + "\n")
            if state["step"] % args.log_every == 0 or state["step"] == total:
                mf.flush()
                avg = sum(recent) / len(recent)
                eta = (total - state["step"]) * avg
                run.log(f"step {state['step']}/{total}  {B / avg:.1f} samples/s  loss {smooth[0]:.4f}  "
                        f"flow {smooth[1]:.4f}  cos {smooth[2]:.4f}  lr {rate:.2e}  |g| {gn:.2f}  "
                        f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        if stop_now or time.time() - last_ckpt >= args.checkpoint_minutes * 60:
            if rank == 0:
                mf.flush()
            save_checkpoint()
            last_ckpt = time.time()
            if stop_now:
                run.log(f"train_torch: stopped at step {state['step']}; checkpoint written to {ckpt_path}")
                stopped = True
                break
    if mf is not None:
        mf.close()
    del it, loader
    if not stopped:
        save_checkpoint()
    run.barrier()
    if world > 1:
        dist.destroy_process_group()
    if stopped:
        return 0
    return finish(args, run, model, trainable, ema, state, device, wall)


def finish(args, run, model, trainable, ema, state, device, wall):
    state["wall_seconds"] = wall()
    if run.rank != 0 or args.no_export:
        if run.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
        return 0
    with torch.no_grad():
        for (_, p), e in zip(trainable, ema):
            p.copy_(e)
    if args.export_out is None:
        args.export_out = os.path.join(args.out, "model.safetensors")
    t0 = time.time()
    report = export_model(model, args, state, device, run.log)
    run.log(f"export: wrote {report['path']} ({report['file_bytes']} bytes) in {time.time() - t0:.1f} s")
    print(json.dumps(report, indent=1))
    if run.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return 0


# ==============================================================================================
# Self-test

def self_test():
    # Philox4x32-10 known answers (Random123 kat_vectors)
    kat = [((0, 0, 0, 0), 0, (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
           ((MASK32,) * 4, MASK64, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
           ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), 0x299F31D0A4093822,
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for ctr, key, want in kat:
        got = tuple(int(v) for v in philox_np(key, *ctr))
        assert got == want, (ctr, got, want)
        gt = philox_torch(key, torch.tensor([ctr[0]]), ctr[1], torch.tensor([ctr[2]]), ctr[3])
        assert tuple(int(v) for v in gt) == want, ("torch", ctr)
    # numpy and torch paths agree on many counters
    k = np.arange(0, 5000, 37, dtype=np.uint64) * np.uint64(104729)
    a = philox_np(12345678901234, k & np.uint64(MASK32), 3, k >> np.uint64(32), 0)
    kt = torch.from_numpy(k.astype(np.int64))
    b = philox_torch(12345678901234, kt & MASK32, 3, kt >> 32, 0)
    assert all(np.array_equal(x.astype(np.int64), y.numpy()) for x, y in zip(a, b))
    g = philox_gaussians(7, 0, 5, 11)
    g2 = philox_gaussians(7, 0, 0, 20)[5:16]
    assert torch.equal(g, g2)
    u = philox_uniforms(7, 1, 3, 9)
    assert np.array_equal(u, philox_uniforms(7, 1, 0, 12)[3:])
    assert mix64(0, 0) == mix64(0, 0) and mix64(1, 2) != mix64(2, 1)
    # pack: zigzag LEB128, trailing zeros dropped
    assert Quantizer.pack([0, -1, 1, 64, -65, 0, 0]) == bytes([0, 1, 2, 0x80, 0x01, 0x81, 0x01])
    assert Quantizer.pack([0, 0]) == b""
    # a constant picture gives a constant view
    px = np.full((37, 53, 3), 77, np.uint8)
    v = ViewSampler.render(px, dict(x=1.3, y=2.2, w=30.5, h=20.1, flip=True, b=1.0, c=1.0, s=1.0), 16)
    assert np.all(v == np.float32(77) / np.float32(127.5) - 1)
    assert np.all(resize_u8(px, 11, 9, "bilinear") == 77) and np.all(resize_u8(px, 100, 9, "area") == 77)
    # dictionaries: the fixed-parameter fastCover trainer of RTKZstd, deterministic, safe on tiny
    # sample sets (the ones libzstd 1.5.4's default trainer read past: facebook/zstd #4499)
    try:
        zs = Zstd("auto")
    except SystemExit:
        zs = None
    if zs is not None:
        rs = np.random.default_rng(5)
        samples = [bytes(rs.integers(0, 8, int(rs.integers(12, 40)), dtype=np.uint8)) for _ in range(600)]
        d1 = zs.train(samples, 2048)
        assert d1[:4] == bytes([0x37, 0xA4, 0x30, 0xEC]) and len(d1) <= 2048 and zs.train(samples, 2048) == d1
        for n in range(1, 40):
            d = zs.train([bytes([i % 7]) * 3 for i in range(n)], 1024)
            assert len(d) <= 1024
        print(f"dictionaries ({zs.version}): {len(d1)} bytes, deterministic")
    # record size: 14 + w + h + seed + steps + len + payload + 4
    assert record_bytes(512, 384, 10) == 14 + 2 + 2 + 1 + 1 + 1 + 10 + 4
    dm = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "RepTokCodec", "Models",
                      "default.safetensors")
    if os.path.exists(dm):
        fp = fingerprint(dm)
        print(f"fingerprint of the default model: {fp}")
        cfg = json.loads(read_header(dm)[0][rt.CONFIG_KEY])
        for part in ("encoder", "decoder", "codec"):   # our JSON writing reproduces Swift's
            assert json.loads(json.dumps(cfg[part])) == cfg[part]
    print("self-test passed")
    return 0


# ==============================================================================================
# CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch (DDP) trainer for reptok tokenizers; see docs/TRAINING_TORCH.md")
    a = ap.add_argument
    a("--data", help=".rtds pack or ImageFolder directory (DIR/class/*.jpg)")
    a("--val", help="validation pictures (.rtds or folder); default: val.rtds beside --data")
    a("--out", help="run folder: checkpoint.safetensors, metrics.jsonl, model.safetensors")
    a("--resume", action="store_true", help="continue the run in --out (settings come from its checkpoint)")
    a("--encoder", help="SSL encoder safetensors (encoder.* + reptok.config); default: fresh init (--tune all)")
    a("--tune", default=None, help="cls | last:K | all (default cls with --encoder, else all)")
    a("--lambda", dest="lam", type=float, default=0.1)
    a("--image-size", type=int, default=128)
    a("--patch", type=int, default=8)
    a("--width", type=int, default=256)
    a("--depth", type=int, default=8)
    a("--heads", type=int, default=4)
    a("--prediction", default="x", choices=["x", "v"])
    a("--skip-size", type=int, default=0, help="decoder latent skip k (0: none)")
    a("--skip-init-std", type=float, default=0.0, help="std of a random latent-skip init (0: zero)")
    a("--enc-width", type=int, default=192)
    a("--enc-depth", type=int, default=6)
    a("--enc-heads", type=int, default=3)
    a("--enc-patch", type=int, default=16)
    a("--batch", type=int, default=16, help="GLOBAL batch (split evenly over the processes)")
    a("--lr", type=float, default=3e-4)
    a("--min-lr", type=float, default=0.0)
    a("--warmup", type=int, default=500)
    a("--steps", type=int)
    a("--minutes", type=float)
    a("--weight-decay", type=float, default=0.05)
    a("--clip", type=float, default=1.0)
    a("--ema", type=float, default=0.999)
    a("--no-ema-warmup", dest="ema_warmup", action="store_false")
    a("--token-noise", type=float, default=0.0)
    a("--t-uniform", type=float, default=0.1)
    a("--t-one", type=float, default=0.0)
    a("--whole-view", type=float, default=0.5)
    a("--min-crop-area", type=float, default=0.35)
    a("--max-aspect", type=float, default=16 / 9)
    a("--jitter", type=float, default=0.1)
    a("--full-size-views", dest="shrink_pictures", action="store_false",
      help="cut views from the full-size pictures (default: copies shrunk to a long side of 4 S)")
    a("--seed", type=int, default=0)
    a("--checkpoint-minutes", type=float, default=5.0)
    a("--log-every", type=int, default=50)
    a("--stop-after", type=int, help="stop (checkpoint, exit 0, no export) after this step, as Ctrl-C would")
    # export
    a("--no-export", action="store_true")
    a("--export-only", action="store_true", help="export the checkpoint in --out (no training)")
    a("--export-out", help="model file (default RUN/model.safetensors)")
    a("--fp16", action="store_true", help="F16 network weights in the model file")
    a("--record-bytes", type=int, default=128)
    a("--fit-fraction", type=float, default=1.0)
    a("--default-level", type=int, default=5)
    a("--quality-tolerance", type=float, default=0.1)
    a("--default-steps", type=int, default=1)
    a("--sampler", default="euler", choices=["euler", "heun"])
    a("--description", default="")
    a("--bootstrap", action="store_true")
    a("--fit-limit", type=int, help="fit the quantizer on at most N training pictures (default all)")
    a("--zstd", default="auto", choices=["auto", "system", "python"],
      help="zstd for the dictionary and the byte budget: the system libzstd (what the Swift tools link), "
           "the zstandard package, or auto (system if found)")
    # torch
    a("--device", default="auto", help="auto | cuda | cpu")
    a("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    a("--tf32", action="store_true", help="allow TF32 matmuls on CUDA")
    a("--compile", action="store_true", help="torch.compile the objective")
    a("--attention", default="sdpa", choices=["sdpa", "math"])
    a("--workers", type=int, default=4, help="data-loader processes per rank (0: in the training process)")
    a("--threads", type=int, default=0, help="torch CPU threads per process (0: torch's default)")
    a("--verify-crc", action="store_true", help="check every picture's CRC-32 when opening a pack")
    a("--fingerprint", metavar="MODEL", help="print the codec fingerprint of a model file and exit")
    a("--self-test", action="store_true")
    args = ap.parse_args(argv)
    global ZSTD
    ZSTD = None if args.zstd == "auto" else Zstd(args.zstd)
    if args.self_test:
        return self_test()
    if args.fingerprint:
        print(fingerprint(args.fingerprint))
        return 0
    if not args.out:
        ap.error("--out is required")
    if not (args.resume or args.export_only):
        if not args.data:
            ap.error("--data is required")
        if args.tune is None:
            args.tune = "cls" if args.encoder else "all"
    if not 1 <= args.default_level <= 9 or not 1 <= args.default_steps <= 1000:
        ap.error("--default-level 1-9, --default-steps 1-1000")
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
