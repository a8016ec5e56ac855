"""PyTorch trainer for the RepTok tokenizer, for users with GPUs (docs/TRAINING_TORCH.md).

The same recipe as `rttrain tokenizer` (docs/TRAINING.md), run with torchrun /
DistributedDataParallel, writing the same files the Swift tools load:

  * checkpoints (RUN/checkpoint.safetensors) in the layout of Sources/RepTokTrain/Trainer.swift:
    param.<key>, frozen.cls_token, frozen.encoder.* (tune last:K / all), adam.m.<key>,
    adam.v.<key>, ema.<key>, metadata reptok.train (TrainState JSON) + reptok.config;
  * RUN/metrics.jsonl, one line per step (step loss flow cos lr grad_norm token_noise_std
    seconds wall);
  * at the end (rank 0) a codec model file exactly as Sources/RepTokCodec/CodecModel.swift loads
    it: EMA weights (encoder.*, adapter.*, decoder.*, frozen.cls_token; F32 or --fp16),
    quantizer.mean / rotation / sigma (F32), quantizer.dictionary (U8 zstd dictionary) and
    metadata reptok.config = {format, version, encoder, decoder, codec, training}, with the
    base step and default level chosen as Sources/RepTokTrain/Export.swift chooses them.

Randomness mirrors the Swift trainer: every draw of step s (views, t, flow noise, token noise)
comes from Philox4x32-10 keyed by mix64(seed, s) (views: by the seed), so the global batch of a
step does not depend on the number of processes, and --resume continues the same sequence.

  torchrun --standalone --nproc_per_node 8 -m reptok.train --data data/train.rtds \
      --val data/val.rtds --out runs/NAME --encoder ssl_encoder.safetensors --tune cls \
      --batch 256 --steps 100000 --bf16
  reptok-train --fingerprint model.safetensors     # the model's 16-hex-digit id

The parts live in their own modules (reptok.rng, rtds, resample, views, model, quantizer, zstd,
modelfile, export); this one holds the training loop, checkpoints and the command line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import model as rt
from ._floats import f32, f32_json
from .export import export_model
from .model import RepTok, init_decoder, init_encoder, load_encoder_file, parse_tune
from .modelfile import CONFIG_KEY, config_json, fingerprint, read_header, write_safetensors
from .resample import shrink_pictures
from .rng import StepRandom, mix64, philox_gaussians
from .rtds import open_pictures
from .views import ViewConfig, ViewSampler, ViewStream, _worker_init
from .zstd import set_default as set_default_zstd

TRAINER = "reptok.train"   # the `trainer` field of checkpoints and exported files

# ==============================================================================================
# Model

def decay_mask(model: RepTok):
    """Names with AdamW weight decay: weights of Linear layers (the patch projection included)."""
    out = set()
    for prefix, m in (("encoder.", model.encoder), ("adapter.", model.adapter), ("decoder.", model.decoder)):
        for mn, mod in m.named_modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                out.add(prefix + (mn + "." if mn else "") + "weight")
    return out


def warmup_cosine(s: int, peak: float, lo: float, warmup: int, total: int) -> float:
    peak, lo = f32(peak), f32(lo)
    if s < warmup:   # peakLR * Float(s + 1) / Float(warmupSteps), in float32
        return float(np.float32(peak) * np.float32(s + 1) / np.float32(warmup))
    span = max(1, total - warmup)
    p = min(1.0, (s - warmup) / span)
    return f32(lo + (peak - lo) * f32(0.5 * (1 + math.cos(math.pi * p))))


# ==============================================================================================
# safetensors writing (per-tensor dtypes) and the checkpoint

# TrainConfig fields (Sources/RepTokTrain/TrainConfig.swift), snake_case, and the argparse names
TRAIN_FIELDS = [
    ("data", "data"), ("val", "val"), ("encoder_path", "encoder"), ("enc_width", "enc_width"),
    ("enc_depth", "enc_depth"), ("enc_heads", "enc_heads"), ("enc_patch", "enc_patch"), ("tune", "tune"),
    ("lambda", "lam"), ("image_size", "image_size"), ("patch", "patch"), ("width", "width"), ("depth", "depth"),
    ("heads", "heads"), ("prediction", "prediction"), ("skip_size", "skip_size"), ("skip_init_std", "skip_init_std"),
    ("init_from", "init_from"), ("layout_dim", "layout_dim"), ("layout_size", "layout_size"),
    ("layout_share", "layout_share"), ("layout_lr", "layout_lr"), ("layout_init", "layout_init"),
    ("layout_drop", "layout_drop"), ("skip_input", "skip_input"), ("batch", "batch"), ("lr", "lr"), ("min_lr", "min_lr"),
    ("warmup", "warmup"), ("steps", "steps"), ("minutes", "minutes"), ("weight_decay", "weight_decay"),
    ("clip", "clip"), ("ema", "ema"), ("ema_warmup", "ema_warmup"), ("token_noise", "token_noise"),
    ("t_uniform", "t_uniform"), ("t_one", "t_one"), ("whole_view", "whole_view"),
    ("min_crop_area", "min_crop_area"), ("max_aspect", "max_aspect"), ("jitter", "jitter"),
    ("shrink_pictures", "shrink_pictures"), ("seed", "seed"), ("checkpoint_minutes", "checkpoint_minutes"),
    ("log_every", "log_every")]
FLOAT32_FIELDS = {"lambda", "lr", "min_lr", "weight_decay", "clip", "ema", "token_noise", "t_uniform", "t_one", "skip_init_std",
                  "layout_share", "layout_lr", "layout_drop",
                  "whole_view", "min_crop_area", "jitter"}


def train_config(args) -> dict:
    cfg = {}
    for key, attr in TRAIN_FIELDS:
        v = getattr(args, attr)
        if key in FLOAT32_FIELDS and v is not None:
            v = f32_json(v)
        cfg[key] = v
    return cfg


def apply_config(args, cfg: dict):
    for key, attr in TRAIN_FIELDS:
        if key in cfg:
            setattr(args, attr, cfg[key])


# ==============================================================================================
# Training

class Run:
    def __init__(self, args):
        self.args = args
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.device == "auto":
            dev = f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"
        elif args.device == "cuda":
            dev = f"cuda:{self.local_rank}"
        else:
            dev = args.device
        self.device = torch.device(dev)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = args.tf32
            torch.backends.cudnn.allow_tf32 = args.tf32
        if self.world > 1:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
        self.stop = False

    def log(self, s):
        if self.rank == 0:
            print(s, file=sys.stderr, flush=True)

    def barrier(self):
        if self.world > 1:
            dist.barrier()


def build(args, run: Run, ckpt=None):
    """Model, frozen reference and (for a checkpoint) the saved tensors."""
    S = args.image_size
    if ckpt is not None:
        tensors, meta = rt.load_state_dict_file(ckpt)
        cfg = json.loads(meta[CONFIG_KEY])
        encoder = rt.Dinov2Encoder(cfg["encoder"])
        decoder = rt.FlowDecoder(cfg["decoder"])
        m, k = rt.layout_shape(tensors["param.adapter.layout.weight"].shape
                               if "param.adapter.layout.weight" in tensors else None)
        model = RepTok(encoder=encoder, decoder=decoder, layout_dim=m, layout_size=k)
        # the frozen reference: the frozen encoder, or the live encoder with the frozen [CLS]
        src = "frozen.encoder." if "frozen.encoder.layernorm.weight" in tensors else "param.encoder."
        encoder.load_state_dict({k: tensors[src + k] for k in encoder.state_dict()})
        if src == "param.encoder.":
            with torch.no_grad():
                encoder.embeddings.cls_token.copy_(tensors["frozen.cls_token"].view(1, 1, -1))
        mode, k = parse_tune(args.tune)
        model.set_tune(mode, k)
        with torch.no_grad():
            for name, p in model.named_weights():
                p.copy_(tensors["param." + name])
        return model, tensors, meta
    if args.encoder:
        encoder = load_encoder_file(args.encoder, S)
    else:
        encoder = rt.Dinov2Encoder(dict(hidden_size=args.enc_width, num_hidden_layers=args.enc_depth,
                                        num_attention_heads=args.enc_heads, patch_size=args.enc_patch, image_size=S,
                                        layerscale_value=1.0, layer_norm_eps=1e-6))
        init_encoder(encoder, mix64(args.seed, 0xE1C0DE))
    decoder = rt.FlowDecoder(dict(image_size=S, patch_size=args.patch, width=args.width, depth=args.depth,
                                  num_heads=args.heads, token_dim=encoder.config["hidden_size"] + args.layout_dim,
                                  prediction=args.prediction, skip_size=args.skip_size, skip_input=args.skip_input))
    init_decoder(decoder, mix64(args.seed, 0xDEC0DE))
    model = RepTok(encoder=encoder, decoder=decoder, layout_dim=args.layout_dim,
                   layout_size=args.layout_size if args.layout_dim else 0)
    mode, k = parse_tune(args.tune)
    model.set_tune(mode, k)
    if args.init_from:
        # TokenizerTrainer.init: after setTune, so the frozen reference stays --encoder's
        init_from_model(model, args.init_from, run.log)
    if args.skip_init_std > 0 and decoder.latent_skip is not None and not bool(decoder.latent_skip.weight.any()):
        with torch.no_grad():
            decoder.latent_skip.weight.normal_(0, args.skip_init_std)
    return model, None, None


def init_from_model(model: RepTok, path: str, log=None):
    """--init-from: every network weight (encoder.*, adapter.* with the layout path, decoder.*)
    from a codec model file (F16 or F32, read as float32); the shapes must match the run's. As
    rttrain: a model without the latent skip (or skip input) leaves that part at its zero start."""
    tensors, meta = rt.load_state_dict_file(path)
    has_skip = "decoder.latent_skip.weight" in tensors
    has_skip_in = "decoder.skip_embed.weight" in tensors
    n = 0
    with torch.no_grad():
        for name, p in model.named_weights():
            if name not in tensors:
                if (name.startswith("decoder.latent_skip.") and not has_skip) or \
                        (name.startswith("decoder.skip_embed.") and not has_skip_in):
                    continue
                raise SystemExit(f"--init-from {path}: no tensor {name} (the run's shapes must match the model's)")
            t = tensors[name]
            if list(t.shape) != list(p.shape):
                raise SystemExit(f"--init-from {path}: {name} has shape {list(t.shape)}, the run's is {list(p.shape)}")
            p.copy_(t.float())
            n += 1
    if log:
        log(f"reptok-train: --init-from {path}: {n} tensors")


def validate(args):
    def bad(s):
        raise SystemExit(f"bad training config: {s}")
    parse_tune(args.tune)
    if not args.encoder and args.tune != "all":
        bad("without --encoder the encoder is randomly initialized and must be trained: use --tune all")
    if not 1 <= args.batch <= 1 << 20:
        bad(f"--batch {args.batch}")
    if not (args.lr > 0 and math.isfinite(args.lr) and 0 <= args.min_lr <= args.lr):
        bad("--lr/--min-lr")
    if args.warmup < 0:
        bad(f"--warmup {args.warmup}")
    if (args.steps is None) == (args.minutes is None):
        bad("give exactly one of --steps and --minutes")
    if args.steps is not None and args.steps < 1:
        bad(f"--steps {args.steps}")
    if args.minutes is not None and not (args.minutes > 0 and math.isfinite(args.minutes)):
        bad(f"--minutes {args.minutes}")
    if not 0 <= args.ema < 1:
        bad("--ema must be in [0, 1)")
    if args.weight_decay < 0 or args.clip <= 0:
        bad("--weight-decay/--clip")
    if args.token_noise < 0:
        bad("--token-noise")
    if not (0 <= args.t_uniform <= 1 and 0 <= args.t_one <= 1 and args.t_uniform + args.t_one <= 1):
        bad("--t-uniform and --t-one must be in [0, 1] with a sum <= 1")
    if not (0 <= args.whole_view <= 1 and 0 < args.min_crop_area <= 1 and 0 <= args.jitter < 1
            and args.max_aspect >= 1):
        bad("view settings (--whole-view, --min-crop-area, --max-aspect, --jitter)")
    if args.lam < 0:
        bad("--lambda")
    if not 0 <= args.seed < 2 ** 64:
        bad("--seed must be in [0, 2^64)")
    if args.checkpoint_minutes <= 0 or args.log_every < 1:
        bad("--checkpoint-minutes/--log-every")
    if not args.encoder:
        if args.enc_width % args.enc_heads or args.image_size % args.enc_patch:
            bad("encoder shape (--enc-width multiple of --enc-heads, --image-size multiple of --enc-patch)")
    if args.width % 4 or args.width % args.heads or args.image_size % args.patch or args.image_size < 8:
        bad("decoder shape (--width multiple of 4 and --heads, --image-size >= 8 and a multiple of --patch)")
    if args.prediction not in ("x", "v"):
        bad("--prediction must be x or v")
    if not 0 <= args.skip_size <= min(64, args.image_size) or (args.skip_size and args.prediction != "x"):
        bad("--skip-size must be 0-64 (at most --image-size) and needs --prediction x")
    if not 0 <= args.layout_dim <= 2048:
        bad(f"--layout-dim {args.layout_dim}: 0-2048")
    if args.layout_dim > 0:
        if not (1 <= args.layout_size <= 64 and args.image_size % args.layout_size == 0):
            bad(f"--layout-size {args.layout_size} must divide --image-size {args.image_size} (1-64)")
        if args.skip_size == 0:
            bad("--layout-dim needs the latent skip (--skip-size)")
        if not (args.layout_share > 0 and math.isfinite(args.layout_share)):
            bad(f"--layout-share {args.layout_share}")
        if not (args.layout_lr >= 0 and math.isfinite(args.layout_lr)):
            bad(f"--layout-lr {args.layout_lr}")
        if args.layout_init not in ("pca", "random"):
            bad("--layout-init must be pca or random")
        if not args.init_from:
            bad("a fresh layout path starts from the PCA of the training views (LayoutInit), which only rttrain "
                "computes: give --init-from MODEL (a layout-path codec model file, e.g. the default)")
    if not 0 <= args.layout_drop <= 1 or (args.layout_drop and not args.layout_dim):
        bad(f"--layout-drop {args.layout_drop}: 0-1, with --layout-dim")
    if args.skip_input and not args.skip_size:
        bad("--skip-input needs the latent skip (--skip-size)")
    if args.init_from and not os.path.exists(args.init_from):
        bad(f"--init-from {args.init_from}: no such file")


def train(args):
    run = Run(args)
    rank, world, device = run.rank, run.world, run.device
    rt.set_attention(args.attention)   # module-wide: follow this run's flag (an earlier run may have set it)
    run_dir = args.out
    ckpt_path = os.path.join(run_dir, "checkpoint.safetensors")
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    torch_meta = {}
    if args.resume or args.export_only:
        if not os.path.exists(ckpt_path):
            raise SystemExit(f"no checkpoint at {ckpt_path}")
        meta, _, _ = read_header(ckpt_path)
        st = json.loads(meta["reptok.train"])
        keep = {k: getattr(args, k) for k in ("data", "val")}
        apply_config(args, st["config"])
        # the pictures may have moved: an explicit --data / --val wins
        for k, v in keep.items():
            if v is not None and v != getattr(args, k):
                setattr(args, k, v)
        torch_meta = json.loads(meta.get("reptok.torch", "{}"))
        state = dict(step=st["step"], total_steps=st.get("total_steps"), wall_seconds=st["wall_seconds"],
                     samples=st["samples"], threads=st.get("threads", 1))
        model, tensors, _ = build(args, run, ckpt_path)
    else:
        validate(args)
        state = dict(step=0, total_steps=args.steps, wall_seconds=0.0, samples=0, threads=torch.get_num_threads())
        model, tensors = build(args, run)[:2]
    state["world_size"] = world
    state["threads"] = torch.get_num_threads()
    model.to(device)
    named = model.named_weights()
    trainable = [(n, p) for n, p in named if p.requires_grad]
    if model.frozen_encoder is not None:
        model.frozen_encoder.to(device)
    decay = decay_mask(model)
    # TrainConfig.applyLayoutRates: with a layout path, adapter.layout.* and decoder.latent_skip.*
    # train at layout_lr x the rate, without weight decay
    slow = {n for n, _ in trainable if model.adapter.layout_dim > 0
            and (n.startswith("adapter.layout.") or n.startswith("decoder.latent_skip."))}
    groups = [{"params": [p for n, p in trainable if n in decay and n not in slow], "weight_decay": f32(args.weight_decay),
               "lr_scale": 1.0},
              {"params": [p for n, p in trainable if n not in decay and n not in slow], "weight_decay": 0.0,
               "lr_scale": 1.0}]
    if slow:
        groups.append({"params": [p for n, p in trainable if n in slow], "weight_decay": 0.0,
                       "lr_scale": f32(args.layout_lr)})
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(groups, lr=f32(args.lr), betas=(0.9, 0.999), eps=1e-8, fused=fused or None)
    ema = [p.detach().clone() for _, p in trainable]
    ema_updates = 0
    if tensors is not None:
        opt_step = int(torch_meta.get("optimizer_step", state["step"]))
        for n, p in trainable:
            opt.state[p] = {"step": torch.tensor(float(opt_step), device=device if fused else "cpu"),
                            "exp_avg": tensors["adam.m." + n].to(device).clone(),
                            "exp_avg_sq": tensors["adam.v." + n].to(device).clone()}
        for (n, _), e in zip(trainable, ema):
            e.copy_(tensors["ema." + n].to(device))
        ema_updates = int(torch_meta.get("ema_updates", state["step"]))
        if rank == 0 and torch_meta.get("world_size", world) != world:
            run.log(f"reptok-train: checkpoint written with {torch_meta.get('world_size')} processes, now {world}")
    del tensors

    def save_checkpoint():
        if rank != 0:
            return
        ts = {}
        for n, p in named:
            ts["param." + n] = p.detach().float()
        ts["frozen.cls_token"] = model.frozen_cls_token.detach().float()
        if model.frozen_encoder is not None:
            for k, v in model.frozen_encoder.state_dict().items():
                ts["frozen.encoder." + k] = v.float()
        for (n, p), e in zip(trainable, ema):
            s = opt.state.get(p, {})
            ts["adam.m." + n] = s.get("exp_avg", torch.zeros_like(p)).float()
            ts["adam.v." + n] = s.get("exp_avg_sq", torch.zeros_like(p)).float()
            ts["ema." + n] = e.float()
        cfg = {k: v for k, v in train_config(args).items() if v is not None}
        st = {"format": "reptok-train-checkpoint", "version": 1, "config": cfg, "step": state["step"],
              "total_steps": state["total_steps"], "wall_seconds": round(wall(), 3), "samples": state["samples"],
              "threads": state["threads"]}
        first = next(iter(opt.state.values()), None)
        tm = {"trainer": TRAINER, "world_size": world, "ema_updates": ema_updates,
              "optimizer_step": int(first["step"]) if first else 0, "torch": torch.__version__,
              "device": device.type, "bf16": bool(args.bf16), "attention": args.attention}
        meta = {"reptok.train": json.dumps(st, sort_keys=True), "reptok.torch": json.dumps(tm, sort_keys=True),
                CONFIG_KEY: config_json(model.encoder.config, model.decoder.config)}
        write_safetensors(ckpt_path, ts, meta)

    seg_start = time.time()
    wall_before = state["wall_seconds"]

    def wall():
        return wall_before + (time.time() - seg_start)

    if args.export_only:
        return finish(args, run, model, trainable, ema, state, device, wall)

    B = args.batch
    if B % world:
        raise SystemExit(f"--batch {B} must be a multiple of the process count {world}")
    Bl = B // world
    slot0, slot1 = rank * Bl, (rank + 1) * Bl
    S = args.image_size
    D = model.adapter.token_dim    # the token noise draw covers the layout coordinates too
    M = model.adapter.layout_dim
    drop = f32(args.layout_drop)
    data = open_pictures(args.data, args.verify_crc, 4 * S if args.shrink_pictures and os.path.isdir(args.data) else None)
    if args.shrink_pictures and not os.path.isdir(args.data):
        t0 = time.time()
        data = shrink_pictures(data, 4 * S)
        run.log(f"reptok-train: {data.count} pictures shrunk to a long side of at most {4 * S} in {time.time() - t0:.1f} s")
    vc = ViewConfig(S, whole_fraction=f32(args.whole_view), min_area=f32(args.min_crop_area), max_area=1.0,
                    max_aspect=float(args.max_aspect), flip=0.5, brightness=f32(args.jitter),
                    contrast=f32(args.jitter), saturation=f32(args.jitter))
    sampler = ViewSampler(data, vc, B, args.seed)
    stream = ViewStream(sampler, state["step"], slot0, slot1)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.workers,
                                         pin_memory=device.type == "cuda", worker_init_fn=_worker_init,
                                         prefetch_factor=4 if args.workers else None,
                                         persistent_workers=False)
    it = iter(loader)

    objective = model
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(objective) if args.compile else objective
    amp = torch.bfloat16 if args.bf16 else None
    if amp is not None and device.type != "cuda":
        run.log("reptok-train: --bf16 on CPU: autocast bfloat16 on the CPU")

    def handler(signum, frame):
        if run.stop:
            raise KeyboardInterrupt
        run.stop = True
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)

    mf = None
    if rank == 0:
        os.makedirs(run_dir, exist_ok=True)
        kept = []
        if os.path.exists(metrics_path):
            for line in open(metrics_path):
                try:
                    if json.loads(line)["step"] <= state["step"]:
                        kept.append(line if line.endswith("\n") else line + "\n")
                except (ValueError, KeyError):
                    pass
        with open(metrics_path, "w") as f:
            f.writelines(kept)
        mf = open(metrics_path, "a")
    n_train = sum(p.numel() for _, p in trainable)
    run.log(f"reptok-train: {world} process(es) on {device.type}, global batch {B} ({Bl} per process), "
            f"{n_train / 1e6:.2f} M trainable parameters, tune {args.tune}, from step {state['step']}")

    budget = args.minutes * 60 if args.minutes is not None else None
    seg_start = time.time()     # the wall clock counts training, not the set-up (as rttrain)
    timed, seg_time, seg_steps = 0, 0.0, 0
    last_ckpt = time.time()
    smooth = None
    recent = []
    per = 3 * S * S
    t_one, t_uni, lam, tn_rel = f32(args.t_one), f32(args.t_uniform), f32(args.lam), f32(args.token_noise)
    ema_decay = f32(args.ema)
    stopped = False
    while True:
        if state["total_steps"] is not None:
            total = state["total_steps"]
        else:
            est = torch.zeros(1, dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
            if rank == 0:
                avg = seg_time / timed if timed >= 3 else 1.0
                left = max(0.0, budget - wall())
                est[0] = max(state["step"] + 1, state["step"] + int(left / max(avg, 1e-3)))
            if world > 1:
                dist.broadcast(est, 0)
            total = int(est.item())
            if state["step"] >= max(args.warmup, 20):
                state["total_steps"] = total
                run.log(f"reptok-train: step budget fixed at {total} steps")
        if state["step"] >= total:
            break
        t_start = time.time()
        s = state["step"]
        got, xb = next(it)
        assert got == s, f"view stream out of order: {got} != {s}"
        x = xb.to(device, non_blocking=True)
        rnd = StepRandom(args.seed, s)
        t = torch.from_numpy(rnd.times(B, t_uni, t_one)[slot0:slot1].copy()).to(device)
        noise = philox_gaussians(rnd.key, StepRandom.FLOW, slot0 * per, Bl * per, device).view(Bl, 3, S, S)
        draw = philox_gaussians(rnd.key, StepRandom.TOKEN, slot0 * D, Bl * D, device).view(Bl, D) \
            if tn_rel > 0 else None
        keep = torch.tensor(rnd.layout_keep(B, M, drop)[slot0:slot1], dtype=torch.int64, device=device) \
            if M > 0 and drop > 0 else None
        opt.zero_grad()
        loss, flow, cos, nstd = fwd(x, t, noise, draw, tn_rel, lam, amp, world, keep)
        loss.backward()
        gn = float(torch.nn.utils.clip_grad_norm_([p for _, p in trainable], f32(args.clip)))
        rate = warmup_cosine(s, args.lr, args.min_lr, args.warmup, total)
        if math.isfinite(gn):
            for g in opt.param_groups:
                g["lr"] = float(np.float32(rate) * np.float32(g["lr_scale"]))
            opt.step()
            ema_updates += 1
            k = np.float32(ema_updates)
            d = float(min(np.float32(ema_decay), (1 + k) / (10 + k))) if args.ema_warmup else ema_decay
            with torch.no_grad():
                torch._foreach_mul_(ema, d)
                torch._foreach_add_(ema, [p.detach() for _, p in trainable], alpha=f32(1 - d))
        elif rank == 0:
            run.log(f"reptok-train: step {s}: non-finite gradient norm, update skipped")
        red = torch.stack([loss.detach().float(), flow.float(), cos.float(),
                           torch.tensor(1.0 if run.stop else 0.0, device=device)]).double()
        if world > 1:
            red = red.cpu() if device.type != "cuda" else red
            dist.all_reduce(red)
        red = red.cpu().tolist()
        m_loss, m_flow, m_cos = (v / world for v in red[:3])
        stop_now = red[3] > 0 or (args.stop_after is not None and s + 1 >= args.stop_after)
        state["step"] = s + 1
        state["samples"] += B
        sec = time.time() - t_start
        seg_steps += 1
        if seg_steps > 2:
            seg_time += sec
            timed += 1
        recent = (recent + [sec])[-50:]
        k98 = 0.98
        smooth = (m_loss, m_flow, m_cos) if smooth is None else tuple(
            k98 * a + (1 - k98) * b for a, b in zip(smooth, (m_loss, m_flow, m_cos)))
        if rank == 0:
            mf.write(json.dumps({"step": state["step"], "loss": m_loss, "flow": m_flow, "cos": m_cos, "lr": rate,
                                 "grad_norm": gn, "token_noise_std": float(nstd), "seconds": round(sec, 6),
                                 "wall": round(wall(), 3)}) + "\n")
            if state["step"] % args.log_every == 0 or state["step"] == total:
                mf.flush()
                avg = sum(recent) / len(recent)
                eta = (total - state["step"]) * avg
                run.log(f"step {state['step']}/{total}  {B / avg:.1f} samples/s  loss {smooth[0]:.4f}  "
                        f"flow {smooth[1]:.4f}  cos {smooth[2]:.4f}  lr {rate:.2e}  |g| {gn:.2f}  "
                        f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        if stop_now or time.time() - last_ckpt >= args.checkpoint_minutes * 60:
            if rank == 0:
                mf.flush()
            save_checkpoint()
            last_ckpt = time.time()
            if stop_now:
                run.log(f"reptok-train: stopped at step {state['step']}; checkpoint written to {ckpt_path}")
                stopped = True
                break
    if mf is not None:
        mf.close()
    del it, loader
    if not stopped:
        save_checkpoint()
    run.barrier()
    if world > 1:
        dist.destroy_process_group()
    if stopped:
        if args.weights_out and rank == 0:   # what a run cut short by a time limit still brings back
            with torch.no_grad():
                for (_, p), e in zip(trainable, ema):
                    p.copy_(e)
            state["wall_seconds"] = wall()
            save_weights(args.weights_out, model, args, state)
            run.log(f"reptok-train: wrote the EMA weights of step {state['step']} to {args.weights_out}")
        return 0
    return finish(args, run, model, trainable, ema, state, device, wall)


def finish(args, run, model, trainable, ema, state, device, wall):
    state["wall_seconds"] = wall()
    if run.rank != 0 or args.no_export:
        if run.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
        return 0
    with torch.no_grad():
        for (_, p), e in zip(trainable, ema):
            p.copy_(e)
    if args.weights_out:
        save_weights(args.weights_out, model, args, state)
        run.log(f"reptok-train: wrote the EMA weights to {args.weights_out} "
                f"({os.path.getsize(args.weights_out)} bytes; rttrain export reads them after `reptok-train --expand`)")
    if model.adapter.layout_dim > 0:
        run.log("reptok-train: no torch export for a layout-path model (laplace quantizer, step modes): "
                "run `rttrain export --checkpoint` on the checkpoint (or on --weights-out after --expand)")
        return 0
    if args.export_out is None:
        args.export_out = os.path.join(args.out, "model.safetensors")
    t0 = time.time()
    report = export_model(model, args, state, device, run.log)
    run.log(f"export: wrote {report['path']} ({report['file_bytes']} bytes) in {time.time() - t0:.1f} s")
    print(json.dumps(report, indent=1))
    if run.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return 0


# ==============================================================================================
# weights-only checkpoints (small enough to travel back from a device) and their expansion

def save_weights(path: str, model: RepTok, args, state: dict):
    """The model's current weights (call with the EMA weights in place) as `ema.<key>` for every
    weight, F32, with the checkpoint's reptok.train / reptok.config metadata and frozen.cls_token:
    no optimizer moments, no frozen encoder. `expand_weights` turns it into a checkpoint that
    `rttrain export --checkpoint` reads."""
    ts = {"ema." + n: p.detach().float() for n, p in model.named_weights()}
    ts["frozen.cls_token"] = model.frozen_cls_token.detach().float()
    cfg = {k: v for k, v in train_config(args).items() if v is not None}
    st = {"format": "reptok-train-checkpoint", "version": 1, "config": cfg, "step": state["step"],
          "total_steps": state["total_steps"], "wall_seconds": round(float(state["wall_seconds"]), 3),
          "samples": state["samples"], "threads": state.get("threads", 1)}
    meta = {"reptok.train": json.dumps(st, sort_keys=True), "reptok.weights": "ema",
            CONFIG_KEY: config_json(model.encoder.config, model.decoder.config)}
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    write_safetensors(path, ts, meta)


def expand_weights(src: str, dst: str):
    """A checkpoint (TokenizerTrainer's layout) from a `save_weights` file: param.* = ema.* = the
    saved weights, zero Adam moments, frozen.cls_token; rttrain export --checkpoint exports its EMA
    weights. (Resuming it would restart the optimizer; it is meant for the export.)"""
    tensors, meta = rt.load_state_dict_file(src)
    if "reptok.train" not in meta or CONFIG_KEY not in meta:
        raise SystemExit(f"{src}: not a reptok.train weights file")
    st = json.loads(meta["reptok.train"])
    tune = st["config"].get("tune", "all")
    depth = int(json.loads(meta[CONFIG_KEY])["encoder"]["num_hidden_layers"])
    ts = {"frozen.cls_token": tensors["frozen.cls_token"].float()}
    for k, v in tensors.items():
        if not k.startswith("ema."):
            continue
        n = k[4:]
        ts["param." + n] = v.float()
        trainable = n.startswith("adapter.") or n.startswith("decoder.") or (
            n == "encoder.embeddings.cls_token" or (tune != "cls" and n != "encoder.embeddings.mask_token"
                                                    and (tune == "all" or _in_last(n, tune, depth))))
        if trainable:
            ts[k] = v.float()
            ts["adam.m." + n] = torch.zeros_like(v, dtype=torch.float32)
            ts["adam.v." + n] = torch.zeros_like(v, dtype=torch.float32)
    tm = {"trainer": TRAINER, "expanded_from": os.path.basename(src), "optimizer_step": 0}
    out = {"reptok.train": meta["reptok.train"], CONFIG_KEY: meta[CONFIG_KEY], "reptok.torch": json.dumps(tm, sort_keys=True)}
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    write_safetensors(dst, ts, out)


def _in_last(n: str, tune: str, depth: int) -> bool:
    """Whether encoder weight n trains with tune last:K (the last K blocks and the final norm)."""
    k = int(tune.split(":")[1])
    if n.startswith("encoder.layernorm."):
        return True
    if n.startswith("encoder.encoder.layer."):
        i = int(n.split(".")[3])
        return i >= depth - k
    return False


# ==============================================================================================
# CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch (DDP) trainer for reptok tokenizers; see docs/TRAINING_TORCH.md")
    a = ap.add_argument
    a("--data", help=".rtds pack or ImageFolder directory (DIR/class/*.jpg)")
    a("--val", help="validation pictures (.rtds or folder); default: val.rtds beside --data")
    a("--out", help="run folder: checkpoint.safetensors, metrics.jsonl, model.safetensors")
    a("--resume", action="store_true", help="continue the run in --out (settings come from its checkpoint)")
    a("--encoder", help="SSL encoder safetensors (encoder.* + reptok.config); default: fresh init (--tune all)")
    a("--tune", default=None, help="cls | last:K | all (default cls with --encoder, else all)")
    a("--lambda", dest="lam", type=float, default=0.1)
    a("--image-size", type=int, default=128)
    a("--patch", type=int, default=8)
    a("--width", type=int, default=256)
    a("--depth", type=int, default=8)
    a("--heads", type=int, default=4)
    a("--prediction", default="x", choices=["x", "v"])
    a("--skip-size", type=int, default=0, help="decoder latent skip k (0: none)")
    a("--skip-init-std", type=float, default=0.0, help="std of a random latent-skip init (0: zero)")
    a("--skip-input", action="store_true", help="the decoder also embeds the latent skip's picture (zero start)")
    a("--init-from", help="warm start from a codec model file (every network weight; same shapes; fresh "
                          "optimizer; the frozen reference stays --encoder's), as rttrain tokenizer --init-from")
    a("--layout-dim", type=int, default=0, help="layout path: linear layout coordinates in the token (0: none; "
                                                "needs --skip-size and --init-from)")
    a("--layout-size", type=int, default=32, help="side of the coarse picture the layout path reads")
    a("--layout-share", type=float, default=0.1, help="recorded only (the PCA start is rttrain's)")
    a("--layout-lr", type=float, default=0.05, help="learning-rate multiplier (and no weight decay) of "
                                                    "adapter.layout.* and decoder.latent_skip.*")
    a("--layout-init", default="pca", choices=["pca", "random"], help="recorded only (see --layout-share)")
    a("--layout-drop", type=float, default=0.0, help="probability that a sample's decoder sees only the "
                                                     "first K layout coordinates (K log-uniform)")
    a("--enc-width", type=int, default=192)
    a("--enc-depth", type=int, default=6)
    a("--enc-heads", type=int, default=3)
    a("--enc-patch", type=int, default=16)
    a("--batch", type=int, default=16, help="GLOBAL batch (split evenly over the processes)")
    a("--lr", type=float, default=3e-4)
    a("--min-lr", type=float, default=0.0)
    a("--warmup", type=int, default=500)
    a("--steps", type=int)
    a("--minutes", type=float)
    a("--weight-decay", type=float, default=0.05)
    a("--clip", type=float, default=1.0)
    a("--ema", type=float, default=0.999)
    a("--no-ema-warmup", dest="ema_warmup", action="store_false")
    a("--token-noise", type=float, default=0.0)
    a("--t-uniform", type=float, default=0.1)
    a("--t-one", type=float, default=0.0)
    a("--whole-view", type=float, default=0.5)
    a("--min-crop-area", type=float, default=0.35)
    a("--max-aspect", type=float, default=16 / 9)
    a("--jitter", type=float, default=0.1)
    a("--full-size-views", dest="shrink_pictures", action="store_false",
      help="cut views from the full-size pictures (default: copies shrunk to a long side of 4 S)")
    a("--seed", type=int, default=0)
    a("--checkpoint-minutes", type=float, default=5.0)
    a("--log-every", type=int, default=50)
    a("--stop-after", type=int, help="stop (checkpoint, exit 0, no export) after this step, as Ctrl-C would")
    # export
    a("--no-export", action="store_true")
    a("--export-only", action="store_true", help="export the checkpoint in --out (no training)")
    a("--export-out", help="model file (default RUN/model.safetensors)")
    a("--weights-out", help="also write the final EMA weights alone (F32, no optimizer moments) to this file")
    a("--expand", nargs=2, metavar=("WEIGHTS", "CHECKPOINT"),
      help="write a checkpoint that rttrain export --checkpoint reads from a --weights-out file, and exit")
    a("--fp16", action="store_true", help="F16 network weights in the model file")
    a("--record-bytes", type=int, default=128)
    a("--fit-fraction", type=float, default=1.0)
    a("--default-level", type=int, default=5)
    a("--quality-tolerance", type=float, default=0.1)
    a("--default-steps", type=int, default=1)
    a("--sampler", default="euler", choices=["euler", "heun"])
    a("--description", default="")
    a("--bootstrap", action="store_true")
    a("--fit-limit", type=int, help="fit the quantizer on at most N training pictures (default all)")
    a("--zstd", default="auto", choices=["auto", "system", "python"],
      help="zstd for the dictionary and the byte budget: the system libzstd (what the Swift tools link), "
           "the zstandard package, or auto (system if found)")
    # torch
    a("--device", default="auto", help="auto | cuda | cpu")
    a("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    a("--tf32", action="store_true", help="allow TF32 matmuls on CUDA")
    a("--compile", action="store_true", help="torch.compile the objective")
    a("--attention", default="sdpa", choices=["sdpa", "math"])
    a("--workers", type=int, default=4, help="data-loader processes per rank (0: in the training process)")
    a("--threads", type=int, default=0, help="torch CPU threads per process (0: torch's default)")
    a("--verify-crc", action="store_true", help="check every picture's CRC-32 when opening a pack")
    a("--fingerprint", metavar="MODEL", help="print the codec fingerprint of a model file and exit")
    args = ap.parse_args(argv)
    set_default_zstd(args.zstd)
    if args.fingerprint:
        print(fingerprint(args.fingerprint))
        return 0
    if args.expand:
        expand_weights(*args.expand)
        return 0
    if not args.out:
        ap.error("--out is required")
    if not (args.resume or args.export_only):
        if not args.data:
            ap.error("--data is required")
        if args.tune is None:
            args.tune = "cls" if args.encoder else "all"
    if not 1 <= args.default_level <= 9 or not 1 <= args.default_steps <= 1000:
        ap.error("--default-level 1-9, --default-steps 1-1000")
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
