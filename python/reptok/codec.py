"""Tokens and pictures of .rtk records: what rtdec does, in NumPy and PyTorch.

    z = reptok.tokens("photos.rtk")                # [N, D] float32: the dequantized model tokens
    px = reptok.decode("photos.rtk", steps=8)      # [N, S, S, 3] uint8: rtdec --native --steps 8

Mirrors Sources/RepTokCodec (Codec.swift's decode path, Quantizer.decode, CodecModel) with the
flow decoder of `reptok.model`:

- the model: a record names its model by fingerprint (`CodecModel.fingerprint`, FNV-1a 64 over
  the decode tensors and configs); `find_model` looks where rtdec does: the models given, the
  default model, then $REPTOK_MODEL_PATH (colon-separated) and $XDG_DATA_HOME/reptok/models (or
  ~/.local/share/reptok/models). A record whose fingerprint no model has is refused.
- the token (`tokens`, numpy only): the payload's symbols (`reptok.entropy`: laplace with the
  step mode first when the model has `codec.step_modes`, or the first models' zstd packing),
  y_i = q_i * step (float32; the step is `level_steps[L-1]`, or `base_step * 2^((5 - L)/2)`,
  times the mode's factor), z = mean + sum_i y_i s_i with the synthesis rows s_i (the rotation's
  rows without `quantizer.synthesis`), summed in float64 in the order of i and rounded to
  float32 before the mean is added: Swift's token bit for bit.
- the picture (`decode`, torch): noise from Philox4x32-10 keyed by the seed (stream 0, Box-Muller
  in double with the C library's log/cos/sin, as Swift's `Philox4x32.gaussian`), the sampler of
  the record (Euler, or Heun with an Euler last step) over t_i = 1 - i/N in float32, the decoder's
  velocity (x_t - out) / max(t, t_eps) (as a float32 reciprocal times the difference), and the
  8-bit picture round((x + 1) * 127.5) (ties up) clamped to 0..255, at the model resolution (what
  `rtdec --native` writes). The network runs in PyTorch (float32 by default; any device), so a
  pixel may differ from Swift's by one level where the two sums round differently: the committed
  vectors (Tests/Parity/decode) bound it.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import threading
from typing import Iterable

import numpy as np

from . import entropy, rtk
from .entropy import PayloadError
from .modelfile import QuantizerKey as K

__all__ = ["CodecModel", "ModelError", "PayloadError", "load_model", "find_model", "default_model_path",
           "model_search_path", "tokens", "decode", "noise", "sample_times", "to_pixels"]

_MASK32 = 0xFFFFFFFF
MAX_STEP_MODES = 16
LEVELS = range(1, 10)


class ModelError(ValueError):
    """A model file that cannot decode (unreadable, inconsistent) or a record with no model."""


# ---------------------------------------------------------------------------------------------
# safetensors, read with hard checks (no torch, no safetensors package)

_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
              "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "u1"}
MAX_HEADER_BYTES = 100_000_000


class _SafeTensors:
    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise ModelError(f"{path}: not a safetensors file ({size} bytes)")
            n = struct.unpack("<Q", f.read(8))[0]
            if n > min(MAX_HEADER_BYTES, size - 8):
                raise ModelError(f"{path}: safetensors header of {n} bytes (file {size} bytes, cap {MAX_HEADER_BYTES})")
            try:
                header = json.loads(f.read(n))
            except (ValueError, UnicodeDecodeError) as e:
                raise ModelError(f"{path}: bad safetensors header: {e}") from None
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if not isinstance(header, dict):
            raise ModelError(f"{path}: bad safetensors header")
        self.metadata = header.pop("__metadata__", None) or {}
        self.base, self.size = 8 + n, size
        self.info = {}
        for name, info in header.items():
            try:
                dtype, shape, (a, b) = info["dtype"], [int(s) for s in info["shape"]], info["data_offsets"]
            except (KeyError, TypeError, ValueError):
                raise ModelError(f"{path}: bad entry for tensor {name}") from None
            if dtype not in _ST_DTYPES:
                raise ModelError(f"{path}: tensor {name} has unsupported dtype {dtype}")
            count = math.prod(shape) if shape else 1
            if min(shape, default=0) < 0 or not 0 <= a <= b or self.base + b > size \
                    or b - a != count * np.dtype(_ST_DTYPES[dtype]).itemsize:
                raise ModelError(f"{path}: tensor {name} lies outside the file or has the wrong size")
            self.info[name] = (dtype, shape, a, b)

    def __contains__(self, name):
        return name in self.info

    def raw(self, name) -> bytes:
        _, _, a, b = self.info[name]
        return bytes(self.map[self.base + a:self.base + b])

    def floats(self, name) -> np.ndarray:
        """The tensor as float32 (F16 and BF16 widened exactly, as the Swift reader does)."""
        if name not in self.info:
            raise ModelError(f"model file lacks tensor {name}")
        dtype, shape, a, b = self.info[name]
        arr = np.frombuffer(self.map, dtype=_ST_DTYPES[dtype], count=(b - a) // np.dtype(_ST_DTYPES[dtype]).itemsize,
                            offset=self.base + a)
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return np.array(arr, dtype=np.float32).reshape(shape)


# ---------------------------------------------------------------------------------------------
# models

class CodecModel:
    """A codec model file, loaded for decoding: the quantizer (numpy) and, on first use, the flow
    decoder (torch). `fingerprint` is the 64-bit fingerprint records name (computed once)."""

    def __init__(self, path):
        path = os.fspath(path)
        self.path = path
        st = _SafeTensors(path)
        self._st = st
        meta = st.metadata
        if "reptok.config" not in meta:
            raise ModelError(f"{path} is not a reptok model (no reptok.config metadata)")
        try:
            config = json.loads(meta["reptok.config"])
            self.encoder_config = dict(config["encoder"])
            self.decoder_config = dict(config["decoder"])
            self.codec = dict(config.get("codec") or {})
        except (ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{path}: bad reptok.config ({e})") from None
        self.config = config
        dec, c = self.decoder_config, self.codec
        try:
            D, S = int(dec["token_dim"]), int(dec["image_size"])
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{path}: the decoder config lacks token_dim or image_size") from None
        self.dim, self.image_size = D, S
        self.entropy = c.get("entropy", "zstd")
        if self.entropy not in ("zstd", "laplace"):
            raise ModelError(f"{path}: unknown codec.entropy {self.entropy!r}")

        def bad(msg):
            return ModelError(f"{path}: invalid model config: {msg}")

        self.mean = st.floats(K.MEAN).reshape(-1)
        self.rotation = st.floats(K.ROTATION).reshape(-1)
        self.sigma = st.floats(K.SIGMA).reshape(-1)
        if self.mean.size != D or self.rotation.size != D * D or self.sigma.size != D:
            raise bad(f"quantizer tensors do not match token size {D}")
        self.rotation = self.rotation.reshape(D, D)
        self.synthesis = st.floats(K.SYNTHESIS).reshape(-1) if K.SYNTHESIS in st else None
        if self.synthesis is not None:
            if self.synthesis.size != D * D:
                raise bad(f"quantizer.synthesis does not match token size {D}")
            self.synthesis = self.synthesis.reshape(D, D)
        self.scale = st.floats(K.SCALE).reshape(-1) if K.SCALE in st else np.zeros(0, np.float32)
        dictionary = st.raw(K.DICTIONARY) if K.DICTIONARY in st else b""
        self.dictionary = dictionary if len(dictionary) > 1 else b""

        def floats(key, n=9, lo=None, positive=False):
            v = c.get(key)
            if v is None:
                return None
            if not isinstance(v, list) or (n is not None and len(v) != n) \
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise bad(f"{key} must hold {n} numbers")
            a = np.array(v, dtype=np.float64).astype(np.float32)
            if not np.all(np.isfinite(a)) or (positive and not np.all(a > 0)) or (lo is not None and not np.all(a >= lo)):
                raise bad(f"{key}: values out of range")
            return a

        self.base_step = np.float32(c.get("base_step", 1))
        self.level_steps = floats("level_steps", positive=True)
        lk = c.get("level_coefficients")
        if lk is not None and (not isinstance(lk, list) or len(lk) != 9
                               or not all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= D for k in lk)):
            raise bad(f"level_coefficients must be 9 counts in 0-{D}")
        self.level_coefficients = lk
        self.level_scale = floats("level_scale", positive=True)
        self.step_modes = floats("step_modes", n=None, positive=True)
        if self.step_modes is not None and not 2 <= len(self.step_modes) <= MAX_STEP_MODES:
            raise bad(f"step_modes must be 2-{MAX_STEP_MODES} factors > 0, with entropy laplace")
        if self.entropy == "laplace":
            if self.scale.size != D or not np.all(np.isfinite(self.scale)) or not np.all(self.scale > 0):
                raise bad(f"quantizer.scale must hold {D} positive scales")
        elif self.level_scale is not None or self.step_modes is not None:
            raise bad("level_scale and step_modes need entropy laplace")
        self.default_sampler = c.get("default_sampler", "euler")
        self._tables = {}
        self._lock = threading.Lock()
        self._fingerprint = None
        self._decoders = {}

    def __repr__(self):
        return f"CodecModel({self.path!r})"

    # -- identity
    @property
    def fingerprint(self) -> int:
        """`CodecModel.fingerprint` (computed on first use: it hashes every decode tensor)."""
        if self._fingerprint is None:
            from .modelfile import fingerprint
            self._fingerprint = int(fingerprint(self.path), 16)
        return self._fingerprint

    @property
    def fingerprint_hex(self) -> str:
        return "%016x" % self.fingerprint

    # -- the quantizer
    def coded(self, level: int) -> int:
        """How many leading coordinates a level codes."""
        return self.level_coefficients[level - 1] if self.level_coefficients is not None else self.dim

    def step(self, level: int, mode: int = 0) -> np.float32:
        """The level's step (times the step mode's factor), float32 as in Quantizer.step."""
        if self.level_steps is not None:
            s = self.level_steps[level - 1]
        else:
            s = np.float32(self.base_step * np.float32(2.0 ** ((5 - level) / 2)))
        if self.step_modes is not None:
            s = np.float32(s * self.step_modes[mode])
        return np.float32(s)

    def tables(self, level: int, mode: int = 0) -> list:
        """The Laplace tables of a level and step mode (built once)."""
        key = (level, mode)
        with self._lock:
            t = self._tables.get(key)
        if t is None:
            f = self.level_scale[level - 1] if self.level_scale is not None else np.float32(1)
            t = entropy.laplace_tables(self.scale[:self.coded(level)], self.step(level, mode), f)
            with self._lock:
                self._tables[key] = t
        return t

    def symbols(self, payload: bytes, level: int) -> tuple[int, np.ndarray]:
        """(step mode, the `dim` integer symbols) of a payload at a level, with every check of
        Quantizer.decode (PayloadError for a payload no encoder writes)."""
        if level not in LEVELS:
            raise PayloadError(f"level {level} is outside 1-9")
        payload = bytes(payload)
        if self.entropy == "laplace":
            m = len(self.step_modes) if self.step_modes is not None else None
            mode = entropy.decode_header(payload, m) if m else 0
            tables = self.tables(level, mode)
            q = entropy.decode_laplace(payload, tables, header=m)
            if entropy.encode_laplace(q, tables, header=(mode, m) if m else None) != payload:
                raise PayloadError(f"the payload is not the coding of {self.dim} token values (extra or altered bytes)")
            q = q + [0] * (self.dim - len(q))
        else:
            mode = 0
            q = entropy.decode_zstd(payload, level=level, coded=self.coded(level), dim=self.dim,
                                    dictionary=self.dictionary or None)
        return mode, np.array(q, dtype=np.int64)

    def unrotate(self, y: np.ndarray) -> np.ndarray:
        """z = mean + sum_i y_i s_i for coordinates y [..., D] (float32): float64 sums in the order
        of i, rounded to float32, plus the mean (Quantizer.unrotate, bit for bit)."""
        y = np.asarray(y, dtype=np.float32)
        rows = self.synthesis if self.synthesis is not None else self.rotation
        flat = y.reshape(-1, self.dim).astype(np.float64)
        z = np.zeros(flat.shape, dtype=np.float64)
        for i in np.flatnonzero(np.any(flat != 0, axis=0)):
            z += flat[:, i:i + 1] * rows[i].astype(np.float64)[None, :]
        return (z.astype(np.float32) + self.mean).reshape(y.shape)

    def token(self, record: rtk.Record) -> np.ndarray:
        """The dequantized token [D] (float32) of one record of this model."""
        return self.tokens([record])[0]

    def tokens(self, records: Iterable[rtk.Record]) -> np.ndarray:
        """The tokens [N, D] of records of this model (the fingerprint is checked)."""
        ys = []
        for r in records:
            self.check(r)
            mode, q = self.symbols(r.payload, r.level)
            ys.append(q.astype(np.float32) * self.step(r.level, mode))
        if not ys:
            return np.zeros((0, self.dim), np.float32)
        return self.unrotate(np.stack(ys))

    def check(self, record: rtk.Record):
        if record.fingerprint != self.fingerprint:
            raise ModelError(f"record {record.index} (byte {record.offset}): model {record.fingerprint_hex} "
                             f"is not {self.path} ({self.fingerprint_hex})")

    # -- the decoder
    def torch_decoder(self, device=None, dtype=None):
        """The flow decoder as a `reptok.model.FlowDecoder` in eval mode (loaded once per device and dtype)."""
        import torch
        from .model import FlowDecoder, decoder_config
        dtype = dtype or torch.float32
        key = (str(torch.device(device or "cpu")), dtype)
        with self._lock:
            dec = self._decoders.get(key)
        if dec is None:
            cfg = decoder_config(self.decoder_config)
            with torch.random.fork_rng(devices=[]):
                dec = FlowDecoder(cfg)
            want = dec.state_dict().keys()
            missing = [k for k in want if "decoder." + k not in self._st]
            if missing:
                raise ModelError(f"{self.path}: model file lacks tensor decoder.{missing[0]}")
            dec.load_state_dict({k: torch.from_numpy(self._st.floats("decoder." + k)) for k in want})
            dec = dec.to(device=device or "cpu", dtype=dtype).eval()
            with self._lock:
                self._decoders[key] = dec
        return dec


_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def load_model(path) -> CodecModel:
    """The model at `path`, loaded once per process (and again when the file changes)."""
    if isinstance(path, CodecModel):
        return path
    real = os.path.realpath(os.fspath(path))
    try:
        st = os.stat(real)
    except OSError as e:
        raise ModelError(f"cannot read model {path}: {e.strerror}") from None
    key = (real, st.st_size, st.st_mtime_ns)
    with _MODELS_LOCK:
        m = _MODELS.get(key)
    if m is None:
        m = CodecModel(real)
        with _MODELS_LOCK:
            _MODELS[key] = m
    return m


def default_model_path() -> str | None:
    """The default model: $REPTOK_DEFAULT_MODEL, else the checkout's
    Sources/RepTokCodec/Models/default.safetensors when the package runs from a checkout."""
    p = os.environ.get("REPTOK_DEFAULT_MODEL")
    if p:
        return p
    here = os.path.dirname(os.path.abspath(__file__))
    p = os.path.join(here, os.pardir, os.pardir, "Sources", "RepTokCodec", "Models", "default.safetensors")
    return os.path.normpath(p) if os.path.exists(p) else None


def model_search_path() -> list[str]:
    """Folders searched for models by fingerprint (CodecModel.searchPath): $REPTOK_MODEL_PATH, then
    $XDG_DATA_HOME/reptok/models or ~/.local/share/reptok/models."""
    dirs = [d for d in os.environ.get("REPTOK_MODEL_PATH", "").split(":") if d]
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        dirs.append(os.path.join(xdg, "reptok", "models"))
    elif os.environ.get("HOME"):
        dirs.append(os.path.join(os.environ["HOME"], ".local", "share", "reptok", "models"))
    return dirs


def _candidates(models):
    if models is not None:
        for m in ([models] if isinstance(models, (str, os.PathLike, CodecModel)) else models):
            yield m
    d = default_model_path()
    if d:
        yield d
    for folder in model_search_path():
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for n in names:
            if n.endswith(".safetensors"):
                yield os.path.join(folder, n)


def find_model(fingerprint: int, models=None) -> CodecModel:
    """The model whose fingerprint is `fingerprint` (CodecModel.find): among `models` (paths or
    CodecModels), the default model, then the search path. ModelError when none has it."""
    explicit = [] if models is None else ([models] if isinstance(models, (str, os.PathLike, CodecModel)) else list(models))
    for c in _candidates(explicit if explicit else None):
        try:
            m = load_model(c)
            if m.fingerprint == fingerprint:
                return m
        except (ModelError, OSError, ValueError):
            if c in explicit:
                raise
    raise ModelError("model %016x not found (the models given, the default model, $REPTOK_MODEL_PATH, "
                     "~/.local/share/reptok/models)" % fingerprint)


# ---------------------------------------------------------------------------------------------
# records in, tokens out

def _records(source, recover: bool = False) -> list[rtk.Record]:
    if isinstance(source, rtk.Record):
        return [source]
    if isinstance(source, (list, tuple)) and all(isinstance(r, rtk.Record) for r in source):
        return list(source)
    return list(rtk.read(source, recover=recover))


def _by_model(records, model):
    """(model, [indices]) groups in first-appearance order."""
    groups: dict = {}
    models: dict = {}
    for i, r in enumerate(records):
        if r.fingerprint not in models:
            models[r.fingerprint] = find_model(r.fingerprint, model)
        groups.setdefault(r.fingerprint, []).append(i)
    return [(models[f], idx) for f, idx in groups.items()]


def tokens(source, model=None, *, recover: bool = False) -> np.ndarray:
    """The dequantized model tokens of records: [N, D] float32 (one record: [D]).

    `source`: anything `reptok.read` takes, a Record or a list of Records; `model`: a model path,
    a CodecModel or a list of them (else the default model and the search path, by fingerprint).
    Numpy only."""
    single = isinstance(source, rtk.Record)
    records = _records(source, recover)
    out = None
    for m, idx in _by_model(records, model):
        z = m.tokens([records[i] for i in idx])
        if out is None:
            out = np.zeros((len(records), m.dim), np.float32)
        if out.shape[1] != m.dim:
            raise ValueError("the records' models have different token sizes: read them per model")
        out[idx] = z
    if out is None:
        out = np.zeros((0, 0), np.float32)
    return out[0] if single else out


# ---------------------------------------------------------------------------------------------
# records in, pictures out

def noise(seed: int, count: int, stream: int = 0) -> np.ndarray:
    """`Philox4x32(seed:).gaussians(stream:count:)`: `count` standard normals (float32), Box-Muller in
    double with the C library's log, cos and sin (what Swift calls), bit for bit on the same libm."""
    from .rng import philox_np
    blocks = (count + 3) // 4
    k = np.arange(blocks, dtype=np.uint64)
    u = philox_np(seed, k & np.uint64(_MASK32), stream, k >> np.uint64(32), 0)
    a = [(((x >> np.uint64(8)).astype(np.float64) + 0.5) / 16_777_216.0).tolist() for x in u]
    log, cos, sin, sqrt, tau = math.log, math.cos, math.sin, math.sqrt, 2 * math.pi
    out = np.empty((blocks, 4), np.float64)
    for i, (u0, u1, u2, u3) in enumerate(zip(*a)):
        r0, a0 = sqrt(-2 * log(u0)), tau * u1
        r1, a1 = sqrt(-2 * log(u2)), tau * u3
        out[i] = (r0 * cos(a0), r0 * sin(a0), r1 * cos(a1), r1 * sin(a1))
    return out.reshape(-1)[:count].astype(np.float32)


