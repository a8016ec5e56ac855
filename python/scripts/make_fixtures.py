"""Write the conformance fixtures of Tests/RepTokModelsTests/Fixtures (see README.md there).

Run from the repository root:  python3 python/scripts/make_fixtures.py [--out DIR]
(needs `pip install -e python[train]`; --out writes elsewhere, e.g. to compare with `cmp`).
Deterministic (fixed seeds, one thread). All references are computed in float64 from the
float32-rounded weights and inputs that the files store, then stored as float32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile

import torch

from reptok import model as R

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "Tests", "RepTokModelsTests", "Fixtures")
# written into every file's metadata: the script's name when the fixtures were made (it moved to
# python/scripts/ since; the files stay byte-identical)
GENERATOR = "tools/make_fixtures.py"

ENC_CFG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4, patch_size=4,
               image_size=16, num_channels=3, layer_norm_eps=1e-6, layerscale_value=1.0, qkv_bias=True,
               use_swiglu_ffn=False, num_register_tokens=0, hidden_act="gelu")
DEC_CFG = dict(image_size=16, patch_size=4, width=32, depth=2, num_heads=2, mlp_ratio=4, token_dim=32,
               freq_dim=16, prediction="x", t_eps=0.05, layer_norm_eps=1e-6)

# inputs at other resolutions: (name suffix, H, W); stored grid is 4x4 (16 px, patch 4)
INTERP_SIZES = [("interp", 20, 12),       # grid 5x3: taller (upscale), narrower (downscale)
                ("interp_down", 12, 8),   # grid 3x2: downscale both ways (antialias matters)
                ("interp_up", 24, 28)]    # grid 6x7: upscale both ways

B = 2
VERSIONS = {"torch_version": torch.__version__}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(g, *shape, std=1.0, mean=0.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean)


def randomize(module: torch.nn.Module, g: torch.Generator, skip=()):
    """Re-initialize EVERY parameter (zero-initialized ones included) so that activations are
    O(1) and every gradient is informative. float32 values (they are stored as such)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if any(s in name for s in skip):
                continue
            leaf = name.split(".")[-1]
            if name.endswith(("cls_token", "mask_token", "register_tokens", "position_embeddings")):
                v = randn(g, *p.shape, std=0.5)
            elif leaf == "lambda1":
                v = randn(g, *p.shape, std=0.2, mean=0.5)
            elif p.ndim >= 2:
                v = randn(g, *p.shape, std=1.0 / math.sqrt(p[0].numel()))
            elif leaf == "weight":                       # LayerNorm scale
                v = randn(g, *p.shape, std=0.2, mean=1.0)
            else:                                        # biases, LayerNorm shift
                v = randn(g, *p.shape, std=0.1)
            p.copy_(v.to(p.dtype))
    return module


def rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).norm() / b.norm()).item()


def meta(fixture: str, encoder=None, decoder=None, **extra) -> dict:
    m = R.reptok_metadata(encoder, decoder)
    m["fixture"] = fixture
    m["generator"] = GENERATOR
    m.update(VERSIONS)
    m.update({k: str(v) for k, v in extra.items()})
    return m


def write(name: str, tensors: dict, metadata: dict):
    path = os.path.join(OUT_DIR, name)
    for k, v in tensors.items():
        assert torch.isfinite(v).all(), (name, k)
    R.save_tensors(path, tensors, metadata)
    os.chmod(path, 0o644)
    print(f"{name}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")
    return path


def grads_of(params, named):
    """{name: grad or zeros} for every named parameter (unused ones, e.g. mask_token, get 0)."""
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in named}


# ----------------------------------------------------------------------------------------------

