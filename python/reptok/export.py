"""The export of a trained tokenizer to a model file (Sources/RepTokTrain/Export.swift, the first
quantizer kind): tokens of every training picture's codec view, the PCA quantizer and its zstd
dictionary, the base step by the byte budget and the quality rule, the file as `CodecModel`
loads it, checked and reloaded.
"""

from __future__ import annotations

import copy
import json
import math
import os

import numpy as np
import torch

from ._floats import f32, f32_json
from .model import RepTok, load_reptok
from .modelfile import CONFIG_KEY, config_json, fingerprint, read_header, write_safetensors
from .modelfile import QuantizerKey as K
from .quantizer import LEVELS, Quantizer, record_bytes
from .resample import model_view, quantize_u8
from .rng import philox_gaussians
from .rtds import open_pictures
from .zstd import zstd

__all__ = ["export_model", "verify_model_file", "tokens_of", "decode_tokens", "philox_noise_image", "mean_psnr",
           "default_val_path"]


@torch.no_grad()
def tokens_of(model: RepTok, ds, S: int, device, limit: int | None = None, batch: int = 64) -> np.ndarray:
    """Latents z of every picture's codec view (whole picture squashed to S x S), float32."""
    idx = list(range(ds.count))
    if limit and limit < len(idx):
        idx = [int(round(i * (ds.count - 1) / max(limit - 1, 1))) for i in range(limit)]
    out = []
    for i in range(0, len(idx), batch):
        views = [model_view(np.asarray(ds.pixels(j)), S) for j in idx[i:i + batch]]
        px = torch.from_numpy(np.stack(views).transpose(0, 3, 1, 2).astype(np.float32)).to(device)
        out.append(model.encode_pixels255(px).float().cpu().numpy())
    return np.concatenate(out, 0) if out else np.zeros((0, model.encoder.config["hidden_size"]), np.float32)


def philox_noise_image(S: int, seed: int = 0) -> torch.Tensor:
    return philox_gaussians(seed, 0, 0, 3 * S * S).view(1, 3, S, S)


@torch.no_grad()
def decode_tokens(model: RepTok, z: np.ndarray, S: int, steps: int, sampler: str, device, batch: int = 64):
    """Codec.decodeRaw with the record's noise (seed 0) for every token: uint8 [n, 3, S, S]."""
    noise = philox_noise_image(S).to(device)
    ts = [f32(1 - np.float32(i) / np.float32(steps)) for i in range(steps + 1)]
    outs = []
    for i in range(0, len(z), batch):
        zb = torch.from_numpy(z[i:i + batch]).to(device)
        B = zb.shape[0]
        x = noise.expand(B, -1, -1, -1).clone()
        for k in range(steps):
            t0, t1 = ts[k], ts[k + 1]
            h = f32(t1 - t0)
            v0 = model.decoder.velocity(x, torch.full((B,), t0, device=device), zb)
            if sampler == "euler" or k == steps - 1:
                x = x + h * v0
            else:
                xe = x + h * v0
                v1 = model.decoder.velocity(xe, torch.full((B,), t1, device=device), zb)
                x = x + (h / 2) * v0
                x = x + (h / 2) * v1
        outs.append(quantize_u8(((x + 1) * 127.5).float().cpu().numpy()))
    return np.concatenate(outs, 0)


def mean_psnr(decoded: np.ndarray, refs: np.ndarray) -> float:
    """Metrics.psnr averaged over pictures (decoded [n,3,S,S], refs [n,S,S,3])."""
    total = 0.0
    for a, b in zip(decoded, refs):
        mse = float(np.mean((a.transpose(1, 2, 0).astype(np.float64) - b.astype(np.float64)) ** 2))
        total += 99.0 if mse == 0 else 10 * math.log10(255 * 255 / mse)
    return total / max(len(refs), 1)