def sample_times(steps: int) -> list[np.float32]:
    """FlowSampler.times: t_i = 1 - i/N in float32, i = 0...N."""
    n = np.float32(steps)
    return [np.float32(np.float32(1) - np.float32(i) / n) for i in range(steps + 1)]


def to_pixels(x) -> np.ndarray:
    """Decoder space [B, 3, S, S] -> uint8 [B, S, S, 3]: round((x + 1) * 127.5) in float32, ties up,
    clamped to 0..255, NaN to 0 (RGBImage(planar:))."""
    v = (np.asarray(x, dtype=np.float32) + np.float32(1)) * np.float32(127.5)
    out = np.floor(v.astype(np.float64) + 0.5)
    out = np.where(v > 0, out, 0)
    out = np.where(v >= 255, 255, out)
    return np.ascontiguousarray(out.astype(np.uint8).transpose(0, 2, 3, 1))


def _fourier(t, freq_dim: int):
    """Ops.fourierFeatures: in double, rounded to float32 (the torch reference computes in the
    network's dtype, which moves cos(1000 t f) by up to 1e-4 in float32)."""
    half = freq_dim // 2
    f = np.array([math.exp(-math.log(10000.0) * k / half) for k in range(half)])
    rows = []
    for tv in t:
        a = 1000.0 * float(tv) * f
        rows.append(np.concatenate([[math.cos(v) for v in a], [math.sin(v) for v in a]]))
    return np.asarray(rows, dtype=np.float64).astype(np.float32)


