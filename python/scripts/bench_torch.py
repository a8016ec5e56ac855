#!/usr/bin/env python3
"""The PyTorch side of the engine benchmark (see tools/bench.sh; needs `pip install -e python[train]`).

Runs the network rtbench runs, with the weights rtbench saved (--save-weights), in PyTorch CPU
with the same thread count: decoder forward at batch 1 and 8, and one tokenizer training step
(encoder with a trainable [CLS] embedding + adapter + decoder, batch 8). Median of warm runs.
Attention: --attention eager (matmul + softmax, the reference) or sdpa
(torch.nn.functional.scaled_dot_product_attention, PyTorch's fused kernel).
Prints JSON.
"""
import argparse
import json
import statistics
import time

import torch

from reptok import model as rt


def median_time(fn, runs):
    fn()
    ts = []
    for _ in range(max(runs, 5)):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", help="safetensors written by rtbench --save-weights")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--attention", choices=["eager", "sdpa"], default="sdpa")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.attention == "sdpa":
        rt.set_attention("sdpa")
    tensors, meta = rt.load_state_dict_file(a.weights)
    cfg = json.loads(meta[rt.CONFIG_KEY])
    dec = rt.load_decoder(a.weights).eval()
    d = cfg["decoder"]
    s = d["image_size"]
    rows = []
    with torch.inference_mode():
        for b in (1, 8):
            x = torch.randn(b, 3, s, s)
            z = torch.randn(b, d["token_dim"])
            t = torch.full((b,), 0.5)
            sec = median_time(lambda: dec(x, t, z), a.runs)
            rows.append({"name": f"decoder forward, batch {b}", "seconds": sec})
    model = rt.RepTok(cfg)
    model.decoder.load_state_dict(dec.state_dict())
    model.train()
    b = 8
    px = torch.randn(b, 3, s, s)
    noise = torch.randn(b, 3, s, s)
    t = torch.arange(1, b + 1, dtype=torch.float32) / (b + 1)
    model.set_tune("cls")
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        for p in params:
            p.grad = None
        loss, _, _ = model.training_loss(px, px, t, noise, 0.1)
        loss.backward()

    rows.append({"name": "train step, batch 8", "seconds": median_time(step, a.runs)})
    print(json.dumps({"torch": torch.__version__, "threads": a.threads, "attention": a.attention,
                      "rows": rows}, sort_keys=True))


if __name__ == "__main__":
    main()
