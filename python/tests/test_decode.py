"""reptok.entropy and reptok.codec: payloads, tokens and pictures of .rtk records.

The acceptance vectors are Tests/Parity/decode (README.md there; ParityDecodeTests.swift requires
Swift to give the committed pictures byte for byte): `reptok.decode` must give them within
TOLERANCE 8-bit levels, on at most MAX_DIFFERING of the values. Measured when the vectors were
made (float32 on CPU): the tiny model's 12 decodes (6 records, 1 and 8 steps) are bit-identical;
the default model's two 1-step decodes differ in 1 and 2 of 49,152 values, by one level.
"""

import dataclasses
import os
import struct
import zlib

import numpy as np
import pytest

import reptok
from reptok import codec, entropy, rtk
from reptok.entropy import PayloadError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VECTORS = os.path.join(ROOT, "Tests", "Parity", "decode")
TINY = os.path.join(VECTORS, "tiny.safetensors")
DEFAULT = os.path.join(ROOT, "Sources", "RepTokCodec", "Models", "default.safetensors")

#: the largest difference allowed from rtdec --native, in 8-bit levels
TOLERANCE = 1
#: the largest share of the values allowed to differ at all
MAX_DIFFERING = 0.001


def read_png(path) -> np.ndarray:
    """8-bit RGB PNG (as rtdec writes it: not interlaced) -> uint8 [H, W, 3], standard library only."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, ctype, interlace) == (8, 2, 0), "8-bit RGB, not interlaced"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    out = np.zeros((h, 3 * w), np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = out[y - 1] if y else np.zeros(3 * w, np.int32)
        if f == 0:
            out[y] = line
        elif f == 2:
            out[y] = (line + prev) & 0xFF
        else:
            cur = np.zeros(3 * w, np.int32)
            for x in range(3 * w):
                a = cur[x - 3] if x >= 3 else 0
                b = prev[x]
                c = prev[x - 3] if x >= 3 else 0
                if f == 1:
                    p = a
                elif f == 3:
                    p = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + p) & 0xFF
            out[y] = cur
    return out.astype(np.uint8).reshape(h, w, 3)


def compare(got, want, what):
    assert got.shape == want.shape, what
    d = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert d.max() <= TOLERANCE, f"{what}: max difference {d.max()} levels"
    assert (d > 0).mean() <= MAX_DIFFERING, f"{what}: {(d > 0).sum()} of {d.size} values differ"
    return int(d.max()), int((d > 0).sum())


@pytest.fixture(scope="module")
def tiny():
    return codec.load_model(TINY)


@pytest.fixture(scope="module")
def tiny_records():
    return list(reptok.read(os.path.join(VECTORS, "tiny.rtk")))


# ---------------------------------------------------------------------------------------------
# the Laplace coder

def test_laplace_exp():
    import math
    x = -np.concatenate([np.linspace(0, 1, 101), np.linspace(1, 700, 997), [0.5 * 0.6931471805599453]])
    got = entropy.laplace_exp(x)
    want = np.array([math.exp(v) for v in x])
    assert np.all(np.abs(got - want) <= 1e-15 * want)
    assert entropy.laplace_exp(np.array([-700.5, -1e300]))[0] == 0
    with pytest.raises(ValueError):
        entropy.laplace_exp(np.array([0.1]))


def test_tables_sum_to_the_total_and_cover_the_tail():
    for b, step in [(1.0, 1.0), (0.3, 2.0), (100.0, 0.01), (1e-20, 1.0), (5.0, 5.0)]:
        t = entropy.LaplaceTable(b, step)
        assert t.cum[0] == 0 and t.cum[-1] == entropy.TOTAL and len(t.cum) == 2 * t.k + 3
        assert all(t.cum[i] < t.cum[i + 1] for i in range(len(t.cum) - 1))
        assert 1 <= t.k <= entropy.MAX_K
    assert entropy.LaplaceTable(100.0, 0.01).k == entropy.MAX_K


def test_coder_round_trips_with_escapes_and_header():
    rng = np.random.default_rng(3)
    tables = entropy.laplace_tables(rng.uniform(0.2, 30, 40).astype(np.float32), 1.5, 0.9)
    for trial in range(30):
        q = [int(v) for v in np.round(rng.laplace(0, 8, 40))]
        q[trial % 40] = [1_000_000, -1_000_000, 300, -7000][trial % 4]        # escapes
        header = (trial % 8, 8) if trial % 2 else None
        b = entropy.encode_laplace(q, tables, header=header)
        assert not b.endswith(b"\x00")
        if header:
            assert entropy.decode_header(b, 8) == header[0]
        assert entropy.decode_laplace(b, tables, header=header[1] if header else None) == q
    with pytest.raises(PayloadError, match="header of 1 values"):
        entropy.decode_header(b"", 1)


def test_payloads_no_encoder_writes_are_refused(tiny, tiny_records):
    for r in tiny_records:
        mode, q = tiny.symbols(r.payload, r.level)
        assert 0 <= mode < 8 and q.shape == (tiny.dim,) and not q[tiny.coded(r.level):].any()
        for bad in (r.payload + b"\x00", r.payload + b"\x01", r.payload + b"\x80\x00"):
            with pytest.raises(PayloadError) as e:
                tiny.symbols(bad, r.level)
            assert str(e.value) == "corrupt token payload: the payload is not the coding of 96 token values " \
                                   "(extra or altered bytes)"


def test_step_modes_and_levels_of_the_vectors(tiny, tiny_records):
    """What the vectors exercise: 8 step modes (several used), levels, both samplers, long seeds."""
    assert tiny.entropy == "laplace" and len(tiny.step_modes) == 8
    modes = {tiny.symbols(r.payload, r.level)[0] for r in tiny_records}
    assert len(modes) >= 3
    assert {r.level for r in tiny_records} == {1, 2, 3, 5, 6, 9}
    assert {r.sampler for r in tiny_records} == {"euler", "heun"}
    assert max(r.seed for r in tiny_records) == 2 ** 64 - 1
    # the step of a level and mode: level_steps[L - 1] * step_modes[m] in float32
    assert tiny.step(6, 3) == np.float32(tiny.level_steps[5] * tiny.step_modes[3])


# ---------------------------------------------------------------------------------------------
# zstd payloads (the first models)

def _zstd():
    from reptok.zstd import Zstd
    try:
        return Zstd("auto")
    except SystemExit:
        pytest.skip("no libzstd and no zstandard package")


def test_zstd_payloads_round_trip_and_their_checks():
    z = _zstd()
    q = [5, -3, 0, 1_000_000, -1_000_000, 0, 7]
    dictionary = bytes(range(256)) * 2                       # raw-content dictionary
    for d in (b"", dictionary):
        payload = z.compress(entropy.pack(q), d)
        assert entropy.decode_zstd(payload, level=4, coded=7, dim=10, dictionary=d or None) == q + [0, 0, 0]
    payload = z.compress(entropy.pack(q), b"")

    def refused(p, message, coded=7):
        with pytest.raises(PayloadError) as e:
            entropy.decode_zstd(p, level=4, coded=coded, dim=10)
        assert str(e.value) == "corrupt token payload: " + message

    refused(bytes([payload[0] | 0x04]) + payload[1:], "the zstd frame has a content checksum or a dictionary ID")
    refused(payload + b"\x00", "1 bytes follow the %d-byte zstd frame" % (len(payload) + 4))
    refused(payload, "zstd frame claims %d decompressed bytes, over the cap of 6" % len(entropy.pack(q)), coded=2)
    for content, why in [(b"\x0a\x00", "trailing zeros"), (b"\x80\x00", "overlong varints"),
                         (entropy.pack([1] * 8), "extra values")]:
        refused(z.compress(content, b""), "the token is not the packing of the 7 values level 4 codes "
                                          "(extra values, trailing zeros or overlong varints)")
    with pytest.raises(PayloadError, match="not a zstd frame|decompressed size"):
        entropy.decode_zstd(b"", level=4, coded=7, dim=10)          # the bare magic: no frame header


def test_pack_unpack():
    for q in ([], [0], [1, -1, 63, -64, 64, 1_000_000, -1_000_000], [3, 0, 0]):
        assert entropy.unpack(entropy.pack(q), 8) == q + [0] * (8 - len(q))
    assert entropy.pack([3, 0, 0]) == b"\x06"
    with pytest.raises(PayloadError, match="more than 2 token values"):
        entropy.unpack(entropy.pack([1, 1, 1]), 2)
    with pytest.raises(PayloadError, match="truncated token value"):
        entropy.unpack(b"\x80", 2)
    with pytest.raises(PayloadError, match="token value out of range"):
        entropy.unpack(entropy.pack([1_000_001]), 2)


# ---------------------------------------------------------------------------------------------
# tokens

def test_tokens(tiny, tiny_records):
    z = reptok.tokens(tiny_records, TINY)
    assert z.shape == (6, 96) and z.dtype == np.float32
    assert np.array_equal(reptok.tokens(tiny_records[2], TINY), z[2])
    assert np.array_equal(reptok.tokens(os.path.join(VECTORS, "tiny.rtk"), TINY), z)
    # z = mean + sum_i y_i s_i: the float64 sum in the order of i equals a plain product to rounding
    ys = []
    for r in tiny_records:
        mode, q = tiny.symbols(r.payload, r.level)
        ys.append(q.astype(np.float32) * tiny.step(r.level, mode))
    ref = np.stack(ys).astype(np.float64) @ tiny.synthesis.astype(np.float64) + tiny.mean
    assert np.allclose(z, ref, rtol=1e-6, atol=1e-5)


def test_records_without_their_model_are_refused(tiny, tiny_records, monkeypatch):
    monkeypatch.setattr(codec, "default_model_path", lambda: None)
    monkeypatch.setenv("REPTOK_MODEL_PATH", "")
    monkeypatch.setenv("XDG_DATA_HOME", "/nonexistent")
    other = dataclasses.replace(tiny_records[0], fingerprint=0x0123456789ABCDEF)
    with pytest.raises(codec.ModelError, match="model 0123456789abcdef not found"):
        reptok.tokens(other, TINY)
    with pytest.raises(codec.ModelError, match="is not"):
        tiny.tokens([other])
    # found through the search path
    monkeypatch.setenv("REPTOK_MODEL_PATH", VECTORS)
    assert reptok.tokens(tiny_records[0]).shape == (96,)


# ---------------------------------------------------------------------------------------------
# pictures

def test_noise_is_philox_gaussians():
    torch = pytest.importorskip("torch")
    from reptok.rng import philox_gaussians
    for seed in (0, 300, 2 ** 64 - 1):
        a = codec.noise(seed, 3 * 16 * 16 + 1)
        b = philox_gaussians(seed, 0, 0, 3 * 16 * 16 + 1).numpy()
        assert a.dtype == np.float32
        assert np.all(np.abs(a.view(np.int32) - b.view(np.int32)) <= 1)       # libm vs torch: 1 ulp
    assert torch is not None


def test_sampler_times():
    assert [float(t) for t in codec.sample_times(4)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert codec.sample_times(3)[1] == np.float32(1) - np.float32(1) / np.float32(3)


def test_to_pixels():
    x = np.array([-1.0, -2.0, 1.0, 2.0, np.nan, 0.0, -0.5, 0.5], np.float32)   # 0.0: 127.5 -> 128 (ties up)
    px = codec.to_pixels(np.tile(x, (3, 1)).reshape(1, 3, 1, -1))
    assert px.shape == (1, 1, 8, 3)
    assert list(px[0, 0, :, 0]) == [0, 0, 255, 255, 0, 128, 64, 191]


@pytest.mark.parametrize("steps", [1, 8])
def test_tiny_model_decodes_as_rtdec_native(tiny, tiny_records, steps):
    pytest.importorskip("torch")
    px = reptok.decode(tiny_records, TINY, steps=steps)
    assert px.shape == (6, 16, 16, 3) and px.dtype == np.uint8
    for i in range(6):
        compare(px[i], read_png(os.path.join(VECTORS, "tiny", f"r{i + 1}-s{steps}.png")), f"record {i + 1}, {steps} steps")


def test_tiny_model_in_float64_batches_and_overrides(tiny, tiny_records):
    torch = pytest.importorskip("torch")
    px = reptok.decode(tiny_records, TINY, steps=8, dtype=torch.float64, batch_size=4)
    for i in range(6):
        compare(px[i], read_png(os.path.join(VECTORS, "tiny", f"r{i + 1}-s8.png")), f"record {i + 1}, float64")
    # one record alone, and the overrides: --seed N is the record with seed N
    r = tiny_records[3]
    one = reptok.decode(r, TINY)                                   # its own sampler (Heun) and 8 steps
    assert one.shape == (16, 16, 3)
    compare(one, read_png(os.path.join(VECTORS, "tiny", "r4-s8.png")), "record 4 alone")
    assert np.array_equal(reptok.decode(r, TINY, seed=5, steps=2), reptok.decode(dataclasses.replace(r, seed=5, steps=2), TINY))
    raw = reptok.decode(r, TINY, raw=True)
    assert raw.shape == (3, 16, 16) and raw.dtype == np.float32
    assert np.array_equal(codec.to_pixels(raw[None])[0], one)
    with pytest.raises(ValueError):
        reptok.decode(r, TINY, steps=0)


def test_default_model_decodes_as_rtdec_native():
    """Two records of the committed default model at 1 step (about 10 s: the Python fingerprint
    of the 30 MB model takes most of it)."""
    pytest.importorskip("torch")
    if not os.path.exists(DEFAULT):
        pytest.skip("no Sources/RepTokCodec/Models/default.safetensors here")
    records = list(reptok.read(os.path.join(VECTORS, "default.rtk")))
    m = codec.load_model(DEFAULT)
    assert all(r.fingerprint == m.fingerprint for r in records), \
        "the default model changed: run Tests/Parity/decode/regenerate.sh"
    px = reptok.decode(records, m, steps=1)
    for i in range(2):
        compare(px[i], read_png(os.path.join(VECTORS, "default", f"r{i + 1}-s1.png")), f"default record {i + 1}")