def export_model(model: RepTok, args, state: dict, device, log) -> dict:
    """The model file as CodecModel loads it (call with the EMA weights in place)."""
    S = model.decoder.config["image_size"]
    model.eval()
    if device.type == "cuda":   # tokens and decodes in full fp32, as the Swift engine computes them
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    weights = dict((k, p.detach()) for k, p in model.named_weights())
    if args.fp16:   # round now, so tokens and the quantizer see exactly what the file holds
        with torch.no_grad():
            for p in weights.values():
                p.copy_(p.half().float())
    train_set = open_pictures(args.data)
    val_path = args.val or default_val_path(args.data)
    if not val_path or not os.path.exists(val_path):
        raise SystemExit("export: no validation data (give --val)")
    val_set = open_pictures(val_path)
    log(f"export: tokens of {train_set.count if not args.fit_limit else min(args.fit_limit, train_set.count)} "
        f"training pictures, {val_set.count} validation pictures")
    train_tokens = tokens_of(model, train_set, S, device, args.fit_limit)
    val_tokens = tokens_of(model, val_set, S, device)
    val_dims = [(val_set.width(i), val_set.height(i)) for i in range(val_set.count)]

    log(f"export: zstd: {zstd().version}")
    pca = Quantizer.fit(train_tokens)
    sigma1 = max(float(pca.sigma[0]), 1e-6)

    def plain(base):
        return Quantizer(pca.mean, pca.rotation, pca.sigma, b"", base)

    def with_dict(base):
        return plain(base).with_dictionary(train_tokens)

    def sizes(q, level):
        return [record_bytes(w, h, len(p)) for (w, h), p in zip(val_dims, q.payloads(val_tokens, level))]

    def fits(q):
        s = sizes(q, args.default_level)
        return sum(x <= args.record_bytes for x in s) >= args.fit_fraction * len(s) - 1e-9

    lo, hi = math.log2(sigma1 * 1e-3), math.log2(sigma1 * 20)
    if not fits(with_dict(f32(2.0 ** hi))):
        raise SystemExit(f"export: even a step of 20 sigma does not fit {args.record_bytes} bytes")
    for _ in range(18):
        mid = (lo + hi) / 2
        if fits(with_dict(f32(2.0 ** mid))):
            hi = mid
        else:
            lo = mid
    budget_step = f32(2.0 ** hi)
    base = budget_step
    knee = None
    refs = np.stack([model_view(np.asarray(val_set.pixels(i)), S) for i in range(val_set.count)])

    def psnr_of(z):
        return mean_psnr(decode_tokens(model, z, S, args.default_steps, args.sampler, device), refs)

    ceiling = psnr_of(val_tokens)    # reported also without the rule
    if args.quality_tolerance > 0:
        chosen = psnr_of(plain(base).dequantized(val_tokens, args.default_level))
        for _ in range(24):
            nxt = f32(np.float32(base) * np.float32(math.sqrt(2.0)))
            p = psnr_of(plain(nxt).dequantized(val_tokens, args.default_level))
            if p < ceiling - args.quality_tolerance:
                break
            base, chosen = nxt, p
        knee = (ceiling, chosen)
        log(f"export: unquantized PSNR {ceiling:.3f} dB; level {args.default_level} at base step {base:.4g}: "
            f"{chosen:.3f} dB")
    q = with_dict(base)
    log(f"export: base step {base:.4g} ({base / sigma1:.3f} sigma_1; the byte budget allows {budget_step:.4g}), "
        f"dictionary {len(q.dictionary)} bytes")

    minutes = int(math.floor(state["wall_seconds"] / 60 + 0.5))
    codec = {"base_step": f32_json(base), "bootstrap": bool(args.bootstrap), "default_level": int(args.default_level),
             "default_sampler": args.sampler, "default_steps": int(args.default_steps),
             "description": args.description.replace("{minutes}", str(minutes))}
    from .train import train_config
    training = {k: v for k, v in train_config(args).items() if v is not None}   # as JSONEncoder: no nulls
    training.update(steps=state["step"], wall_seconds=round(state["wall_seconds"], 1), samples=state["samples"],
                    threads=state["threads"], weights="ema", trainer="reptok.train",
                    world_size=state.get("world_size", 1), device=str(device), torch=torch.__version__)
    meta = {CONFIG_KEY: config_json(model.encoder.config, model.decoder.config, codec=codec, training=training)}
    wdt = torch.float16 if args.fp16 else torch.float32
    tensors = {k: v.to(wdt) for k, v in weights.items()}
    tensors["frozen.cls_token"] = model.frozen_cls_token.detach().to(wdt)
    tensors[K.MEAN] = torch.from_numpy(q.mean.copy())
    tensors[K.ROTATION] = torch.from_numpy(q.rotation.copy())
    tensors[K.SIGMA] = torch.from_numpy(q.sigma.copy())
    tensors[K.DICTIONARY] = torch.frombuffer(bytearray(q.dictionary or b"\0"), dtype=torch.uint8)
    out = args.export_out
    write_safetensors(out, tensors, meta)

    verify_model_file(out, model)
    levels = []
    for L in LEVELS:
        s = sizes(q, L)
        levels.append({"level": L, "mean": round(sum(s) / len(s), 2), "max": max(s), "min": min(s),
                       "within_budget": round(sum(x <= args.record_bytes for x in s) / len(s), 4)})
    size = os.path.getsize(out)
    report = {"path": out, "file_bytes": size, "base_step": f32_json(base), "base_step_in_sigma": round(base / sigma1, 4),
              "budget_step": f32_json(budget_step), "default_level": args.default_level,
              "dictionary_bytes": len(q.dictionary), "zstd": zstd().version, "train_pictures": len(train_tokens),
              "val_pictures": len(val_tokens), "record_budget": args.record_bytes, "predicted_levels": levels,
              "unquantized_psnr": ceiling, "default_level_psnr": knee[1] if knee else None}
    if size <= 256 << 20:
        report["fingerprint"] = fingerprint(out)
    return report


