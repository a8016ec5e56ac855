"""The layout path (TokenAdapter with `adapter.layout`, RepTokModel.lossAndGradients' padded cosine
target and layout keep) in reptok.model, and reptok.train's --init-from, --layout-* flags,
--weights-out and --expand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from reptok import model as R, train
from reptok.modelfile import CONFIG_KEY

from test_train import packs, write_pack  # noqa: F401  (the module fixture)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "Sources/RepTokCodec/Models/default.safetensors"
SSL = ROOT / "Sources/RepTokCodec/Models/ssl-encoder.safetensors"


def tiny(m=6, k=4, skip=4, S=16):
    enc = R.Dinov2Encoder(dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, patch_size=8,
                               image_size=S))
    R.init_encoder(enc, 1)
    dec = R.FlowDecoder(dict(image_size=S, patch_size=8, width=16, depth=1, num_heads=2, token_dim=16 + m,
                             prediction="x", skip_size=skip, freq_dim=8))
    R.init_decoder(dec, 2)
    model = R.RepTok(encoder=enc, decoder=dec, layout_dim=m, layout_size=k)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in list(model.adapter.parameters()) + list(model.decoder.parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def test_coarse_and_token():
    model = tiny()
    x = torch.rand(3, 3, 16, 16, dtype=torch.float32) * 2 - 1
    c = torch.randn(3, 16)
    ref = x.double().reshape(3, 3, 4, 4, 4, 4).mean(dim=(3, 5)).reshape(3, -1)   # [B, (c, i, j)]
    assert torch.allclose(R.Adapter.coarse(x, 4).double(), ref, atol=1e-6)
    z = model.adapter(c, x)
    a = model.adapter
    assert z.shape == (3, 22)
    assert torch.allclose(z[:, :16], c + a.proj(c))
    assert torch.allclose(z[:, 16:], a.layout(ref.float()), atol=1e-5)
    assert R.layout_shape([384, 3072]) == (384, 32) and R.layout_shape(None) == (0, 0)
    with pytest.raises(ValueError):
        R.layout_shape([4, 10])
    with pytest.raises(ValueError):
        model.adapter(c)


def test_objective_padded_cosine_and_keep():
    torch.manual_seed(0)
    model = tiny()
    model.set_tune("all")
    B = 4
    x = torch.rand(B, 3, 16, 16) * 2 - 1
    t = torch.tensor([1.0, 0.5, 0.3, 1.0])
    noise = torch.randn(B, 3, 16, 16)
    loss, flow, cos, _ = model(x, t, noise, None, 0.0, 0.1, None, 1)
    pe = model.normalize(x)
    with torch.no_grad():
        c0 = model.frozen_encoder(pe)[0]
        z = model.encode(pe, x)
    c0p = torch.cat([c0, torch.zeros(B, 6)], 1)
    want = torch.mean(1 - torch.nn.functional.cosine_similarity(z, c0p, dim=-1))
    assert abs(float(cos) - float(want)) < 1e-6
    # keep = m everywhere is no truncation; keep = 0 zeroes the layout coordinates in the decoder's input
    same = model(x, t, noise, None, 0.0, 0.1, None, 1, torch.full((B,), 6))
    assert float(same[0].detach()) == float(loss.detach())
    zero = model(x, t, noise, None, 0.0, 0.1, None, 1, torch.zeros(B, dtype=torch.long))
    with torch.no_grad():
        zd = z.clone()
        zd[:, 16:] = 0
        tb = t.view(-1, 1, 1, 1)
        xt = (1 - tb) * x + tb * noise
        v = model.decoder.velocity(xt, t, zd)
        f0 = torch.mean((v - (noise - x)) ** 2)
    assert abs(float(zero[1]) - float(f0)) < 1e-6 and float(zero[2]) == float(cos)
    # partial keep: sample b's decoder sees its first keep[b] coordinates
    keep = torch.tensor([0, 2, 6, 3])
    part = model(x, t, noise, None, 0.0, 0.1, None, 1, keep)
    with torch.no_grad():
        zk = z.clone()
        for b in range(B):
            zk[b, 16 + int(keep[b]):] = 0
        f1 = torch.mean((model.decoder.velocity(xt, t, zk) - (noise - x)) ** 2)
    assert abs(float(part[1]) - float(f1)) < 1e-6


def _model_file(path: Path, model: R.RepTok):
    """A codec-model-like file: the network weights (F16, as `rttrain export --fp16` writes them)."""
    ts = {n: p.detach().half() for n, p in model.named_weights()}
    ts["frozen.cls_token"] = model.frozen_cls_token.half()
    R.save_tensors(str(path), ts, R.reptok_metadata(model.encoder.config, model.decoder.config), dtype=torch.float16)


def test_init_from_layout_run_weights_expand(packs, tmp_path):  # noqa: F811
    # the SSL encoder file the run starts from, and a layout model (other weights) to warm-start from
    src = tiny()
    enc_file = tmp_path / "enc.safetensors"
    R.save_tensors(str(enc_file), {"encoder." + k: v for k, v in src.encoder.state_dict().items()},
                   R.reptok_metadata(src.encoder.config))
    init_file = tmp_path / "init.safetensors"
    run = tmp_path / "run"
    args = ["--data", str(packs / "train.rtds"), "--val", str(packs / "val.rtds"), "--out", str(run),
            "--encoder", str(enc_file), "--tune", "all", "--image-size", "16", "--patch", "8", "--width", "16",
            "--depth", "1", "--heads", "2", "--skip-size", "4", "--layout-dim", "6", "--layout-size", "4",
            "--layout-lr", "0", "--layout-drop", "0.5", "--init-from", str(init_file), "--batch", "4", "--steps", "3",
            "--warmup", "1", "--lr", "1e-3", "--ema", "0.9", "--seed", "3", "--threads", "1", "--workers", "0",
            "--attention", "math", "--weights-out", str(tmp_path / "w.safetensors")]
    # another model to warm-start from (the trainer's decoder has the default freq_dim 256)
    init = tiny()
    init.decoder = R.FlowDecoder(dict(init.decoder.config, freq_dim=256))
    R.init_decoder(init.decoder, 9)
    _model_file(init_file, init)
    assert train.main(args) == 0
    w, meta = R.load_state_dict_file(str(tmp_path / "w.safetensors"))
    f, _ = R.load_state_dict_file(str(init_file))
    # layout_lr 0: the layout path and the latent skip keep the init file's weights (exactly in the
    # live weights; the EMA's d e + (1 - d) e rounds within a few ulps)
    ck, _ = R.load_state_dict_file(str(run / "checkpoint.safetensors"))
    for k in ("adapter.layout.weight", "adapter.layout.bias", "decoder.latent_skip.weight", "decoder.latent_skip.bias"):
        assert torch.equal(ck["param." + k], f[k].float()), k
        assert torch.allclose(w["ema." + k], f[k].float(), rtol=1e-6, atol=1e-9), k
    # everything else trained, starting from the file's weights (not the SSL encoder's)
    assert not torch.equal(w["ema.decoder.patch_embed.weight"], f["decoder.patch_embed.weight"].float())
    assert (w["ema.encoder.layernorm.weight"] - f["encoder.layernorm.weight"].float()).abs().max() < 0.05
    cfg = json.loads(meta["reptok.train"])["config"]
    assert cfg["layout_dim"] == 6 and cfg["layout_size"] == 4 and cfg["skip_size"] == 4 and cfg["layout_lr"] == 0
    assert cfg["init_from"] == str(init_file)
    assert json.loads(meta[CONFIG_KEY])["decoder"]["token_dim"] == 22
    assert torch.equal(ck["ema.adapter.layout.weight"], w["ema.adapter.layout.weight"])
    # --expand: what rttrain export --checkpoint reads
    assert train.main(["--expand", str(tmp_path / "w.safetensors"), str(tmp_path / "x" / "checkpoint.safetensors")]) == 0
    x, xm = R.load_state_dict_file(str(tmp_path / "x" / "checkpoint.safetensors"))
    for k, v in w.items():
        if k.startswith("ema."):
            n = k[4:]
            assert torch.equal(x["param." + n], v)
            if n != "encoder.embeddings.mask_token":
                assert torch.equal(x["ema." + n], v) and not x["adam.m." + n].any() and not x["adam.v." + n].any()
    assert "adam.m.encoder.embeddings.mask_token" not in x
    assert xm["reptok.train"] == meta["reptok.train"]
    # resuming the real checkpoint continues with the layout path
    assert train.main(["--out", str(run), "--resume", "--steps", "4"]) == 0


def test_layout_needs_init_from(packs, tmp_path):  # noqa: F811
    with pytest.raises(SystemExit, match="init-from"):
        train.main(["--data", str(packs / "train.rtds"), "--out", str(tmp_path / "r"), "--tune", "all",
                    "--skip-size", "4", "--layout-dim", "6", "--layout-size", "4", "--image-size", "16",
                    "--steps", "1"])


# rttrain tokenizer --init-from default.safetensors, the default's recipe (layout path fixed: layout
# lr 0), batch 4, lr 2e-4 with 3 warm-up steps, 8 steps, seed 0, 1 thread: its metrics.jsonl. The
# torch trainer must give the same losses (views, times and noise are Swift's bit for bit; the rest
# is float32 arithmetic in another order), through 7 AdamW updates at the real learning rate.
SWIFT_STEPS = [
    dict(loss=0.07203617, flow=0.07018096, cos=0.018552078, grad_norm=0.4438408),
    dict(loss=0.0251146, flow=0.020894185, cos=0.042204145, grad_norm=0.3184009),
    dict(loss=0.0523406, flow=0.043432582, cos=0.08908019, grad_norm=0.5223252),
    dict(loss=0.021924853, flow=0.011137418, cos=0.107874356, grad_norm=0.31340787),
    dict(loss=0.039483137, flow=0.02180466, cos=0.17678477, grad_norm=0.37712538),
    dict(loss=0.07996685, flow=0.05961942, cos=0.20347433, grad_norm=0.7407569),
    dict(loss=0.033068866, flow=0.015049549, cos=0.18019314, grad_norm=0.36014748),
    dict(loss=0.067431636, flow=0.053763974, cos=0.13667664, grad_norm=0.4274526)
]


@pytest.mark.skipif(not (ROOT / "data/train.rtds").exists() or not DEFAULT.exists(),
                    reason="needs data/train.rtds (python3 -m reptok.build_dataset --out data/)")
def test_default_recipe_matches_rttrain(tmp_path):
    args = ["--data", str(ROOT / "data/train.rtds"), "--out", str(tmp_path / "run"), "--encoder", str(SSL),
            "--tune", "all", "--lambda", "0.1", "--image-size", "128", "--patch", "16", "--width", "256",
            "--depth", "6", "--heads", "4", "--skip-size", "32", "--layout-dim", "384", "--layout-size", "32",
            "--layout-lr", "0", "--batch", "4", "--lr", "2e-4", "--warmup", "3", "--t-one", "0.5", "--steps", "8",
            "--threads", "1", "--workers", "0", "--device", "cpu", "--no-export",
            "--init-from", str(DEFAULT)]
    assert train.main(args) == 0
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert len(rows) == len(SWIFT_STEPS)
    for got, want in zip(rows, SWIFT_STEPS):
        for k in ("loss", "flow", "cos"):
            assert abs(got[k] - want[k]) <= 1e-4 * abs(want[k]), (got["step"], k, got[k], want[k])
        assert abs(got["grad_norm"] - want["grad_norm"]) <= 1e-3 * want["grad_norm"]


# `rttrain eval --model default.safetensors --data data/val.rtds --limit 8 --ssl-encoder
# ssl-encoder.safetensors --json`: the UNQUANTIZED tokens' mean cosine to the SSL token (padded with
# zeros) and their 1-step decodes' mean PSNR on the codec views of the first 8 validation pictures.
SWIFT_TOKEN_COSINE, SWIFT_UNQUANTIZED_PSNR = 0.983287316221651, 23.74632072274717


@pytest.mark.skipif(not (ROOT / "data/val.rtds").exists() or not DEFAULT.exists(),
                    reason="needs data/val.rtds (python3 -m reptok.build_dataset --out data/)")
def test_default_tokens_match_rttrain_eval():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, str(ROOT / "python/scripts/layout_token_check.py"), "--model", str(DEFAULT),
                          "--ssl-encoder", str(SSL), "--data", str(ROOT / "data/val.rtds"), "--limit", "8"],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "python"))).stdout
    r = json.loads(out)
    assert r["token_dim"] == 576 and r["pictures"] == 8
    assert abs(r["token_cosine"] - SWIFT_TOKEN_COSINE) < 1e-7
    assert abs(r["unquantized_psnr_1_step"] - SWIFT_UNQUANTIZED_PSNR) < 1e-3
