#!/usr/bin/env python3
"""Copy a safetensors file with its F32 tensors stored as F16 (metadata and other dtypes kept).

    python3 python/scripts/st_fp16.py IN.safetensors OUT.safetensors

Used for shipped weights (rttrain ssl --export writes F32): the engine computes in F32 and
reads F16 files directly. numpy only; the safetensors layout (8-byte little-endian header
length, JSON header, data) is written by hand, offsets in key order.
"""
import json
import struct
import sys

import numpy as np


def main(src, dst):
    raw = open(src, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    meta = header.pop("__metadata__", None)
    out_header, blobs, offset = {}, [], 0
    for name in sorted(header):
        info = header[name]
        a, b = info["data_offsets"]
        data = raw[base + a:base + b]
        dtype = info["dtype"]
        if dtype == "F32":
            data = np.frombuffer(data, dtype="<f4").astype("<f2").tobytes()
            dtype = "F16"
        out_header[name] = {"dtype": dtype, "shape": info["shape"], "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if meta is not None:
        out_header["__metadata__"] = meta
    h = json.dumps(out_header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for d in blobs:
            f.write(d)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