def encoder_fixture(fname: str, regs: int, seed: int):
    cfg = R.encoder_config(ENC_CFG, num_register_tokens=regs)
    g = gen(seed)
    enc = randomize(R.Dinov2Encoder(cfg), g)
    weights = {"encoder." + k: v.clone() for k, v in enc.state_dict().items()}
    enc = enc.double()
    px = randn(g, B, 3, 16, 16)
    r = randn(g, B, cfg["hidden_size"])
    x = px.double().requires_grad_(True)
    tok, hid = enc(x)
    (tok * r.double()).sum().backward()
    t = {**weights, "in.pixels": px, "out.token": tok, "out.hidden": hid, "in.r": r,
         "grad.in.pixels": x.grad}
    t.update({"grad.encoder." + n: gr for n, gr in grads_of(None, enc.named_parameters()).items()})
    with torch.no_grad():
        for suffix, h, w in INTERP_SIZES:
            pi = randn(g, B, 3, h, w)
            ti, hi = enc(pi.double())
            t["in.pixels_" + suffix] = pi
            t["out.token_" + suffix] = ti
            t["out.hidden_" + suffix] = hi
    kind = "Dinov2WithRegistersModel (antialiased position resize)" if regs else "Dinov2Model (plain bicubic position resize)"
    desc = (f"encoder, {kind}, {regs} register tokens. Weights encoder.*; forward of in.pixels -> "
            "out.token [B,D] = layernorm(h)[:,0], out.hidden [B,T,D] = layernorm(h) "
            f"(T = 1 + {regs} + N); loss = sum(out.token * in.r) -> grad.in.pixels and grad.encoder.<name> "
            "for every encoder parameter (mask_token unused: zero). in.pixels_<s> -> out.token_<s>, "
            "out.hidden_<s> at other sizes (position-embedding interpolation): "
            + ", ".join(f"{s} {h}x{w}" for s, h, w in INTERP_SIZES) + ". float64 reference stored as float32.")
    write(fname, t, meta(desc, encoder=cfg))
    return t, cfg


def decoder_fixture(fname: str, prediction: str, seed: int, skip: int = 0, skip_input: bool = False):
    cfg = R.decoder_config(DEC_CFG, prediction=prediction, **({"skip_size": skip} if skip else {}),
                           **({"skip_input": True} if skip_input else {}))
    g = gen(seed)
    dec = randomize(R.FlowDecoder(cfg), g)
    weights = {"decoder." + k: v.clone() for k, v in dec.state_dict().items()}
    dec = dec.double()
    x_t = randn(g, B, 3, 16, 16)
    tt = torch.tensor([0.3, 0.85], dtype=torch.float32)
    z = randn(g, B, cfg["token_dim"])
    r = randn(g, B, 3, 16, 16)
    xd = x_t.double().requires_grad_(True)
    zd = z.double().requires_grad_(True)
    out = dec(xd, tt.double(), zd)
    v = dec.to_velocity(xd, tt.double(), out)
    (v * r.double()).sum().backward()
    tc = torch.tensor([0.02, 0.0], dtype=torch.float32)  # both below t_eps: v = (x_t - out) / t_eps
    with torch.no_grad():
        tf = R.timestep_features(tt.double(), cfg["freq_dim"])
        temb = dec.t_embed(tf)
        out_c = dec(x_t.double(), tc.double(), z.double())
        v_c = dec.to_velocity(x_t.double(), tc.double(), out_c)
    t = {**weights, "in.x_t": x_t, "in.t": tt, "in.z": z, "out.out": out, "out.v": v, "in.r": r,
         "grad.in.x_t": xd.grad, "grad.in.z": zd.grad, "out.t_features": tf, "out.t_embed": temb,
         "out.pos": dec.pos, "in.t_small": tc, "out.out_t_small": out_c, "out.v_t_small": v_c}
    t.update({"grad.decoder." + n: gr for n, gr in grads_of(None, dec.named_parameters()).items()})
    desc = (f"flow decoder, prediction '{prediction}'" + (f", latent skip {skip}x{skip}" if skip else "")
            + (", skip picture also embedded as input (skip_embed)" if skip_input else "") + ". Weights decoder.*; out.out = decoder(in.x_t, in.t, in.z) "
            "(raw output, [B,3,S,S]); out.v = velocity; loss = sum(out.v * in.r) -> grad.in.x_t, grad.in.z, "
            "grad.decoder.<name> for every parameter. Helpers: out.t_features [B,freq_dim] (Fourier features "
            "of in.t), out.t_embed [B,W] (t_embed MLP output), out.pos [(S/p)^2, W] (2-D sin-cos table). Forward only at in.t_small = (0.02, 0) (below t_eps, "
            "exercises max(t, t_eps)): out.out_t_small, out.v_t_small (same in.x_t, in.z). "
            "float64 reference stored as float32.")
    write(fname, t, meta(desc, decoder=cfg))
    return t, cfg


