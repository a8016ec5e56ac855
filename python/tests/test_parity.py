"""The parity vectors of Tests/Parity (written by Tests/TrainTests/ParityVectorTests.swift):
the Python package must compute what the Swift engine computes. A change on one side only fails
one of the two suites (see Tests/Parity/README.md)."""
import base64
import json
import pathlib

import numpy as np
import pytest

from reptok import rng, resample, rtds, views

PARITY = pathlib.Path(__file__).resolve().parents[2] / "Tests" / "Parity"


@pytest.fixture(scope="module")
def vectors():
    return json.loads((PARITY / "core.json").read_text())


def f32(s):
    return np.frombuffer(base64.b64decode(s), "<f4")


def f64(s):
    return np.frombuffer(base64.b64decode(s), "<f8")


def rgb(s, w, h):
    return np.frombuffer(base64.b64decode(s), np.uint8).reshape(h, w, 3)


def ulps32(a, b):
    """Distance in float32 units in the last place (same-sign values)."""
    ia = np.asarray(a, np.float32).view(np.int32).astype(np.int64)
    ib = np.asarray(b, np.float32).view(np.int32).astype(np.int64)
    return np.abs(ia - ib)


def test_philox_blocks(vectors):
    for v in vectors["rng"]["philox_blocks"]:
        seed = int(v["seed"], 16)
        got = rng.philox_np(seed, *[np.uint64(c) for c in v["counter"]])
        assert [int(x) for x in got] == v["out"], v
        import torch
        gt = rng.philox_torch(seed, torch.tensor([v["counter"][0]]), v["counter"][1],
                              torch.tensor([v["counter"][2]]), v["counter"][3])
        assert [int(x) for x in gt] == v["out"], ("torch", v)


def test_mix64(vectors):
    for a, b, out in vectors["rng"]["mix64"]:
        assert rng.mix64(int(a, 16), int(b, 16)) == int(out, 16)


def test_uniforms_exact(vectors):
    for v in vectors["rng"]["uniforms"]:
        got = rng.philox_uniforms(int(v["seed"], 16), v["stream"], v["start"], v["count"])
        assert np.array_equal(got, f64(v["f64"])), v


def test_gaussians(vectors):
    # Box-Muller in float64 from the same uniforms; libm's log/cos/sin may differ from Swift's
    # in the last bit of the double, which can move the float32 result by at most 1 ulp.
    for v in vectors["rng"]["gaussians"]:
        got = rng.philox_gaussians(int(v["seed"], 16), v["stream"], v["start"], v["count"]).numpy()
        want = f32(v["f32"])
        assert got.shape == want.shape
        assert ulps32(got, want).max() <= 1, v


def test_step_random(vectors):
    for v in vectors["rng"]["step_random"]:
        seed, step = int(v["seed"], 16), v["step"]
        r = rng.StepRandom(seed, step)
        t = v["times"]
        got = r.times(t["batch"], t["uniform_fraction"], t["one_fraction"])
        assert ulps32(got, f32(t["f32"])).max() <= 1, ("times", v["step"])
        key = rng.mix64(seed, step)
        for name, stream in (("flow_noise", r.FLOW), ("token_noise", r.TOKEN)):
            n = v[name]
            got = rng.philox_gaussians(key, stream, 0, n["count"]).numpy()
            assert ulps32(got, f32(n["f32"])).max() <= 1, (name, step)
        lk = v["layout_keep"]
        assert r.layout_keep(lk["batch"], lk["m"], lk["drop"]) == lk["out"]


def test_resample(vectors):
    src = vectors["resample"]["source"]
    img = rgb(src["rgb"], src["width"], src["height"])
    checked = 0
    for c in vectors["resample"]["resize"]:
        if c["filter"] == "lanczos3":
            continue   # the Python side has no lanczos3 (training and the codec view never use it)
        got = resample.resize_u8(img, c["width"], c["height"], c["filter"])
        assert np.array_equal(got, rgb(c["rgb"], c["width"], c["height"])), (c["filter"], c["width"], c["height"])
        checked += 1
    assert checked == 6
    mv = vectors["resample"]["model_view"]
    assert np.array_equal(resample.model_view(img, mv["size"]), rgb(mv["rgb"], mv["size"], mv["size"]))


def test_views(vectors):
    v = vectors["views"]
    c = v["config"]
    ds = rtds.open_pictures(str(PARITY / "views.rtds"), verify_crc=True)
    cfg = views.ViewConfig(c["size"], whole_fraction=c["whole"], min_area=c["min_area"], max_area=c["max_area"],
                           max_aspect=c["max_aspect"], flip=c["flip"], brightness=c["brightness"],
                           contrast=c["contrast"], saturation=c["saturation"], augment_whole=c["augment_whole"])
    sampler = views.ViewSampler(ds, cfg, v["batch"], v["seed"])
    S = c["size"]
    for want in v["views"]:
        p = sampler.params(want["view"])
        assert p["image"] == want["image"] and p["whole"] == want["whole"] and p["flip"] == want["flip"]
        for k, wk in (("x", "x"), ("y", "y"), ("w", "w"), ("h", "h")):
            assert p[k] == pytest.approx(want[wk], rel=1e-12, abs=1e-12), (want["view"], k)
        for k, wk in (("b", "brightness"), ("c", "contrast"), ("s", "saturation")):
            assert np.float32(p[k]) == np.float32(want[wk]), (want["view"], k)
        got = views.ViewSampler.render(ds.pixels(p["image"]), p, S).reshape(-1)
        # measured exact; 2 ulps at 1.0 allowed for the order of the last float32 additions
        np.testing.assert_allclose(got, f32(want["f32"]), rtol=0, atol=2.5e-7)
    for want in v["whole"]:
        i = want["image"]
        W, H = ds.width(i), ds.height(i)
        p = dict(image=i, whole=True, x=0.0, y=0.0, w=float(W), h=float(H), flip=False, b=1.0, c=1.0, s=1.0)
        got = views.ViewSampler.render(ds.pixels(i), p, S).reshape(-1)
        np.testing.assert_allclose(got, f32(want["f32"]), rtol=0, atol=2.5e-7)
