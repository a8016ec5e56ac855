"""Philox4x32-10 and the per-step random streams of the trainer.

Mirrors Sources/RepTokTensor/Random.swift (`Philox4x32`, `SplitMix64.mix`) and the `StepRandom`
streams of Sources/RepTokTrain/Views.swift. numpy only; the torch variants (`philox_torch`,
`philox_gaussians`) import torch when called.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._floats import MASK32, MASK64, f32

if TYPE_CHECKING:
    import torch

__all__ = ["mix64", "philox_np", "philox_torch", "philox_uniforms", "philox_gaussians", "StepRandom"]


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
    import torch

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
    import torch

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
    FLOW, TIME, TOKEN, VIEWS, LAYOUT_KEEP = 0, 1, 2, 3, 4

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

    def layout_keep(self, B: int, m: int, drop: float) -> list[int]:
        """Layout coordinates each sample's decoder sees (`StepRandom.layoutKeep`,
        `TrainConfig.layoutDrop`): m, or with probability `drop` a count log-uniform in 1...m."""
        u = philox_uniforms(self.key, self.LAYOUT_KEEP, 0, 2 * B)
        d = f32(drop)
        return [m if not u[2 * b] < d else min(m, max(1, int(math.exp(u[2 * b + 1] * math.log(m + 1)))))
                for b in range(B)]