def train_step_fixture(fname: str, seed: int):
    ecfg = R.encoder_config(ENC_CFG, num_register_tokens=2)
    dcfg = R.decoder_config(DEC_CFG, prediction="x")
    g = gen(seed)
    model = R.RepTok({"encoder": ecfg, "decoder": dcfg})
    randomize(model, g)
    with torch.no_grad():
        # frozen copy = the ORIGINAL encoder: same weights except the [CLS] input embedding,
        # which training has moved away from it
        model.frozen_cls_token = model.encoder.embeddings.cls_token + randn(g, 1, 1, ecfg["hidden_size"], std=0.3)
    weights = {k: v.clone() for k, v in R.reptok_state(model).items()}
    model = model.double()
    px = randn(g, B, 3, 16, 16)
    x = randn(g, B, 3, 16, 16, std=0.5)
    noise = randn(g, B, 3, 16, 16)
    tt = torch.tensor([0.25, 0.7], dtype=torch.float32)
    lam = torch.tensor([2.0], dtype=torch.float32)
    model.set_trainable("cls")   # requires_grad only: the frozen [CLS] set above stays
    loss, flow, cosl, z = model.training_loss(px.double(), x.double(), tt.double(), noise.double(),
                                              lam.double()[0], tune="cls", return_z=True)
    loss.backward()
    trainable = model.trainable_named_parameters()
    with torch.no_grad():
        c = model.encoder(px.double())[0]
        c0 = model.frozen_token(px.double())
    t = {**weights, "in.pixels_enc": px, "in.x": x, "in.t": tt, "in.noise": noise, "in.lambda": lam,
         "out.loss": loss.reshape(1), "out.flow_loss": flow.reshape(1), "out.cos_loss": cosl.reshape(1),
         "out.z": z, "out.c": c, "out.c0": c0}
    t.update({"grad." + n: p.grad for n, p in trainable})
    desc = ("one tokenizer training step, tune='cls'. Weights encoder.* (2 register tokens), adapter.*, "
            "decoder.* (prediction 'x'), frozen.cls_token (the frozen encoder = encoder.* with this [CLS] "
            "input embedding). c = encoder(in.pixels_enc) token (out.c), c0 = frozen token (out.c0), "
            "z = adapter(c) (out.z), x_t = (1-t) in.x + t in.noise, v* = in.noise - in.x, "
            "flow = mean((decoder.velocity(x_t,t,z) - v*)^2), cos = mean_b(1 - cos(z_b, c0_b)), "
            "loss = flow + in.lambda * cos (out.loss, out.flow_loss, out.cos_loss, shape [1]). "
            "grad.<key> = d loss / d key for every trainable parameter: encoder.embeddings.cls_token, "
            "adapter.*, decoder.*. float64 reference stored as float32.")
    write(fname, t, meta(desc, encoder=ecfg, decoder=dcfg, tune="cls"))
    return t, model