def _forward(dec, x, t: np.float32, z, tf):
    """FlowDecoder.forward with the Swift time features `tf` [F] (float32, one t for the batch)."""
    import torch
    from . import model as M
    cfg = dec.config
    p = cfg["patch_size"]
    B = x.shape[0]
    c = dec.t_embed(torch.from_numpy(tf).to(device=x.device, dtype=x.dtype)[None].expand(B, -1))
    lat = dec.latent_embed(z)[:, None]
    up = None
    if dec.latent_skip is not None:
        k = cfg["skip_size"]
        low = dec.latent_skip(z).view(B, 3, k, k)
        up = dec.skip_up @ low @ dec.skip_up.T
    pe = dec.patch_embed(M.patchify(x, p))
    if dec.skip_embed is not None:
        pe = pe + dec.skip_embed(M.patchify(up, p))
    h = torch.cat([lat, pe + dec.pos], dim=1)
    for blk in dec.blocks:
        h = blk(h, c)
    o = dec.final(h[:, 1:], c)
    img = M.unpatchify(o, p, dec.grid, dec.grid)
    return img + up if up is not None else img


def _sample(dec, z, x, sampler: str, steps: int):
    """FlowSampler.sample with the decoder's velocity (Codec.decodeRaw)."""
    cfg = dec.config
    ts = sample_times(steps)
    feats = {}

    def velocity(xt, t):
        if t not in feats:
            feats[t] = _fourier([t], cfg["freq_dim"])[0]
        out = _forward(dec, xt, t, z, feats[t])
        if cfg["prediction"] == "v":
            return out
        k = np.float32(1) / max(np.float32(t), np.float32(cfg["t_eps"]))
        return (xt - out) * float(k)

    for i in range(steps):
        t0, t1 = ts[i], ts[i + 1]
        h = np.float32(t1 - t0)
        v0 = velocity(x, t0)
        if sampler == "euler" or i == steps - 1:
            x = x + float(h) * v0
        else:
            xe = x + float(h) * v0
            v1 = velocity(xe, t1)
            x = x + float(h / np.float32(2)) * v0
            x = x + float(h / np.float32(2)) * v1
    return x


