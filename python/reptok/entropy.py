"""The payload decoders of .rtk records: what `Quantizer.decode` (Sources/RepTokCodec) reads.

Two codings, by the model's `codec.entropy` (rtk(5) PAYLOAD, docs/ARCHITECTURE.md "Quantizer"):

- "laplace": the level's coded coordinates, each a symbol under a static two-sided geometric
  table built from `quantizer.scale[i]` (times the level's `level_scale`) and the level's step,
  arithmetic-coded (32-bit binary-output coder, shortest termination, trailing zero bytes
  dropped); with `codec.step_modes` (M factors) the payload first codes the picture's step mode,
  uniform over M. Port of Sources/RepTokCodec/LaplaceCoder.swift: the tables come from IEEE
  double operations only (`laplace_exp` is the same fixed polynomial), so they are the Swift
  tables bit for bit; a payload must be exactly the coding of its symbols (`decode_laplace`
  re-encodes and compares).
- "zstd" (the first models, e.g. the bootstrap a4108d7756452133): one zstd frame without its
  magic, content = zigzag LEB128 varints of the level's coded values, trailing zeros dropped,
  each value within +-1,000,000; no content checksum or dictionary ID flag; content size present
  and at most 3 bytes per coded value, checked before anything is decompressed; the content must
  be exactly the packing of at most the level's values (`decode_zstd`). Decompression through the
  system libzstd (ctypes), else the `zstandard` package.

numpy only (no torch). Errors are `PayloadError` with the message rtdec prints after
"corrupt token payload: ".
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

__all__ = ["PayloadError", "LaplaceTable", "laplace_exp", "laplace_tables", "decode_laplace", "encode_laplace",
           "decode_header", "decode_zstd", "pack", "unpack", "TOTAL", "MAX_K", "MAX_PACKED_BYTES"]

TOTAL_BITS = 16
TOTAL = 1 << TOTAL_BITS
MAX_K = 256
MAX_ESCAPE_BITS = 21
MAX_VALUE = 1_000_000
#: the longest zstd-packed symbol (a value within +-1,000,000 zigzags below 2^21: 3 varint bytes)
MAX_PACKED_BYTES = 3
#: the zstd frame magic the payload leaves out
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class PayloadError(ValueError):
    """A payload that no encoder could have written for the record's level (rtk(5) PAYLOAD)."""

    def __str__(self):
        return "corrupt token payload: " + super().__str__()


# ---------------------------------------------------------------------------------------------
# the Laplace tables

_INV_FACT = [1.0 / float(math.factorial(k)) for k in range(13)]   # k! is exact in double for k <= 12


def _round_away(v: np.ndarray) -> np.ndarray:
    """Swift's `.rounded()` (to nearest, ties away from zero), exactly."""
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= 0.5, np.sign(v), 0.0)


def laplace_exp(x) -> np.ndarray:
    """`LaplaceCoder.exp`: e^x for x <= 0 with IEEE-exact operations only (x = n ln2 + r, a degree-13
    Taylor polynomial of e^r, times 2^n; 0 below -700). Elementwise on float64 arrays."""
    x = np.asarray(x, dtype=np.float64)
    if np.any(x > 0):
        raise ValueError("laplace_exp is for x <= 0")
    low = x < -700
    x = np.where(low, 0.0, x)                       # (0 below -700; kept out of the polynomial)
    n = _round_away(x * 1.4426950408889634)
    r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10
    p = np.full_like(x, 1.0 / 6227020800.0)
    for k in range(12, 0, -1):
        p = p * r + _INV_FACT[k]
    p = p * r + 1
    return np.where(low, 0.0, np.ldexp(p, n.astype(np.int64)))


class LaplaceTable:
    """`LaplaceCoder.Table`: cumulative frequencies of the symbols -K..K and the escape (2K + 2
    symbols, `cum` with 2K + 3 entries from 0 to TOTAL), for Laplace scale `b` and step `step`
    (float32 values, as the Swift table takes them)."""

    __slots__ = ("k", "cum")

    def __init__(self, b, step):
        b32, s32 = np.float32(b), np.float32(step)
        ratio = float(s32) / float(max(b32, np.float32(1e-30)))
        need = math.ceil(20 * 0.6931471805599453 / ratio - 0.5) if ratio > 0 else math.inf
        k = int(min(max(need, 1), MAX_K))
        t = float(TOTAL)
        half = 0.5 * ratio
        q = np.arange(1, k + 1, dtype=np.float64)
        e = laplace_exp(np.concatenate([[-half], -(q + 0.5) * ratio]))
        freq = np.zeros(2 * k + 2, dtype=np.int64)
        freq[k] = max(1, math.floor(t * (1 - float(e[0]))))
        f = np.maximum(1, np.floor(t * 0.5 * (e[:-1] - e[1:]))).astype(np.int64)
        freq[k + 1:2 * k + 1] = f
        freq[k - 1::-1][:k] = f
        freq[2 * k + 1] = max(1, math.floor(t * float(e[-1])))
        freq = [int(v) for v in freq]
        total = sum(freq)
        while total != TOTAL:
            big = max(range(len(freq)), key=lambda i: (freq[i], -i))   # the first largest
            applied = max(TOTAL - total, 1 - freq[big])
            freq[big] += applied
            total += applied
        cum = [0] * (2 * k + 3)
        for i in range(2 * k + 2):
            cum[i + 1] = cum[i] + freq[i]
        self.k, self.cum = k, cum

    @property
    def escape(self) -> int:
        return 2 * self.k + 1


