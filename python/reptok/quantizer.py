"""The first quantizer kind (`entropy` absent / "zstd"), as Sources/RepTokCodec/Quantizer.swift
fits and applies it: PCA rotation, one step per level `base_step * 2^((5 - L) / 2)`, symbols as
zigzag LEB128 varints with trailing zeros dropped, zstd with a trained dictionary; and the
`.rtk` record size (`RTKRecord.serializedCount`). docs/ARCHITECTURE.md ("Quantizer") has both
kinds; the Laplace kind is read by the decoding modules. numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from ._floats import MASK32
from .zstd import zstd

__all__ = ["Quantizer", "varint_len", "record_bytes", "LEVELS"]

LEVELS = range(1, 10)


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