def decode(source, model=None, *, steps: int | None = None, seed: int | None = None, device=None, dtype=None,
           batch_size: int = 64, recover: bool = False, raw: bool = False):
    """The pictures of records at the model resolution, as `rtdec --native` writes them:
    uint8 [N, S, S, 3] (one record: [S, S, 3]).

    `steps` / `seed` override the records' (rtdec --steps / --seed); the sampler is the record's.
    The decoder runs in PyTorch on `device` (default CPU) in `dtype` (default float32),
    `batch_size` records at a time. With `raw`, returns the decoder-space float32 values
    [N, 3, S, S] instead of 8-bit pictures."""
    import torch
    single = isinstance(source, rtk.Record)
    records = _records(source, recover)
    if steps is not None and not 1 <= steps <= rtk.MAX_STEPS:
        raise ValueError(f"steps {steps} outside 1-{rtk.MAX_STEPS}")
    if seed is not None and not 0 <= seed < 1 << 64:
        raise ValueError("seed must be an unsigned 64-bit value")
    out = None
    for m, idx in _by_model(records, model):
        S = m.image_size
        if out is None:
            out = np.zeros((len(records), 3, S, S), np.float32) if raw else np.zeros((len(records), S, S, 3), np.uint8)
        if out.shape[-1 if raw else 1] != S:
            raise ValueError("the records' models have different image sizes: decode them per model")
        dec = m.torch_decoder(device, dtype)
        dev, dt = dec.patch_embed.weight.device, dec.patch_embed.weight.dtype
        seeds: dict = {}                 # records mostly share a seed (rtenc writes 0)

        def start(i):
            s = seed if seed is not None else records[i].seed
            if s not in seeds:
                seeds[s] = noise(s, 3 * S * S).reshape(3, S, S)
            return seeds[s]
        z_all = m.tokens([records[i] for i in idx])
        # batches of records with the same sampler and step count
        groups: dict = {}
        for j, i in enumerate(idx):
            r = records[i]
            groups.setdefault((r.sampler, steps or r.steps), []).append((i, j))
        for (sampler, n), members in groups.items():
            for b0 in range(0, len(members), batch_size):
                part = members[b0:b0 + batch_size]
                z = torch.from_numpy(z_all[[j for _, j in part]]).to(device=dev, dtype=dt)
                x = np.stack([start(i) for i, _ in part])
                with torch.no_grad():
                    x = _sample(dec, z, torch.from_numpy(x).to(device=dev, dtype=dt), sampler, n)
                x = x.float().cpu().numpy()
                rows = [i for i, _ in part]
                out[rows] = x if raw else to_pixels(x)
    if out is None:
        out = np.zeros((0, 3, 0, 0) if raw else (0, 0, 0, 3), np.float32 if raw else np.uint8)
    return out[0] if single else out
