"""PyTorch reference implementation of the reptok model (see docs/ARCHITECTURE.md).

This module is the numerical reference the Swift engine (Sources/RepTokModels) is checked
against, through the fixtures written by python/scripts/make_fixtures.py, and the model the
PyTorch trainer (reptok.train) trains. It depends only on torch (and safetensors for the file
helpers); transformers is used by the tests and the fixture script solely to prove that
`Dinov2Encoder` matches Hugging Face's `Dinov2Model` / `Dinov2WithRegistersModel`.

Parts:
  Dinov2Encoder(config)  HF Dinov2Model(WithRegisters) with identical (checkpoint) key names.
  Adapter(dim)           z = c + proj(c), proj zero-initialized.
  FlowDecoder(config)    pixel-space flow decoder (adaLN-Zero DiT with one in-context latent token).
  RepTok(config) / RepTok(encoder=, decoder=)
                         the tokenizer: encoder + frozen reference + adapter + decoder, with the
                         reference loss (`training_loss`) and the trainer's objective (`forward`,
                         TokenizerObjective: token noise, autocast, DDP) and tune modes (setTune).
  init_encoder / init_decoder / load_encoder_file / parse_tune: the trainer's initialization.
  save_reptok / load_reptok / load_encoder / load_decoder / load_state_dict_file / reptok_metadata:
                         combined-file helpers.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .modelfile import CONFIG_KEY, FORMAT, VERSION

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# ----------------------------------------------------------------------------------------------
# configs

ENCODER_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "mlp_ratio": 4,
    "patch_size": 14,
    "image_size": 518,
    "num_channels": 3,
    "layer_norm_eps": 1e-6,
    "layerscale_value": 1.0,
    "qkv_bias": True,
    "use_swiglu_ffn": False,
    "num_register_tokens": 0,
    "hidden_act": "gelu",
    "image_mean": IMAGENET_MEAN,
    "image_std": IMAGENET_STD,
}

DECODER_DEFAULTS: dict[str, Any] = {
    "image_size": 256,
    "patch_size": 16,
    "width": 768,
    "depth": 12,
    "num_heads": 12,
    "mlp_ratio": 4,
    "token_dim": 768,
    "freq_dim": 256,
    "prediction": "x",
    "t_eps": 0.05,
    "layer_norm_eps": 1e-6,
}


def encoder_config(cfg: dict | None = None, **kw) -> dict:
    """Fill an encoder config (HF Dinov2Config field names) with defaults; unknown HF fields are kept."""
    out = dict(ENCODER_DEFAULTS)
    out.update(cfg or {})
    out.update(kw)
    if out.get("num_register_tokens") is None:
        out["num_register_tokens"] = 0
    if out["use_swiglu_ffn"]:
        raise ValueError("use_swiglu_ffn=True is not supported")
    if out["hidden_act"] != "gelu":
        raise ValueError("only hidden_act='gelu' (exact erf GELU) is supported")
    if out["num_channels"] != 3:
        raise ValueError("num_channels must be 3")
    if out["hidden_size"] % out["num_attention_heads"]:
        raise ValueError("hidden_size must be a multiple of num_attention_heads")
    return out


def decoder_config(cfg: dict | None = None, **kw) -> dict:
    out = dict(DECODER_DEFAULTS)
    out.update(cfg or {})
    out.update(kw)
    if out["width"] % 4:
        raise ValueError("decoder width must be a multiple of 4 (2-D sin-cos table)")
    if out["width"] % out["num_heads"]:
        raise ValueError("decoder width must be a multiple of num_heads")
    if out["image_size"] % out["patch_size"]:
        raise ValueError("decoder image_size must be a multiple of patch_size")
    if out["freq_dim"] % 2:
        raise ValueError("freq_dim must be even")
    if out["prediction"] not in ("x", "v"):
        raise ValueError("prediction must be 'x' or 'v'")
    # latent skip: written only when set (as the Swift config does), 0 = none
    k = int(out.get("skip_size", 0))
    if not (0 <= k <= min(out["image_size"], 64)):
        raise ValueError("skip_size must be in [0, min(image_size, 64)]")
    if k and out["prediction"] != "x":
        raise ValueError("skip_size needs prediction 'x'")
    if not k:
        out.pop("skip_size", None)
    # skip input: the skip picture also embedded as the network's input; written only when true
    if out.get("skip_input", False):
        if not k:
            raise ValueError("skip_input needs skip_size > 0")
        out["skip_input"] = True
    else:
        out.pop("skip_input", None)
    return out


def bilinear_matrix(k: int, s: int, dtype=torch.float64) -> torch.Tensor:
    """[s, k] bilinear interpolation k -> s, half-pixel centres, clamped source coordinate: the
    weights of F.interpolate(mode="bilinear", align_corners=False) along one axis (Swift:
    Ops.bilinearMatrix)."""
    u = torch.zeros(s, k, dtype=torch.float64)
    for j in range(s):
        src = min(max((j + 0.5) * k / s - 0.5, 0.0), float(k - 1))
        i0 = int(math.floor(src))
        i1 = min(i0 + 1, k - 1)
        w1 = src - i0
        u[j, i0] += 1 - w1
        u[j, i1] += w1
    return u.to(dtype)


def encoder_config_from_hf(hf: dict) -> dict:
    """Encoder config from a Hugging Face config.json dict (Dinov2 / Dinov2WithRegisters)."""
    keys = [k for k in ENCODER_DEFAULTS if k not in ("image_mean", "image_std")]
    return encoder_config({k: hf[k] for k in keys if k in hf})


# ----------------------------------------------------------------------------------------------
# shared helpers

def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/p)*(W/p), C*p*p]; patches row-major, features (c, ky, kx)."""
    b, c, h, w = x.shape
    gh, gw = h // p, w // p
    x = x[:, :, : gh * p, : gw * p]
    x = x.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, gh * gw, c * p * p)