def laplace_tables(scales, step, factor=1.0) -> list[LaplaceTable]:
    """The tables of one level (and step mode): coordinate i has scale `scales[i] * factor` (float32
    products, `Quantizer.laplaceTables`) and the step."""
    sc = np.asarray(scales, dtype=np.float32) * np.float32(factor)
    return [LaplaceTable(b, step) for b in sc]


# ---------------------------------------------------------------------------------------------
# the arithmetic coder (ArithmeticEncoder / ArithmeticDecoder)

_HALF, _QUARTER, _TOP = 1 << 31, 1 << 30, 0xFFFFFFFF


class _Encoder:
    def __init__(self):
        self.low, self.high, self.pending = 0, _TOP, 0
        self.bytes, self.acc, self.nacc = bytearray(), 0, 0

    def _put(self, b):
        self.acc = ((self.acc << 1) | b) & 0xFF
        self.nacc += 1
        if self.nacc == 8:
            self.bytes.append(self.acc)
            self.acc, self.nacc = 0, 0

    def _emit(self, b):
        self._put(b)
        while self.pending > 0:
            self._put(1 - b)
            self.pending -= 1

    def encode(self, lo, hi, total):
        rng = self.high - self.low + 1
        self.high = self.low + rng * hi // total - 1
        self.low = self.low + rng * lo // total
        while True:
            if self.high < _HALF:
                self._emit(0)
            elif self.low >= _HALF:
                self._emit(1)
                self.low -= _HALF
                self.high -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.pending += 1
                self.low -= _QUARTER
                self.high -= _QUARTER
            else:
                break
            self.low <<= 1
            self.high = (self.high << 1) | 1

    def bit(self, b):
        self.encode(b, b + 1, 2)

    def finish(self) -> bytes:
        for n in range(1 if self.pending > 0 else 0, 33):
            unit = 1 << (32 - n)
            v = (self.low + unit - 1) // unit * unit
            if v <= self.high:
                for i in range(n):
                    b = (v >> (31 - i)) & 1
                    if i == 0:
                        self._emit(b)
                    else:
                        self._put(b)
                break
        if self.nacc > 0:
            self.bytes.append((self.acc << (8 - self.nacc)) & 0xFF)
            self.acc, self.nacc = 0, 0
        out = bytes(self.bytes)
        return out.rstrip(b"\x00")


class _Decoder:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0
        self.low, self.high, self.value = 0, _TOP, 0
        for _ in range(32):
            self.value = (self.value << 1) | self._next()

    def _next(self) -> int:
        i = self.pos >> 3
        b = (self.data[i] >> (7 - (self.pos & 7))) & 1 if i < len(self.data) else 0
        self.pos += 1
        return b

    def decode(self, cum, total) -> int:
        rng = self.high - self.low + 1
        target = ((self.value - self.low + 1) * total - 1) // rng
        lo, hi = 0, len(cum) - 2
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cum[mid] <= target:
                lo = mid
            else:
                hi = mid - 1
        s = lo
        self.high = self.low + rng * cum[s + 1] // total - 1
        self.low = self.low + rng * cum[s] // total
        while True:
            if self.high < _HALF:
                pass
            elif self.low >= _HALF:
                self.value -= _HALF
                self.low -= _HALF
                self.high -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.value -= _QUARTER
                self.low -= _QUARTER
                self.high -= _QUARTER
            else:
                break
            self.low <<= 1
            self.high = (self.high << 1) | 1
            self.value = (self.value << 1) | self._next()
        return s

    def bit(self) -> int:
        return self.decode((0, 1, 2), 2)


def _check_header_count(count: int):
    if not 2 <= count <= 256:
        raise PayloadError(f"header of {count} values")


