#!/usr/bin/env python3
"""The torch token of a layout-path codec model against Swift's, through `rttrain eval`'s two
measurements of the UNQUANTIZED token (Eval.swift): its mean cosine to the SSL encoder's [CLS]
token (padded with zeros for the layout coordinates) and the 1-step decode's mean PSNR of the
unquantized tokens on the codec views. Prints the torch numbers as JSON; compare with

    rttrain eval --model MODEL --data data/val.rtds --limit N --ssl-encoder ENC --json

    PYTHONPATH=python python3 python/scripts/layout_token_check.py [--model M] [--data D] [--limit N]
"""
import argparse
import json

import numpy as np
import torch

from reptok.export import decode_tokens, mean_psnr
from reptok.model import load_encoder_file, load_reptok
from reptok.resample import model_view
from reptok.rtds import open_pictures

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="Sources/RepTokCodec/Models/default.safetensors")
ap.add_argument("--ssl-encoder", default="Sources/RepTokCodec/Models/ssl-encoder.safetensors")
ap.add_argument("--data", default="data/val.rtds")
ap.add_argument("--limit", type=int, default=8)
a = ap.parse_args()
torch.set_num_threads(1)
model = load_reptok(a.model).eval()
S = model.decoder.config["image_size"]
ds = open_pictures(a.data)
n = min(a.limit, ds.count)
views = np.stack([model_view(np.asarray(ds.pixels(i)), S) for i in range(n)])     # [n, S, S, 3] uint8
px = torch.from_numpy(views.transpose(0, 3, 1, 2).astype(np.float32))
ssl = load_encoder_file(a.ssl_encoder, S).eval()
with torch.no_grad():
    z = model.encode_pixels255(px).double()
    c0 = ssl(((px / 255 - model.img_mean) / model.img_std))[0].double()
c0p = torch.cat([c0, torch.zeros(n, z.shape[1] - c0.shape[1], dtype=torch.float64)], 1)
cos = float(((z * c0p).sum(1) / (z.norm(dim=1) * c0p.norm(dim=1))).mean())
dec = decode_tokens(model, z.float().numpy(), S, 1, "euler", torch.device("cpu"))
print(json.dumps({"pictures": n, "token_dim": int(z.shape[1]), "token_cosine": cos,
                  "unquantized_psnr_1_step": mean_psnr(dec, views),
                  "layout_rms": float(z[:, model.adapter.dim:].pow(2).mean().sqrt())}))