def default_val_path(data: str):
    if os.path.isdir(data):
        return None
    d = os.path.dirname(data)
    p = os.path.join(d if d else ".", "val.rtds")
    return None if os.path.normpath(p) == os.path.normpath(data) else p


def verify_model_file(path: str, model: RepTok):
    """Checks the written file against what CodecModel(path:) requires: every tensor of each part
    with its shape, nothing extra under encoder./adapter./decoder./quantizer., quantizer dtypes,
    a decodable config; then reloads it and compares a token with the live model's."""
    meta, header, _ = read_header(path)
    cfg = json.loads(meta[CONFIG_KEY])
    assert cfg["format"] == "reptok-model" and cfg["version"] == 1
    enc, dec, codec = cfg["encoder"], cfg["decoder"], cfg["codec"]
    assert dec["token_dim"] == enc["hidden_size"] and enc["image_size"] == dec["image_size"]
    assert codec["default_level"] in LEVELS and 1 <= codec["default_steps"] <= 1000
    assert codec["default_sampler"] in ("euler", "heun")
    want = {}
    for prefix, m in (("encoder.", model.encoder), ("adapter.", model.adapter), ("decoder.", model.decoder)):
        for k, v in m.state_dict().items():
            want[prefix + k] = list(v.shape)
    D = enc["hidden_size"]
    for k, shp in want.items():
        assert k in header, f"missing tensor {k}"
        assert header[k]["shape"] == shp, f"{k}: shape {header[k]['shape']} != {shp}"
    for k in header:
        if k.startswith(("encoder.", "adapter.", "decoder.")):
            assert k in want, f"unexpected tensor {k}"
    qk = {K.MEAN: ("F32", [D]), K.ROTATION: ("F32", [D, D]), K.SIGMA: ("F32", [D])}
    for k, (dt, shp) in qk.items():
        assert header[k]["dtype"] == dt and header[k]["shape"] == shp, f"{k}: {header[k]}"
    assert header[K.DICTIONARY]["dtype"] == "U8"
    assert set(k for k in header if k.startswith("quantizer.")) == set(qk) | {K.DICTIONARY}
    back = load_reptok(path)
    S = dec["image_size"]
    g = torch.Generator().manual_seed(1)
    px = torch.randint(0, 256, (2, 3, S, S), generator=g).float()
    live = RepTok(encoder=copy.deepcopy(model.encoder).cpu().float(), decoder=copy.deepcopy(model.decoder).cpu().float())
    live.adapter.load_state_dict({k: v.cpu().float() for k, v in model.adapter.state_dict().items()})
    with torch.no_grad():
        z_live = live.encode_pixels255(px)
        pe = (px / 255 - live.img_mean) / live.img_std
        z_file = back.adapter(back.encoder(pe)[0])
    assert torch.allclose(z_live, z_file, rtol=1e-5, atol=1e-5), "token from the file differs from the live model"