def unpatchify(x: torch.Tensor, p: int, gh: int, gw: int, c: int = 3) -> torch.Tensor:
    """Inverse of patchify: [B, gh*gw, c*p*p] -> [B, c, gh*p, gw*p]."""
    b = x.shape[0]
    x = x.reshape(b, gh, gw, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, gh * p, gw * p)


def attention(x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(head_dim)) V with heads as contiguous chunks; returns [B, T, heads*hd]."""
    b, t, _ = q.shape
    hd = q.shape[-1] // heads
    q = q.reshape(b, t, heads, hd).transpose(1, 2)
    k = k.reshape(b, t, heads, hd).transpose(1, 2)
    v = v.reshape(b, t, heads, hd).transpose(1, 2)
    w = torch.softmax((q @ k.transpose(-1, -2)) * (hd ** -0.5), dim=-1)
    return (w @ v).transpose(1, 2).reshape(b, t, heads * hd)


# ----------------------------------------------------------------------------------------------
# encoder: Hugging Face Dinov2Model / Dinov2WithRegistersModel, checkpoint key names

class _PatchEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        p = cfg["patch_size"]
        self.projection = nn.Conv2d(cfg["num_channels"], cfg["hidden_size"], kernel_size=p, stride=p)

    def forward(self, x):
        return self.projection(x).flatten(2).transpose(1, 2)


class _Embeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        n = (cfg["image_size"] // cfg["patch_size"]) ** 2
        self.cfg = cfg
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, d))  # kept for key compatibility, unused
        if cfg["num_register_tokens"] > 0:
            self.register_tokens = nn.Parameter(torch.zeros(1, cfg["num_register_tokens"], d))
        else:
            self.register_tokens = None
        self.patch_embeddings = _PatchEmbeddings(cfg)
        self.position_embeddings = nn.Parameter(torch.zeros(1, n + 1, d))

    def interpolate_pos_encoding(self, num_patches: int, height: int, width: int) -> torch.Tensor:
        pos = self.position_embeddings
        num_positions = pos.shape[1] - 1
        if num_patches == num_positions and height == width:
            return pos
        p = self.cfg["patch_size"]
        gh, gw = height // p, width // p
        side = int(num_positions ** 0.5)
        d = pos.shape[-1]
        patch = pos[:, 1:].reshape(1, side, side, d).permute(0, 3, 1, 2)
        # transformers resizes in float32 (to keep fp16/bf16 models accurate); we resize in the
        # working precision when it is fp32/fp64, which is identical for fp32.
        work = patch.dtype if patch.dtype in (torch.float32, torch.float64) else torch.float32
        patch = F.interpolate(
            patch.to(work), size=(gh, gw), mode="bicubic", align_corners=False,
            antialias=self.cfg["num_register_tokens"] > 0,
        ).to(pos.dtype)
        patch = patch.permute(0, 2, 3, 1).reshape(1, gh * gw, d)
        return torch.cat([pos[:, :1], patch], dim=1)

    def forward(self, pixels, cls_token=None):
        b, _, h, w = pixels.shape
        e = self.patch_embeddings(pixels)
        cls = self.cls_token if cls_token is None else cls_token.reshape(1, 1, -1)
        x = torch.cat([cls.expand(b, -1, -1), e], dim=1)
        x = x + self.interpolate_pos_encoding(e.shape[1], h, w)
        if self.register_tokens is not None:
            x = torch.cat([x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]], dim=1)
        return x


class _SelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.query = nn.Linear(d, d, bias=cfg["qkv_bias"])
        self.key = nn.Linear(d, d, bias=cfg["qkv_bias"])
        self.value = nn.Linear(d, d, bias=cfg["qkv_bias"])


class _AttnOutput(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["hidden_size"])


class _Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.heads = cfg["num_attention_heads"]
        self.attention = _SelfAttention(cfg)
        self.output = _AttnOutput(cfg)

    def forward(self, x):
        a = self.attention
        return self.output.dense(attention(x, a.query(x), a.key(x), a.value(x), self.heads))


class _LayerScale(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.lambda1 = nn.Parameter(cfg["layerscale_value"] * torch.ones(cfg["hidden_size"]))

    def forward(self, x):
        return x * self.lambda1


class _MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class _Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.attention = _Attention(cfg)
        self.layer_scale1 = _LayerScale(cfg)
        self.norm2 = nn.LayerNorm(d, eps=eps)
        self.mlp = _MLP(d, int(d * cfg["mlp_ratio"]))
        self.layer_scale2 = _LayerScale(cfg)

    def forward(self, h):
        h = h + self.layer_scale1(self.attention(self.norm1(h)))
        return h + self.layer_scale2(self.mlp(self.norm2(h)))


class _Layers(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([_Layer(cfg) for _ in range(cfg["num_hidden_layers"])])


class Dinov2Encoder(nn.Module):
    """HF Dinov2Model (num_register_tokens == 0) or Dinov2WithRegistersModel (> 0).

    state_dict() keys are exactly those of a Hugging Face checkpoint file (`embeddings.cls_token`,
    `encoder.layer.{i}.attention.attention.query.weight`, ..., `layernorm.bias`).
    forward(pixels) -> (token [B, D] = layernorm(h)[:, 0], last_hidden_state [B, T, D]).
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = encoder_config(config)
        self.embeddings = _Embeddings(self.config)
        self.encoder = _Layers(self.config)
        self.layernorm = nn.LayerNorm(self.config["hidden_size"], eps=self.config["layer_norm_eps"])

    def forward(self, pixels: torch.Tensor, cls_token: torch.Tensor | None = None):
        """`cls_token` ([D] or [1,1,D]) replaces embeddings.cls_token when given (frozen copy)."""
        h = self.embeddings(pixels, cls_token)
        for layer in self.encoder.layer:
            h = layer(h)
        out = self.layernorm(h)
        return out[:, 0], out