def hf_fixture(fname: str, regs: int, seed: int):
    import transformers
    from transformers import (Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig,
                              Dinov2WithRegistersModel)
    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4, patch_size=4,
              image_size=16, layer_norm_eps=1e-6, attn_implementation="eager")
    if regs:
        hf_cfg = Dinov2WithRegistersConfig(num_register_tokens=regs, **kw)
        model = Dinov2WithRegistersModel(hf_cfg)
    else:
        hf_cfg = Dinov2Config(**kw)
        model = Dinov2Model(hf_cfg)
    g = gen(seed)
    randomize(model, g)
    model.eval()
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        weights, _ = R.load_state_dict_file(os.path.join(d, "model.safetensors"))
        config_json = open(os.path.join(d, "config.json")).read()
    hf = json.loads(config_json)
    ours = R.Dinov2Encoder(R.encoder_config_from_hf(hf))
    ours.load_state_dict(weights)  # strict: the checkpoint names load unchanged
    t = dict(weights)
    model = model.double()
    ours64 = R.Dinov2Encoder(R.encoder_config_from_hf(hf))
    ours64.load_state_dict(weights)
    ours64 = ours64.double()
    with torch.no_grad():
        for suffix, h, w in [("", 16, 16)] + INTERP_SIZES:
            px = randn(g, B, 3, h, w)
            o = model(pixel_values=px.double())
            s = "_" + suffix if suffix else ""
            t["in.pixels" + s] = px
            t["out.pooler" + s] = o.pooler_output
            t["out.hidden" + s] = o.last_hidden_state
            # validate reptok.model against transformers (fp32 and fp64)
            model32 = model.float()
            o32 = model32(pixel_values=px)
            tok32, hid32 = ours(px)
            assert rel(tok32, o32.pooler_output) < 1e-5 and rel(hid32, o32.last_hidden_state) < 1e-5, (fname, s)
            model = model.double()
            tok64, hid64 = ours64(px.double())
            assert rel(tok64, o.pooler_output) < 1e-5 and rel(hid64, o.last_hidden_state) < 1e-5, (fname, s)
            print(f"  {fname} {h}x{w}: ours vs transformers rel err fp32 {rel(hid32, o32.last_hidden_state):.2e}"
                  f" fp64 {rel(hid64, o.last_hidden_state):.2e}")
    cls = "Dinov2WithRegistersModel" if regs else "Dinov2Model"
    desc = (f"transformers' own {cls} (random weights, eval, eager attention). Tensor keys without 'in.'/'out.' "
            "are the checkpoint exactly as model.save_pretrained writes it (bare HF names). in.pixels -> "
            "out.pooler (pooler_output = layernorm(h)[:,0]) and out.hidden (last_hidden_state); "
            "in.pixels_<s> -> out.pooler_<s>, out.hidden_<s> at other sizes: "
            + ", ".join(f"{s} {h}x{w}" for s, h, w in INTERP_SIZES)
            + ". Computed by transformers in float64 (which resizes the position table in float32), stored as float32. "
            "hf_config = the config.json written by save_pretrained.")
    m = meta(desc, encoder=R.encoder_config_from_hf(hf))
    m["hf_config"] = config_json
    m["transformers_version"] = transformers.__version__
    write(fname, t, m)


# ----------------------------------------------------------------------------------------------
# self-checks: reload the files, recompute from the stored float32 tensors

def check_encoder_file(name):
    tensors, m = R.load_state_dict_file(os.path.join(OUT_DIR, name))
    enc = R.load_encoder(os.path.join(OUT_DIR, name))
    with torch.no_grad():
        tok, hid = enc.double()(tensors["in.pixels"].double())
        assert rel(tok, tensors["out.token"]) < 1e-6 and rel(hid, tensors["out.hidden"]) < 1e-6
        enc32 = R.load_encoder(os.path.join(OUT_DIR, name))
        tok32, _ = enc32(tensors["in.pixels"])
        print(f"  {name}: fp32 forward vs reference rel err {rel(tok32, tensors['out.token']):.2e}")
        for s, _, _ in INTERP_SIZES:
            tok, _ = enc(tensors["in.pixels_" + s].double())
            assert rel(tok, tensors["out.token_" + s]) < 1e-6


def check_hf_file(name):
    tensors, m = R.load_state_dict_file(os.path.join(OUT_DIR, name))
    enc = R.load_encoder(os.path.join(OUT_DIR, name), prefix="",
                         config=R.encoder_config_from_hf(json.loads(m["hf_config"])))
    with torch.no_grad():
        tok, hid = enc(tensors["in.pixels_interp_down"])
        assert rel(tok, tensors["out.pooler_interp_down"]) < 1e-5


