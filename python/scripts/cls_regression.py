#!/usr/bin/env python3
"""How fast the encoder's [CLS] token can LEARN a picture's layout (docs/MODEL.md): supervised
regression of the 8x8 RGB thumbnail from [CLS] (all encoder weights + a linear head, AdamW, batch
32 whole-picture 128 px views with flips), validation PSNR of the bilinearly upsampled prediction
every 100 steps. An upper bound on how fast the tokenizer can put layout into its one token.

    .build-results/venv/bin/python python/scripts/cls_regression.py ssl|random LR STEPS [ENCODER]
      ssl: start from ENCODER (default: the shipped ssl-encoder.safetensors); random: a fresh
      encoder of its shape (reptok.model.init_encoder, seed 12345). One thread; ~1 s per step here.
"""
import os
import sys, json, numpy as np, torch, time
from reptok import model as R
from reptok.model import init_encoder, load_encoder_file
from reptok.resample import model_view
from reptok.rtds import RTDSPack
from PIL import Image
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(1); torch.manual_seed(0)
S = 128
def views(path):
    ds = RTDSPack(path)
    return np.stack([model_view(ds.pixels(i), S) for i in range(len(ds._w))])
tr, va = views(os.path.join(ROOT, "data/train.rtds")), views(os.path.join(ROOT, "data/val.rtds"))
def th(imgs, k=8):
    return np.stack([np.asarray(Image.fromarray(im).resize((k, k), Image.BOX)) for im in imgs]).astype(np.float32) / 255.0
ttr, tva = torch.from_numpy(th(tr)).permute(0, 3, 1, 2), torch.from_numpy(th(va)).permute(0, 3, 1, 2)
path = sys.argv[4] if len(sys.argv) > 4 else os.path.join(ROOT, "Sources/RepTokCodec/Models/ssl-encoder.safetensors")
tensors, meta = R.load_state_dict_file(path)
cfg = json.loads(meta[R.CONFIG_KEY])["encoder"]
enc = load_encoder_file(path, S)
if sys.argv[1] == "random": init_encoder(enc, 12345)
mean = torch.tensor(cfg["image_mean"]).view(1, 3, 1, 1); std = torch.tensor(cfg["image_std"]).view(1, 3, 1, 1)
xtr = (torch.from_numpy(tr).permute(0, 3, 1, 2).float() / 255 - mean) / std
xva = (torch.from_numpy(va).permute(0, 3, 1, 2).float() / 255 - mean) / std
head = torch.nn.Linear(cfg["hidden_size"], 192)
opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), lr=float(sys.argv[2]), weight_decay=0.0)
U = R.bilinear_matrix(8, S, torch.float32)
def val():
    with torch.no_grad():
        p = head(enc(xva)[0]).view(-1, 3, 8, 8).clamp(0, 1)
        up = (U @ p @ U.T).clamp(0, 1) * 255
        ref = torch.from_numpy(va).permute(0, 3, 1, 2).float()
        mse = ((up.round() - ref) ** 2).mean(dim=(1, 2, 3))
        return float((10 * torch.log10(255 ** 2 / mse)).mean())
t0 = time.time()
g = torch.Generator().manual_seed(1)
for step in range(int(sys.argv[3]) + 1):
    if step % 100 == 0: print(sys.argv[1], step, f"{val():.2f} dB", f"{time.time() - t0:.0f}s", flush=True)
    idx = torch.randint(0, len(xtr), (32,), generator=g)
    flip = torch.rand(32, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], xtr[idx].flip(-1), xtr[idx]); y = torch.where(flip[:, None, None, None], ttr[idx].flip(-1), ttr[idx])
    loss = ((head(enc(x)[0]).view(-1, 3, 8, 8) - y) ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
