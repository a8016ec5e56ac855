"""The trainer's helpers against their Swift counterparts' rules (formerly
`train_torch.py --self-test`): Philox known answers, numpy and torch streams, varint packing,
views and resampling of constant pictures, the zstd dictionary trainer, record sizes, the
fingerprint of the shipped model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from reptok._floats import MASK32, MASK64
from reptok.modelfile import CONFIG_KEY, fingerprint, read_header
from reptok.quantizer import Quantizer, record_bytes
from reptok.resample import model_view, resize_u8
from reptok.rng import StepRandom, mix64, philox_gaussians, philox_np, philox_torch, philox_uniforms
from reptok.views import ViewSampler
from reptok.zstd import Zstd

KAT = [((0, 0, 0, 0), 0, (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
       ((MASK32,) * 4, MASK64, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
       ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), 0x299F31D0A4093822,
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_philox_known_answers(ctr, key, want):
    """Random123's kat_vectors, numpy and torch paths."""
    assert tuple(int(v) for v in philox_np(key, *ctr)) == want
    gt = philox_torch(key, torch.tensor([ctr[0]]), ctr[1], torch.tensor([ctr[2]]), ctr[3])
    assert tuple(int(v) for v in gt) == want


def test_philox_numpy_equals_torch():
    k = np.arange(0, 5000, 37, dtype=np.uint64) * np.uint64(104729)
    a = philox_np(12345678901234, k & np.uint64(MASK32), 3, k >> np.uint64(32), 0)
    kt = torch.from_numpy(k.astype(np.int64))
    b = philox_torch(12345678901234, kt & MASK32, 3, kt >> 32, 0)
    assert all(np.array_equal(x.astype(np.int64), y.numpy()) for x, y in zip(a, b))


def test_streams_depend_only_on_the_index():
    assert torch.equal(philox_gaussians(7, 0, 5, 11), philox_gaussians(7, 0, 0, 20)[5:16])
    assert np.array_equal(philox_uniforms(7, 1, 3, 9), philox_uniforms(7, 1, 0, 12)[3:])
    assert mix64(0, 0) == mix64(0, 0) and mix64(1, 2) != mix64(2, 1)
    t = StepRandom(3, 5).times(16, 0.25, 0.25)
    assert t.dtype == np.float32 and np.all((t > 0) & (t <= 1)) and np.array_equal(t, StepRandom(3, 5).times(16, 0.25, 0.25))


def test_pack_zigzag_varints():
    assert Quantizer.pack([0, -1, 1, 64, -65, 0, 0]) == bytes([0, 1, 2, 0x80, 0x01, 0x81, 0x01])
    assert Quantizer.pack([0, 0]) == b""


def test_constant_picture_views():
    px = np.full((37, 53, 3), 77, np.uint8)
    v = ViewSampler.render(px, dict(x=1.3, y=2.2, w=30.5, h=20.1, flip=True, b=1.0, c=1.0, s=1.0), 16)
    assert np.all(v == np.float32(77) / np.float32(127.5) - 1)
    assert np.all(resize_u8(px, 11, 9, "bilinear") == 77) and np.all(resize_u8(px, 100, 9, "area") == 77)
    assert model_view(px, 8).shape == (8, 8, 3)


def test_zstd_dictionaries():
    """The fixed-parameter fastCover trainer of RTKZstd: deterministic, safe on tiny sample sets
    (the ones libzstd 1.5.4's default trainer read past: facebook/zstd #4499)."""
    try:
        zs = Zstd("auto")
    except SystemExit:
        pytest.skip("neither libzstd nor the zstandard package")
    rs = np.random.default_rng(5)
    samples = [bytes(rs.integers(0, 8, int(rs.integers(12, 40)), dtype=np.uint8)) for _ in range(600)]
    d1 = zs.train(samples, 2048)
    assert d1[:4] == bytes([0x37, 0xA4, 0x30, 0xEC]) and len(d1) <= 2048 and zs.train(samples, 2048) == d1
    for n in range(1, 40):
        assert len(zs.train([bytes([i % 7]) * 3 for i in range(n)], 1024)) <= 1024
    frame = zs.compress(b"\x01\x02\x03" * 10, d1)
    assert 0 < len(frame) < 30


def test_record_bytes():
    # 14 + w + h + seed + steps + len + payload + 4
    assert record_bytes(512, 384, 10) == 14 + 2 + 2 + 1 + 1 + 1 + 10 + 4


def test_fingerprint_of_the_shipped_model(default_model):
    """The generator file names the codec model it was trained on by the Swift fingerprint."""
    fp = fingerprint(default_model)
    gen = os.path.join(os.path.dirname(default_model), "generator.safetensors")
    if os.path.exists(gen):
        assert json.loads(read_header(gen)[0][CONFIG_KEY])["codec_model"] == fp
    cfg = json.loads(read_header(default_model)[0][CONFIG_KEY])
    for part in ("encoder", "decoder", "codec"):   # our JSON writing reproduces Swift's
        assert json.loads(json.dumps(cfg[part])) == cfg[part]


def test_numpy_modules_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import reptok, reptok.rng, reptok.rtds, reptok.resample, reptok.zstd, reptok.quantizer, reptok.modelfile\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