def check_decoder_file(name):
    tensors, m = R.load_state_dict_file(os.path.join(OUT_DIR, name))
    dec = R.load_decoder(os.path.join(OUT_DIR, name))
    x, t, z = tensors["in.x_t"], tensors["in.t"], tensors["in.z"]
    with torch.no_grad():
        d64 = dec.double()
        assert rel(d64(x.double(), t.double(), z.double()), tensors["out.out"]) < 1e-6
        assert rel(d64.velocity(x.double(), t.double(), z.double()), tensors["out.v"]) < 1e-6
    d32 = R.load_decoder(os.path.join(OUT_DIR, name))
    xr, zr = x.clone().requires_grad_(True), z.clone().requires_grad_(True)
    v = d32.velocity(xr, t, zr)
    (v * tensors["in.r"]).sum().backward()
    worst = max(rel(p.grad, tensors["grad.decoder." + n]) for n, p in d32.named_parameters())
    print(f"  {name}: fp32 vs reference: v {rel(v, tensors['out.v']):.2e}, grad x_t {rel(xr.grad, tensors['grad.in.x_t']):.2e}, "
          f"worst param grad {worst:.2e}")


def check_train_file(name):
    path = os.path.join(OUT_DIR, name)
    tensors, m = R.load_state_dict_file(path)
    for dtype in (torch.float64, torch.float32):
        model = R.load_reptok(path, dtype=dtype)
        args = [tensors[k].to(dtype) for k in ("in.pixels_enc", "in.x", "in.t", "in.noise")]
        loss, flow, cosl = model.training_loss(*args, tensors["in.lambda"].to(dtype)[0])
        loss.backward()
        errs = {n: rel(p.grad, tensors["grad." + n]) for n, p in model.trainable_named_parameters()}
        assert set(errs) == {k[5:] for k in tensors if k.startswith("grad.")}
        e = (rel(loss, tensors["out.loss"]), rel(flow, tensors["out.flow_loss"]), rel(cosl, tensors["out.cos_loss"]),
             max(errs.values()))
        if dtype == torch.float64:
            assert max(e) < 1e-6, e
        else:
            print(f"  {name}: fp32 vs reference: loss {e[0]:.2e} flow {e[1]:.2e} cos {e[2]:.2e} worst grad {e[3]:.2e}")


def main(argv=None):
    global OUT_DIR
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=OUT_DIR, help="output folder (default Tests/RepTokModelsTests/Fixtures)")
    OUT_DIR = ap.parse_args(argv).out
    os.makedirs(OUT_DIR, exist_ok=True)
    encoder_fixture("encoder.safetensors", regs=0, seed=1001)
    encoder_fixture("encoder_registers.safetensors", regs=2, seed=1002)
    decoder_fixture("decoder.safetensors", "x", seed=2001)
    decoder_fixture("decoder_v.safetensors", "v", seed=2002)
    decoder_fixture("decoder_skip.safetensors", "x", seed=2003, skip=3)
    decoder_fixture("decoder_skip_input.safetensors", "x", seed=2004, skip=4, skip_input=True)
    _, _ = train_step_fixture("train_step.safetensors", seed=3001)
    hf_fixture("dinov2_hf.safetensors", regs=0, seed=4001)
    hf_fixture("dinov2_registers_hf.safetensors", regs=2, seed=4002)
    print("self-checks:")
    check_encoder_file("encoder.safetensors")
    check_encoder_file("encoder_registers.safetensors")
    check_decoder_file("decoder.safetensors")
    check_decoder_file("decoder_v.safetensors")
    check_decoder_file("decoder_skip.safetensors")
    check_decoder_file("decoder_skip_input.safetensors")
    check_train_file("train_step.safetensors")
    check_hf_file("dinov2_hf.safetensors")
    check_hf_file("dinov2_registers_hf.safetensors")
    print("all fixtures written and checked")


if __name__ == "__main__":
    main()