def encode_laplace(q, tables: list[LaplaceTable], header: tuple[int, int] | None = None) -> bytes:
    """`LaplaceCoder.encode`: one symbol per table, after `header` = (value, count) when given."""
    q = [int(v) for v in q]
    if len(q) != len(tables):
        raise ValueError(f"{len(q)} symbols for {len(tables)} tables")
    e = _Encoder()
    if header is not None:
        value, count = header
        _check_header_count(count)
        if not 0 <= value < count:
            raise ValueError(f"header value {value} outside 0..<{count}")
        e.encode(value, value + 1, count)
    for v, tb in zip(q, tables):
        a = abs(v)
        if a <= tb.k:
            s = tb.k + v
            e.encode(tb.cum[s], tb.cum[s + 1], TOTAL)
        else:
            e.encode(tb.cum[tb.escape], tb.cum[tb.escape + 1], TOTAL)
            m = a - tb.k                      # Exp-Golomb of m - 1
            nbits = m.bit_length()
            for _ in range(1, nbits):
                e.bit(0)
            for i in range(nbits - 1, -1, -1):
                e.bit((m >> i) & 1)
            e.bit(1 if v < 0 else 0)
    return e.finish()


def decode_header(payload: bytes, count: int) -> int:
    """`LaplaceCoder.decodeHeader`: the step mode a payload coded with `count` modes begins with."""
    _check_header_count(count)
    return _Decoder(payload).decode(range(count + 1), count)


def decode_laplace(payload: bytes, tables: list[LaplaceTable], header: int | None = None) -> list[int]:
    """`LaplaceCoder.decode`: `len(tables)` symbols (after a header of `header` values, skipped),
    without the canonical check (`codec` re-encodes)."""
    d = _Decoder(bytes(payload))
    if header is not None:
        _check_header_count(header)
        d.decode(range(header + 1), header)
    out = []
    for tb in tables:
        s = d.decode(tb.cum, TOTAL)
        if s != tb.escape:
            out.append(s - tb.k)
            continue
        zeros = 0
        while d.bit() == 0:
            zeros += 1
            if zeros >= MAX_ESCAPE_BITS:
                raise PayloadError("escaped token value too long")
        m = 1
        for _ in range(zeros):
            m = (m << 1) | d.bit()
        a = m - 1 + tb.k + 1
        if a > MAX_VALUE:
            raise PayloadError("token value out of range")
        out.append(-a if d.bit() == 1 else a)
    return out


# ---------------------------------------------------------------------------------------------
# zstd payloads (the first models)

def pack(q) -> bytes:
    """`Quantizer.pack`: zigzag LEB128 varints, trailing zero values dropped."""
    q = [int(v) for v in q]
    n = len(q)
    while n > 0 and q[n - 1] == 0:
        n -= 1
    out = bytearray()
    for v in q[:n]:
        u = ((v << 1) ^ (v >> 31)) & 0xFFFFFFFF
        while u >= 0x80:
            out.append((u & 0x7F) | 0x80)
            u >>= 7
        out.append(u)
    return bytes(out)


def unpack(raw: bytes, dim: int) -> list[int]:
    """`Quantizer.unpack`: the varints of at most `dim` values, zero-padded to `dim`."""
    q, i = [], 0
    while i < len(raw):
        if len(q) >= dim:
            raise PayloadError(f"more than {dim} token values")
        u, shift = 0, 0
        while True:
            if i >= len(raw):
                raise PayloadError("truncated token value")
            byte = raw[i]
            i += 1
            if shift >= 32:
                raise PayloadError("token value too long")
            u |= ((byte & 0x7F) << shift) & 0xFFFFFFFF
            if not byte & 0x80:
                break
            shift += 7
        v = (u >> 1) ^ -(u & 1)
        if abs(v) > MAX_VALUE:
            raise PayloadError("token value out of range")
        q.append(v)
    return q + [0] * (dim - len(q))


class _LibZstd:
    """The system libzstd (the one the Swift tools link), for frame headers and decompression."""

    def __init__(self):
        import ctypes.util
        self.lib = None
        for name in ("libzstd.so.1", "libzstd.so", "libzstd.1.dylib", "libzstd.dylib", ctypes.util.find_library("zstd")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                lib.ZSTD_getFrameContentSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
                lib.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
                lib.ZSTD_findFrameCompressedSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
                lib.ZSTD_findFrameCompressedSize.restype = ctypes.c_size_t
                lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
                lib.ZSTD_isError.restype = ctypes.c_uint
                lib.ZSTD_getErrorName.argtypes = [ctypes.c_size_t]
                lib.ZSTD_getErrorName.restype = ctypes.c_char_p
                lib.ZSTD_createDCtx.restype = ctypes.c_void_p
                lib.ZSTD_freeDCtx.argtypes = [ctypes.c_void_p]
                lib.ZSTD_decompress_usingDict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                          ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                                          ctypes.c_size_t]
                lib.ZSTD_decompress_usingDict.restype = ctypes.c_size_t
                self.lib = lib
                break
            except (OSError, AttributeError):
                continue


