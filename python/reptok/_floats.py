"""Small numeric helpers shared by the modules: Swift `Float` rounding and JSON writing, masks."""

from __future__ import annotations

import numpy as np

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