# ----------------------------------------------------------------------------------------------
# adapter

class Adapter(nn.Module):
    """TokenAdapter (Sources/RepTokModels/RepTokModel.swift): z = c + proj(c), proj a
    zero-initialized Linear(D, D); with a layout path (layout_dim m > 0) the token is
    [c + proj(c), layout(coarse(x))]: the decoder-space view x [B, 3, S, S] box-averaged to
    k x k (channel-major, [B, 3 k^2]) times `layout.weight` [m, 3 k^2] plus `layout.bias`."""

    def __init__(self, dim: int, layout_dim: int = 0, layout_size: int = 0):
        super().__init__()
        if (layout_dim == 0) != (layout_size == 0) or layout_dim < 0 or layout_size < 0:
            raise ValueError(f"layout {layout_dim}/{layout_size}")
        self.dim, self.layout_dim, self.layout_size = dim, layout_dim, layout_size
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        if layout_dim:
            self.layout = nn.Linear(3 * layout_size * layout_size, layout_dim)
            nn.init.zeros_(self.layout.weight)
            nn.init.zeros_(self.layout.bias)
        else:
            self.layout = None

    @property
    def token_dim(self) -> int:
        return self.dim + self.layout_dim

    @staticmethod
    def coarse(x: torch.Tensor, k: int) -> torch.Tensor:
        """TokenAdapter.coarse: box means of x [B, 3, S, S] over (S/k)^2 pixels -> [B, 3 k^2]."""
        b, _, s, _ = x.shape
        if s % k:
            raise ValueError(f"coarse of {list(x.shape)} to {k}")
        return F.avg_pool2d(x, s // k).reshape(b, -1)

    def forward(self, c, x=None):
        ssl = c + self.proj(c)
        if self.layout is None:
            return ssl
        if x is None:
            raise ValueError("an adapter with a layout path needs the picture (decoder space)")
        lay = self.layout(self.coarse(x, self.layout_size).to(ssl.dtype))
        return torch.cat([ssl, lay], dim=-1)


def layout_shape(shape) -> tuple[int, int]:
    """TokenAdapter.layoutShape: (m, k) of an `adapter.layout.weight` shape [m, 3 k^2]; (0, 0) for None."""
    if shape is None:
        return 0, 0
    s = list(shape)
    k = int(round(math.sqrt((s[1] if len(s) == 2 else 0) // 3)))
    if len(s) != 2 or not 1 <= s[0] <= 4096 or not 1 <= k <= 64 or 3 * k * k != s[1]:
        raise ValueError(f"adapter.layout.weight has shape {s}, expected [m, 3 k^2] with k <= 64")
    return s[0], k


# ----------------------------------------------------------------------------------------------
# flow decoder

def timestep_features(t: torch.Tensor, freq_dim: int) -> torch.Tensor:
    """concat(cos(1000 t f_k), sin(1000 t f_k)), f_k = exp(-ln(10000) k / (F/2)), k < F/2."""
    half = freq_dim // 2
    k = torch.arange(half, dtype=t.dtype, device=t.device)
    f = torch.exp(-math.log(10000.0) * k / half)
    a = 1000.0 * t[:, None] * f[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


def sincos_2d(grid_h: int, grid_w: int, width: int, dtype=torch.float64) -> torch.Tensor:
    """P[i*grid_w + j] = concat(sin(i w), cos(i w), sin(j w), cos(j w)), w_k = 10000^(-k/(W/4))."""
    q = width // 4
    k = torch.arange(q, dtype=torch.float64)
    w = 10000.0 ** (-k / q)
    i = torch.arange(grid_h, dtype=torch.float64)[:, None].expand(grid_h, grid_w).reshape(-1)
    j = torch.arange(grid_w, dtype=torch.float64)[None, :].expand(grid_h, grid_w).reshape(-1)
    ai, aj = i[:, None] * w[None], j[:, None] * w[None]
    return torch.cat([torch.sin(ai), torch.cos(ai), torch.sin(aj), torch.cos(aj)], dim=1).to(dtype)


def layer_norm_plain(x: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


class _TEmbed(nn.Module):
    def __init__(self, f, w):
        super().__init__()
        self.fc1 = nn.Linear(f, w)
        self.fc2 = nn.Linear(w, w)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


class _DecAttn(nn.Module):
    def __init__(self, w, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(w, 3 * w)
        self.proj = nn.Linear(w, w)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(attention(x, q, k, v, self.heads))


class _DecBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        w = cfg["width"]
        self.eps = cfg["layer_norm_eps"]
        self.ada = nn.Linear(w, 6 * w)
        self.attn = _DecAttn(w, cfg["num_heads"])
        self.mlp = _MLP(w, int(w * cfg["mlp_ratio"]))

    def forward(self, h, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c))[:, None].chunk(6, dim=-1)
        h = h + g1 * self.attn(layer_norm_plain(h, self.eps) * (1 + sc1) + sh1)
        return h + g2 * self.mlp(layer_norm_plain(h, self.eps) * (1 + sc2) + sh2)


class _Final(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        w, p = cfg["width"], cfg["patch_size"]
        self.eps = cfg["layer_norm_eps"]
        self.ada = nn.Linear(w, 2 * w)
        self.linear = nn.Linear(w, 3 * p * p)

    def forward(self, h, c):
        sh, sc = self.ada(F.silu(c))[:, None].chunk(2, dim=-1)
        return self.linear(layer_norm_plain(h, self.eps) * (1 + sc) + sh)


class FlowDecoder(nn.Module):
    """Pixel-space flow decoder. forward(x_t, t, z) -> raw output `out` [B,3,S,S]."""

    def __init__(self, config: dict):
        super().__init__()
        cfg = self.config = decoder_config(config)
        w, p, s = cfg["width"], cfg["patch_size"], cfg["image_size"]
        self.grid = s // p
        self.patch_embed = nn.Linear(3 * p * p, w)
        self.latent_embed = nn.Linear(cfg["token_dim"], w)
        self.t_embed = _TEmbed(cfg["freq_dim"], w)
        self.blocks = nn.ModuleList([_DecBlock(cfg) for _ in range(cfg["depth"])])
        self.final = _Final(cfg)
        k = cfg.get("skip_size", 0)
        # latent skip: token -> k x k RGB, bilinearly upsampled, added to the predicted image
        self.latent_skip = nn.Linear(cfg["token_dim"], 3 * k * k) if k else None
        # skip input: the skip picture's patches through their own embedding, added to the patch rows
        self.skip_embed = nn.Linear(3 * p * p, w) if cfg.get("skip_input", False) else None
        self.register_buffer("pos", sincos_2d(self.grid, self.grid, w, torch.float32), persistent=False)
        self.register_buffer("skip_up", bilinear_matrix(k, s, torch.float32) if k else None, persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        """Xavier-uniform weights, zero biases; adaLN-Zero: ada, final.ada, final.linear zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for blk in self.blocks:
            nn.init.zeros_(blk.ada.weight)
            nn.init.zeros_(blk.ada.bias)
        for m in (self.final.ada, self.final.linear) + tuple(x for x in (self.latent_skip, self.skip_embed) if x is not None):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def _apply(self, fn, *args, **kwargs):
        # keep the fixed table in full precision of the module dtype (recomputed, not cast)
        out = super()._apply(fn, *args, **kwargs)
        self.pos = sincos_2d(self.grid, self.grid, self.config["width"], self.patch_embed.weight.dtype).to(
            self.patch_embed.weight.device)
        if self.latent_skip is not None:
            self.skip_up = bilinear_matrix(self.config["skip_size"], self.config["image_size"],
                                           self.patch_embed.weight.dtype).to(self.patch_embed.weight.device)
        return out

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        p = self.config["patch_size"]
        c = self.t_embed(timestep_features(t.to(x_t.dtype), self.config["freq_dim"]))
        lat = self.latent_embed(z)[:, None]
        up = None
        if self.latent_skip is not None:
            k = self.config["skip_size"]
            low = self.latent_skip(z).view(z.shape[0], 3, k, k)
            up = self.skip_up @ low @ self.skip_up.T
        pe = self.patch_embed(patchify(x_t, p))
        if self.skip_embed is not None:
            pe = pe + self.skip_embed(patchify(up, p))
        h = torch.cat([lat, pe + self.pos], dim=1)
        for blk in self.blocks:
            h = blk(h, c)
        o = self.final(h[:, 1:], c)
        img = unpatchify(o, p, self.grid, self.grid)
        if up is not None:
            img = img + up
        return img

    def to_velocity(self, x_t, t, out):
        if self.config["prediction"] == "v":
            return out
        den = torch.clamp(t.to(x_t.dtype), min=self.config["t_eps"])
        return (x_t - out) / den[:, None, None, None]

    def velocity(self, x_t, t, z):
        return self.to_velocity(x_t, t, self.forward(x_t, t, z))


# ----------------------------------------------------------------------------------------------
# full model

class RepTok(nn.Module):
    """The tokenizer: encoder (trainable [CLS] input embedding, or more with `set_tune`), frozen
    reference, adapter and decoder (RepTokModel in Sources/RepTokTrain).

    Built from a config (`RepTok({"encoder": ..., "decoder": ...})`, fresh modules) or from
    existing modules (`RepTok(encoder=enc, decoder=dec)`; the adapter is always new, zero).

    The frozen reference holds the ORIGINAL encoder: with tune 'cls' only
    embeddings.cls_token of the encoder ever changes, so the frozen reference is the encoder itself
    with its [CLS] embedding replaced by the buffer `frozen_cls_token` (saved as
    `frozen.cls_token`); with 'last:K' / 'all' `set_tune` also keeps a frozen copy of the whole
    encoder (`frozen_encoder`, saved in checkpoints as `frozen.encoder.*`).

    `training_loss` is the reference formula on explicit encoder pixels (the conformance
    fixtures); `forward` is the trainer's objective (TokenizerObjective.lossAndGradients).
    """

    def __init__(self, config: dict | None = None, *, encoder: Dinov2Encoder | None = None,
                 decoder: FlowDecoder | None = None, layout_dim: int = 0, layout_size: int = 0):
        super().__init__()
        m = layout_dim
        if config is not None:
            if encoder is not None or decoder is not None:
                raise ValueError("give a config or the encoder and decoder modules, not both")
            ecfg, dcfg = encoder_config(config["encoder"]), decoder_config(config["decoder"])
            self.encoder = Dinov2Encoder(ecfg)
            d = self.encoder.config["hidden_size"]
            if dcfg["token_dim"] != d + m:
                raise ValueError("decoder token_dim must equal encoder hidden_size + layout_dim")
            self.adapter = Adapter(d, layout_dim, layout_size)
            self.decoder = FlowDecoder(dcfg)
        else:
            if encoder is None or decoder is None:
                raise ValueError("give a config, or both encoder and decoder")
            d = encoder.config["hidden_size"]
            if decoder.config["token_dim"] != d + m:
                raise ValueError("decoder token_dim must equal encoder hidden_size + layout_dim")
            self.encoder = encoder
            self.adapter = Adapter(d, layout_dim, layout_size)
            self.decoder = decoder
        self.config = {"encoder": self.encoder.config, "decoder": self.decoder.config}
        self.register_buffer("frozen_cls_token", self.encoder.embeddings.cls_token.detach().clone())
        self._frozen = [None]    # frozen encoder copy (tune last:K / all), not a registered module
        e = self.encoder.config
        self.register_buffer("img_mean", torch.tensor(e["image_mean"], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("img_std", torch.tensor(e["image_std"], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    @property
    def frozen_encoder(self):
        return self._frozen[0]

    def reset_frozen(self):
        """Snapshot the current encoder [CLS] embedding as the frozen one (call after loading SSL weights)."""
        self.frozen_cls_token = self.encoder.embeddings.cls_token.detach().clone()

    def named_weights(self):
        """(checkpoint key, parameter) in the Swift order: encoder, adapter, decoder."""
        out = []
        for prefix, m in (("encoder.", self.encoder), ("adapter.", self.adapter), ("decoder.", self.decoder)):
            out += [(prefix + k, p) for k, p in m.named_parameters()]
        return out

    def set_trainable(self, mode: str = "cls", k: int = 0):
        """requires_grad only: the [CLS] embedding ('none': not even that), `last` adds the last k
        blocks and the final norm, `all` the whole encoder but the mask token; adapter and decoder
        always. The frozen reference is left as it is."""
        if mode not in ("cls", "none", "last", "all"):
            raise ValueError("tune must be 'cls', 'none', 'last' (with k) or 'all'")
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.embeddings.cls_token.requires_grad_(mode != "none")
        if mode == "last":
            for layer in self.encoder.encoder.layer[-k:]:
                for p in layer.parameters():
                    p.requires_grad_(True)
            for p in self.encoder.layernorm.parameters():
                p.requires_grad_(True)
        elif mode == "all":
            for p in self.encoder.parameters():
                p.requires_grad_(True)
            self.encoder.embeddings.mask_token.requires_grad_(False)
        for p in list(self.adapter.parameters()) + list(self.decoder.parameters()):
            p.requires_grad_(True)

    def set_tune(self, mode: str = "cls", k: int = 0):
        """RepTokModel.setTune: `set_trainable(mode, k)`, and the frozen reference becomes the
        CURRENT encoder (its [CLS] embedding; for 'last' / 'all' a frozen copy of the encoder)."""
        self.set_trainable(mode, k)
        with torch.no_grad():
            self.frozen_cls_token.copy_(self.encoder.embeddings.cls_token)
        if mode in ("cls", "none"):
            self._frozen[0] = None
        else:
            fe = copy.deepcopy(self.encoder)
            for p in fe.parameters():
                p.requires_grad_(False)
            self._frozen[0] = fe

    def trainable_named_parameters(self):
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def normalize(self, x):
        """The encoder's input for decoder-space pixels x in [-1, 1]: ((x + 1) 127.5 / 255 - mean) / std."""
        return ((x + 1) * 127.5 / 255 - self.img_mean) / self.img_std

    def encode_pixels255(self, px):
        """The latent z of pixels in [0, 255] ([B, 3, S, S], e.g. the codec's model view);
        TokenAdapter.latent: the layout path reads px / 127.5 - 1."""
        c = self.encoder((px / 255 - self.img_mean) / self.img_std)[0]
        return self.adapter(c, px / 127.5 - 1 if self.adapter.layout is not None else None)

    def encode(self, pixels_enc, x=None):
        """The latent z = adapter(encoder token) of encoder-normalized pixels (x: the same view in
        decoder space, read by the layout path)."""
        return self.adapter(self.encoder(pixels_enc)[0], x)

    def frozen_token(self, pixels_enc):
        with torch.no_grad():
            fe = self.frozen_encoder
            if fe is not None:
                return fe(pixels_enc)[0]
            return self.encoder(pixels_enc, cls_token=self.frozen_cls_token)[0]

    def training_loss(self, pixels_enc, x, t, noise, lam, tune: str = "cls", return_z: bool = False):
        """The reference loss (loss, flow_loss, cos_loss): flow = mean((v - (noise - x))^2),
        cos = mean_b(1 - cos(z, c0)); sets requires_grad for `tune` (the frozen reference stays)."""
        self.set_trainable(tune)
        c = self.encoder(pixels_enc)[0]
        c0 = self.frozen_token(pixels_enc)
        z = self.adapter(c)
        tb = t.to(x.dtype)[:, None, None, None]
        x_t = (1 - tb) * x + tb * noise
        v = self.decoder.velocity(x_t, t, z)
        flow = torch.mean((v - (noise - x)) ** 2)
        cos = (z * c0).sum(-1) / (z.norm(dim=-1) * c0.norm(dim=-1))
        cos_loss = torch.mean(1 - cos)
        loss = flow + lam * cos_loss
        if return_z:
            return loss, flow, cos_loss, z
        return loss, flow, cos_loss

    def forward(self, x, t, noise, tn_draw, tn_rel: float, lam: float, amp: torch.dtype | None, world: int,
                layout_keep: torch.Tensor | None = None):
        """The trainer's objective (loss, flow, cos, token noise std): TokenizerObjective.lossAndGradients.
        x: decoder-space views [B, 3, S, S]; token noise `z + sigma tn_draw` ([B, D + m]) with sigma =
        tn_rel x RMS_d std_b(z) over the GLOBAL batch (all-gathered over `world` processes).
        With a layout path the cosine term compares the whole token with the frozen SSL token
        padded with m zeros (RepTokModel.paddedTarget); `layout_keep` [B] (ints): sample b's
        decoder sees only its first layout_keep[b] layout coordinates (the rest zero, no gradient)."""
        ac = torch.autocast(device_type=x.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
        with ac:
            pe = self.normalize(x)
            with torch.no_grad():
                fe = self.frozen_encoder
                c0 = fe(pe)[0] if fe is not None else self.encoder(pe, cls_token=self.frozen_cls_token)[0]
            c = self.encoder(pe)[0]
            z = self.adapter(c, x if self.adapter.layout is not None else None).float()
        c0 = c0.float()
        m = self.adapter.layout_dim
        if m:
            c0 = torch.cat([c0, c0.new_zeros(c0.shape[0], m)], dim=-1)
        std = torch.zeros((), device=x.device)
        zn = z
        if tn_rel > 0:
            zd = z.detach()
            if world > 1:
                parts = [torch.empty_like(zd) for _ in range(world)]
                dist.all_gather(parts, zd.contiguous())
                zd = torch.cat(parts, 0)
            if zd.shape[0] >= 2:
                var = zd.double().var(dim=0, unbiased=True)
                std = (tn_rel * var.mean().sqrt()).float()
                zn = z + std * tn_draw
        if m and layout_keep is not None:
            d = self.adapter.dim
            col = torch.arange(z.shape[1], device=z.device)[None]
            keep = layout_keep.to(z.device).clamp_min(0)[:, None]
            zn = zn * ((col < d) | (col - d < keep)).to(zn.dtype)
        tb = t.view(-1, 1, 1, 1)
        xt = (1 - tb) * x + tb * noise
        with ac:
            out = self.decoder(xt, t, zn)
        v = self.decoder.to_velocity(xt, t, out.float())
        flow = torch.mean((v - (noise - x)) ** 2)
        na = z.norm(dim=-1).clamp_min(1e-8)
        nb = c0.norm(dim=-1).clamp_min(1e-8)
        cos = torch.mean(1 - (z * c0).sum(-1) / (na * nb))
        return flow + lam * cos, flow.detach(), cos.detach(), std.detach()


# ----------------------------------------------------------------------------------------------
# the trainer's initialization (RepTokTrain: Dinov2Encoder.initialize, FlowDecoder.initialize,
# TokenizerTrainer.loadEncoder) and attention kernels

def sdpa_attention(x, q, k, v, heads):
    """`attention` through F.scaled_dot_product_attention (same math, fused kernels)."""
    b, t, _ = q.shape
    hd = q.shape[-1] // heads
    q, k, v = (y.reshape(b, t, heads, hd).transpose(1, 2) for y in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, heads * hd)


_reference_attention = attention


def set_attention(kind: str):
    """Select the attention of every encoder and decoder layer: 'math' (the reference `attention`,
    the default) or 'sdpa' (`sdpa_attention`). Module-wide."""
    global attention
    if kind not in ("math", "sdpa"):
        raise ValueError("attention must be 'math' or 'sdpa'")
    attention = sdpa_attention if kind == "sdpa" else _reference_attention


def init_encoder(enc: Dinov2Encoder, seed: int):
    """Dinov2Encoder.initialize: truncated normal(0.02) weights and embeddings, zero biases, unit
    norms, LayerScale at layerscale_value, zero mask token."""
    g = torch.Generator().manual_seed(seed & (2 ** 63 - 1))
    ls = enc.config["layerscale_value"]
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
            elif "norm" in name:
                p.fill_(1)
            elif "layer_scale" in name:
                p.fill_(ls)
            elif name == "embeddings.mask_token":
                p.zero_()
            else:
                p.copy_(torch.nn.init.trunc_normal_(torch.empty(p.shape), std=0.02, a=-0.04, b=0.04, generator=g))


def init_decoder(dec: FlowDecoder, seed: int):
    """FlowDecoder.initialize: Xavier weights, zero biases, adaLN-Zero, t_embed weights normal(0.02)."""
    torch.manual_seed(seed & (2 ** 63 - 1))
    dec.reset_parameters()
    with torch.no_grad():
        dec.t_embed.fc1.weight.normal_(0, 0.02)
        dec.t_embed.fc2.weight.normal_(0, 0.02)


def load_encoder_file(path: str, S: int) -> Dinov2Encoder:
    """TokenizerTrainer.loadEncoder: encoder.* + reptok.config's encoder part; the position table
    is resampled once (the encoder's own bicubic interpolation) when image_size differs from S."""
    tensors, meta = load_state_dict_file(path)
    if CONFIG_KEY not in meta:
        raise SystemExit(f"{path}: no reptok.config metadata")
    cfg = encoder_config(json.loads(meta[CONFIG_KEY])["encoder"])
    if S % cfg["patch_size"]:
        raise SystemExit(f"image size {S} is not a multiple of the encoder's patch {cfg['patch_size']}")
    src = Dinov2Encoder(cfg)
    sd = {k: tensors["encoder." + k].float() for k in src.state_dict()}
    extra = [k for k in tensors if k.startswith("encoder.") and k[8:] not in sd]
    if extra:
        raise SystemExit(f"{path}: unexpected tensors {extra[:5]}")
    src.load_state_dict(sd)
    if cfg["image_size"] == S:
        return src
    g = S // cfg["patch_size"]
    with torch.no_grad():
        table = src.embeddings.interpolate_pos_encoding(g * g, S, S)
    dst = Dinov2Encoder(dict(cfg, image_size=S))
    sd2 = dict(sd)
    sd2["embeddings.position_embeddings"] = table.detach().clone()
    dst.load_state_dict(sd2)
    return dst


def parse_tune(s: str):
    """'cls' | 'last:K' | 'all' -> (mode, K) for `RepTok.set_tune`."""
    if s in ("cls", "all"):
        return s, 0
    if s.startswith("last:") and s[5:].isdigit() and int(s[5:]) >= 1:
        return "last", int(s[5:])
    raise SystemExit(f"--tune must be cls, last:K or all (got {s})")


# ----------------------------------------------------------------------------------------------
# safetensors helpers

def reptok_metadata(encoder: dict | None = None, decoder: dict | None = None, **extra) -> dict:
    """`__metadata__` dict with `reptok.config` = JSON {format, version, encoder, decoder, ...}."""
    cfg: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if encoder is not None:
        cfg["encoder"] = encoder
    if decoder is not None:
        cfg["decoder"] = decoder
    cfg.update(extra)
    return {CONFIG_KEY: json.dumps(cfg, sort_keys=True)}


def prefixed_state(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in module.state_dict().items()}


def reptok_state(model: RepTok, include_frozen: bool = True) -> dict[str, torch.Tensor]:
    sd = {}
    sd.update(prefixed_state("encoder.", model.encoder))
    sd.update(prefixed_state("adapter.", model.adapter))
    sd.update(prefixed_state("decoder.", model.decoder))
    if include_frozen:
        sd["frozen.cls_token"] = model.frozen_cls_token
    return sd


_ST_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def save_tensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None,
                 dtype=torch.float32):
    """Write a safetensors file byte-reproducibly: tensors sorted by name, header keys sorted
    (safetensors.torch.save_file orders `__metadata__` arbitrarily). Floating tensors are cast to
    `dtype`. The result is a standard safetensors file."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu()
        if t.is_floating_point():
            t = t.to(dtype)
        t = t.contiguous()
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_state_dict_file(path: str):
    """(tensors, metadata) of a safetensors file."""
    from safetensors import safe_open
    tensors = {}
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, meta


def save_reptok(path: str, model: RepTok, include_frozen: bool = True, extra_tensors: dict | None = None,
                extra_metadata: dict[str, str] | None = None):
    sd = reptok_state(model, include_frozen)
    sd.update(extra_tensors or {})
    meta = reptok_metadata(model.config["encoder"], model.config["decoder"])
    meta.update(extra_metadata or {})
    save_tensors(path, sd, meta)


def load_reptok(path: str, dtype=torch.float32) -> RepTok:
    tensors, meta = load_state_dict_file(path)
    cfg = json.loads(meta[CONFIG_KEY])
    if cfg.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    m, k = layout_shape(tensors["adapter.layout.weight"].shape if "adapter.layout.weight" in tensors else None)
    model = RepTok(cfg, layout_dim=m, layout_size=k)
    _load_part(model.encoder, tensors, "encoder.")
    _load_part(model.adapter, tensors, "adapter.")
    _load_part(model.decoder, tensors, "decoder.")
    if "frozen.cls_token" in tensors:
        model.frozen_cls_token = tensors["frozen.cls_token"].clone()
    else:
        model.reset_frozen()
    return model.to(dtype)


def _load_part(module: nn.Module, tensors: dict, prefix: str) -> nn.Module:
    """Load `prefix`+name for every key of the module (all must be present); other keys are ignored."""
    want = module.state_dict().keys()
    missing = [k for k in want if prefix + k not in tensors]
    if missing:
        raise KeyError(f"missing tensors: {[prefix + k for k in missing]}")
    module.load_state_dict({k: tensors[prefix + k] for k in want})
    return module


def load_encoder(path: str, prefix: str = "encoder.", config: dict | None = None) -> Dinov2Encoder:
    """Encoder from a combined file (prefix 'encoder.') or a bare HF checkpoint (prefix '', config
    from its config.json via encoder_config_from_hf)."""
    tensors, meta = load_state_dict_file(path)
    if config is None:
        config = json.loads(meta[CONFIG_KEY])["encoder"]
    return _load_part(Dinov2Encoder(config), tensors, prefix)


def load_decoder(path: str, prefix: str = "decoder.", config: dict | None = None) -> FlowDecoder:
    tensors, meta = load_state_dict_file(path)
    if config is None:
        config = json.loads(meta[CONFIG_KEY])["decoder"]
    return _load_part(FlowDecoder(config), tensors, prefix)


__all__ = [
    "Dinov2Encoder", "Adapter", "layout_shape", "FlowDecoder", "RepTok", "patchify", "unpatchify", "timestep_features",
    "sincos_2d", "bilinear_matrix", "attention", "sdpa_attention", "set_attention", "encoder_config",
    "decoder_config", "encoder_config_from_hf", "reptok_metadata", "reptok_state", "save_tensors",
    "load_state_dict_file", "save_reptok", "load_reptok", "load_encoder", "load_decoder", "init_encoder",
    "init_decoder", "load_encoder_file", "parse_tune", "CONFIG_KEY", "FORMAT", "VERSION", "IMAGENET_MEAN",
    "IMAGENET_STD", "ENCODER_DEFAULTS", "DECODER_DEFAULTS",
]