_LIB: _LibZstd | None = None


def _zstd_frame(frame: bytes, dictionary: bytes | None, max_bytes: int) -> bytes:
    """`RTKZstd.decompress` of one whole frame (magic included): refuses an absent or over-cap
    content size before allocating, bytes after the frame, and a size mismatch."""
    global _LIB
    if _LIB is None:
        _LIB = _LibZstd()
    if len(frame) < 4 or frame[:4] != ZSTD_MAGIC:
        raise PayloadError("payload is not a zstd frame: " + ("too short" if len(frame) < 4 else "bad zstd magic"))
    lib = _LIB.lib
    if lib is not None:
        size = lib.ZSTD_getFrameContentSize(frame, len(frame))
        if size == (1 << 64) - 2:
            raise PayloadError("payload is not a zstd frame: unreadable frame header")
        if size == (1 << 64) - 1:
            raise PayloadError("zstd frame does not state its decompressed size")
        if size > max(max_bytes, 0):
            raise PayloadError(f"zstd frame claims {size} decompressed bytes, over the cap of {max_bytes}")
        n = lib.ZSTD_findFrameCompressedSize(frame, len(frame))
        if lib.ZSTD_isError(n):
            raise PayloadError("payload is not a zstd frame: " + lib.ZSTD_getErrorName(n).decode())
        if n != len(frame):
            raise PayloadError(f"{len(frame) - n} bytes follow the {n}-byte zstd frame")
        dctx = lib.ZSTD_createDCtx()
        if not dctx:
            raise MemoryError("zstd decompression: out of memory")
        try:
            buf = ctypes.create_string_buffer(size + 1)
            d = dictionary or b""
            got = lib.ZSTD_decompress_usingDict(dctx, buf, size, frame, len(frame), d if d else None, len(d))
            if lib.ZSTD_isError(got):
                raise PayloadError("zstd decompression failed: " + lib.ZSTD_getErrorName(got).decode())
        finally:
            lib.ZSTD_freeDCtx(dctx)
        if got != size:
            raise PayloadError(f"zstd frame decompressed to {got} bytes, header said {size}")
        return buf.raw[:size]
    try:
        import zstandard
    except ImportError:
        raise RuntimeError("zstd payloads need libzstd (system) or the zstandard package") from None
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError:
        raise PayloadError("payload is not a zstd frame: unreadable frame header") from None
    size = params.content_size
    if size == zstandard.CONTENTSIZE_UNKNOWN:
        raise PayloadError("zstd frame does not state its decompressed size")
    if size > max(max_bytes, 0):
        raise PayloadError(f"zstd frame claims {size} decompressed bytes, over the cap of {max_bytes}")
    kw = {"dict_data": zstandard.ZstdCompressionDict(dictionary)} if dictionary else {}
    obj = zstandard.ZstdDecompressor(**kw).decompressobj()
    try:
        out = obj.decompress(frame)
    except zstandard.ZstdError as e:
        raise PayloadError(f"zstd decompression failed: {e}") from None
    if obj.unused_data:
        n = len(frame) - len(obj.unused_data)
        raise PayloadError(f"{len(frame) - n} bytes follow the {n}-byte zstd frame")
    if not obj.eof:
        raise PayloadError("payload is not a zstd frame: truncated")
    if len(out) != size:
        raise PayloadError(f"zstd frame decompressed to {len(out)} bytes, header said {size}")
    return out


def decode_zstd(payload: bytes, *, level: int, coded: int, dim: int, dictionary: bytes | None = None) -> list[int]:
    """The `dim` symbols of a zstd payload of a level that codes the first `coded` coordinates, with
    the checks of `Quantizer.decode`."""
    payload = bytes(payload)
    if payload and payload[0] & 0x07:
        raise PayloadError("the zstd frame has a content checksum or a dictionary ID")
    raw = _zstd_frame(ZSTD_MAGIC + payload, dictionary if dictionary else None, MAX_PACKED_BYTES * coded)
    q = unpack(raw, dim)
    if any(q[coded:]) or pack(q) != raw:
        raise PayloadError(f"the token is not the packing of the {coded} values level {level} codes "
                           "(extra values, trailing zeros or overlong varints)")
    return q
