#!/usr/bin/env python3
"""How much of a picture's low-resolution layout a token holds LINEARLY (docs/MODEL.md).

Ridge regression from tokens (the codec view, 128 px, through the file's encoder and adapter) to
k x k RGB thumbnails, fit on the training pictures, scored on the validation pictures: PSNR of
the bicubic-upsampled prediction against the 128 px view (best of a few ridge weights), beside the
true thumbnails. Needs the reference venv (tools/results.sh makes one: torch, Pillow, numpy, reptok).

    .build-results/venv/bin/python python/scripts/token_probe.py MODEL.safetensors [MODEL2 ...]
    .build-results/venv/bin/python python/scripts/token_probe.py --random MODEL.safetensors   # a fresh encoder
                                                     # of MODEL's shape (reptok.model.init_encoder, seed 12345)
"""
import json, os, sys
import numpy as np, torch
from reptok import model as R
from reptok.model import init_encoder, load_encoder_file
from reptok.resample import model_view
from reptok.rtds import RTDSPack
from PIL import Image
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(1)
def views(path, S):
    ds = RTDSPack(path)
    return np.stack([model_view(ds.pixels(i), S) for i in range(len(ds._w))])
S = 128
tr, va = views(os.path.join(ROOT, "data/train.rtds"), S), views(os.path.join(ROOT, "data/val.rtds"), S)
RANDOM = "--random" in sys.argv
if RANDOM:
    sys.argv.remove("--random")
def tokens(model_path, imgs, adapter=True):
    tensors, meta = R.load_state_dict_file(model_path)
    cfg = json.loads(meta[R.CONFIG_KEY])
    enc = load_encoder_file(model_path, S).eval()
    if RANDOM:
        enc = R.Dinov2Encoder(enc.config).eval()
        init_encoder(enc, 12345)
        adapter = False
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float()
    mean = torch.tensor(cfg["encoder"]["image_mean"]).view(1, 3, 1, 1); std = torch.tensor(cfg["encoder"]["image_std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        c = enc((x / 255 - mean) / std)[0]
        if adapter and "adapter.proj.weight" in tensors:
            c = c + c @ tensors["adapter.proj.weight"].float().T + tensors["adapter.proj.bias"].float()
    return c.double().numpy()
def thumbs(imgs, k):
    return np.stack([np.asarray(Image.fromarray(im).resize((k, k), Image.BOX)) for im in imgs]).reshape(len(imgs), -1) / 255.0
def psnr(a, b): return 10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64))**2, axis=(1, 2, 3)))
for name in sys.argv[1:]:
    ztr, zva = tokens(name, tr), tokens(name, va)
    mu, sd = ztr.mean(0), ztr.std(0) + 1e-8
    Xtr = np.c_[(ztr - mu) / sd, np.ones(len(ztr))]; Xva = np.c_[(zva - mu) / sd, np.ones(len(zva))]
    for k in [4, 8]:
        Ytr = thumbs(tr, k)
        best = None
        for lam in [1, 10, 100, 1000]:
            W = np.linalg.solve(Xtr.T @ Xtr + lam * np.eye(Xtr.shape[1]), Xtr.T @ Ytr)
            P = np.clip(Xva @ W, 0, 1).reshape(len(va), k, k, 3)
            up = np.stack([np.asarray(Image.fromarray((p * 255).round().astype(np.uint8)).resize((S, S), Image.BICUBIC)) for p in P])
            v = psnr(up, va).mean()
            best = max(best or (v, lam), (v, lam))
        print(f"{'random encoder like ' if RANDOM else ''}{name.split('/')[-1]}: ridge token -> {k}x{k} thumbnail, val PSNR {best[0]:.2f} dB (lambda {best[1]})")
# reference: the true thumbnails
for k in [4, 8]:
    P = thumbs(va, k).reshape(len(va), k, k, 3)
    up = np.stack([np.asarray(Image.fromarray((p * 255).round().astype(np.uint8)).resize((S, S), Image.BICUBIC)) for p in P])
    print(f"true {k}x{k} thumbnail: {psnr(up, va).mean():.2f} dB")
