"""zstd as the Swift tools use it (Sources/RepTokFormat/Zstd.swift, `RTKZstd`): dictionary
training with the fixed-parameter fastCover trainer and level-19 frames without magic, through
the system libzstd (ctypes; byte-identical to the Swift tools on the same machine) or the
`zstandard` package. No torch.
"""

from __future__ import annotations

import ctypes

__all__ = ["Zstd", "FastCoverParams", "zstd", "set_default"]


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


def set_default(which: str = "auto") -> Zstd | None:
    """Choose the library `zstd()` returns: `auto` (chosen on first use), `system` or `python`."""
    global ZSTD
    ZSTD = None if which == "auto" else Zstd(which)
    return ZSTD
