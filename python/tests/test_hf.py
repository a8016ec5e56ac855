"""Hugging Face views of a model file (docs/ARCHITECTURE.md, "Using the files from Python"):
the encoder config transformers accepts, the documented `Dinov2Model.from_pretrained` example
(run from the page itself), and the image-processor config against the codec's model view."""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
import pytest
import torch

from reptok.model import load_encoder
from reptok.modelfile import hf_encoder_config, hf_image_processor_config, read_config
from reptok.resample import model_view

from conftest import ROOT


def test_encoder_config_for_transformers(default_model):
    from transformers import Dinov2Config
    raw = read_config(default_model)["encoder"]
    assert raw["layerscale_value"] == 1 and isinstance(raw["layerscale_value"], int)   # as the Swift side writes it
    with pytest.raises(Exception):      # transformers 5.x: strict float field
        Dinov2Config(**raw)
    cfg = Dinov2Config(**hf_encoder_config(default_model))
    assert cfg.layerscale_value == 1.0 and cfg.hidden_size == raw["hidden_size"] and cfg.image_size == raw["image_size"]
    # every accepted form of the source gives the same
    assert hf_encoder_config(raw) == hf_encoder_config(read_config(default_model)) == hf_encoder_config(default_model)


def test_registers_config():
    from transformers import Dinov2WithRegistersConfig
    enc = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4, patch_size=4, image_size=16,
               num_channels=3, layer_norm_eps=1e-6, layerscale_value=1, qkv_bias=True, use_swiglu_ffn=False,
               num_register_tokens=2, hidden_act="gelu", image_mean=[0.5] * 3, image_std=[0.5] * 3)
    cfg = Dinov2WithRegistersConfig(**hf_encoder_config({"encoder": enc}))
    assert cfg.num_register_tokens == 2 and cfg.layerscale_value == 1.0


def _doc_example() -> str:
    text = open(os.path.join(ROOT, "docs", "ARCHITECTURE.md")).read()
    i = text.index("## Using the files from Python")
    blocks = re.findall(r"```python\n(.*?)```", text[i:], re.S)
    assert blocks, "no python example in docs/ARCHITECTURE.md"
    return blocks[0]


def test_documented_from_pretrained_example(default_model, monkeypatch):
    pytest.importorskip("PIL")
    if not os.path.exists(os.path.join(ROOT, "corpus", "02_face_astronaut.png")):
        pytest.skip("no corpus/ here")
    monkeypatch.chdir(ROOT)
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(_doc_example(), "docs/ARCHITECTURE.md", "exec"), ns)
    c, x, z = ns["c"], ns["x"], ns["z"]
    ours = load_encoder(default_model).eval()
    with torch.no_grad():
        ref = ours(x)[0]
    assert ((c - ref).norm() / ref.norm()).item() < 1e-5     # transformers == reptok.model on the same weights
    assert z.shape == c.shape and torch.isfinite(z).all()


def test_image_processor_config_is_the_model_view(default_model):
    pytest.importorskip("PIL")
    from PIL import Image
    from transformers import BitImageProcessor
    from transformers.utils import logging
    logging.set_verbosity_error()
    cfg = hf_image_processor_config(default_model)
    S = cfg["size"]["height"]
    proc = BitImageProcessor(**cfg)
    rs = np.random.default_rng(0)
    yy, xx = np.mgrid[0:150, 0:230]
    im = np.clip(np.stack([xx, yy, xx + yy], -1) * 0.8 + rs.normal(0, 20, (150, 230, 3)), 0, 255).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pv = proc(images=Image.fromarray(im), return_tensors="np")["pixel_values"][0]
    mean, std = np.array(cfg["image_mean"])[:, None, None], np.array(cfg["image_std"])[:, None, None]
    levels = (pv * std + mean) * 255
    ours = model_view(im, S).transpose(2, 0, 1)
    assert levels.shape == ours.shape
    assert np.abs(levels - ours).max() <= 1.01      # Pillow rounds differently, by one level at most
