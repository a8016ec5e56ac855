#!/usr/bin/env bash
# The layout-path ablation of issue #13 (docs/MODEL.md): the default's recipe (128x128, SSL
# encoder tuned in full, decoder patch 16 / width 256 / depth 6 with a 32x32 latent skip, batch
# 32, lr 2e-4, t = 1 for half of the samples, seed 0) for the SAME number of steps as the
# default's run (1,509), with three token designs:
#   layout-pca     384 layout coordinates started from the PCA of the training views and kept
#                  fixed (--layout-lr 0): the default model's run itself; its row is read from
#                  the committed default model and generator, not trained again (RETRAIN_DEFAULT=1
#                  trains it like the others)
#   layout-random  the same layout path from a random start, trained at the full learning rate
#   nolayout       no layout path: the token is the adapted [CLS] token only (the paper's design)
# For each: the exported model, `rttrain eval` at 1 step beside the linear bar, the token's
# cosine to the SSL token, a generator with the default's recipe (width 256, depth 6, 4,000
# steps, --per-dim-std) and the SSL-feature Frechet distance of 200 `rtgen` samples (cfg 1,
# 1-step decode) to the validation pictures with the model's own features (128 px). Written to
# docs/model/ablation_layout.md.
#
#   nice -n 15 tools/ablation_layout.sh > runs/ablation_layout.log 2>&1 &
#   ONLY=nolayout tools/ablation_layout.sh        # one run (then the table of what exists)
#
# Restartable: a finished step (its output file present) is skipped, an interrupted tokenizer
# continues with --resume. About 30 min per tokenizer, 6 min per generator on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/ablation_layout}
STEPS=${STEPS:-1509}
THREADS=${THREADS:-2}
SAMPLES=${SAMPLES:-200}
SSL=Sources/RepTokCodec/Models/ssl-encoder.safetensors
OUT=${OUT:-docs/model/ablation_layout.md}
B=.build/release
say() { echo "ablation_layout: $*" >&2; }

[ -f data/train.rtds ] && [ -f data/val.rtds ] || PYTHONPATH=python python3 -m reptok.build_dataset --out data/
for p in rttrain rtgen rteval; do swift build -c release --product "$p" >&2; done
mkdir -p "$RUNS"

# name and the flags that differ between the runs
declare -A FLAGS=(
  [layout-pca]="--layout-dim 384 --layout-size 32 --layout-lr 0"
  [layout-random]="--layout-dim 384 --layout-size 32 --layout-init random --layout-lr 1"
  [nolayout]=""
)
NAMES=(layout-pca layout-random nolayout)

for name in "${NAMES[@]}"; do
  [ -n "${ONLY:-}" ] && [ "$ONLY" != "$name" ] && continue
  dir="$RUNS/$name"
  mkdir -p "$dir"
  if [ "$name" = layout-pca ] && [ "${RETRAIN_DEFAULT:-0}" != 1 ]; then
    cp -n Sources/RepTokCodec/Models/default.safetensors "$dir/model.safetensors"
    cp -n Sources/RepTokCodec/Models/generator.safetensors "$dir/generator.safetensors"
  fi
  if [ ! -f "$dir/model.safetensors" ]; then
    if [ -f "$dir/checkpoint.safetensors" ]; then
      say "$name: resuming"
      $B/rttrain tokenizer --data data/train.rtds --out "$dir" --resume --threads "$THREADS" --no-export
    else
      say "$name: $STEPS steps ${FLAGS[$name]}"
      # shellcheck disable=SC2086
      $B/rttrain tokenizer --data data/train.rtds --val data/val.rtds --out "$dir" --encoder "$SSL" \
        --tune all --lambda 0.1 --image-size 128 --patch 16 --width 256 --depth 6 --heads 4 --skip-size 32 \
        ${FLAGS[$name]} --batch 32 --lr 2e-4 --warmup 200 --t-one 0.5 --steps "$STEPS" --seed 0 \
        --threads "$THREADS" --log-every 100 --no-export
    fi
    $B/rttrain export --checkpoint "$dir/checkpoint.safetensors" --out "$dir/model.safetensors.tmp" --fp16 \
      --record-bytes 128 --description "ablation_layout $name ($STEPS steps)"
    mv "$dir/model.safetensors.tmp" "$dir/model.safetensors"
  fi
  if [ ! -f "$dir/eval.json" ]; then
    $B/rttrain eval --model "$dir/model.safetensors" --data data/val.rtds --steps 1 --ssl-encoder "$SSL" \
      --linear-bar data/train.rtds --threads "$THREADS" --json > "$dir/eval.json.tmp"
    mv "$dir/eval.json.tmp" "$dir/eval.json"
  fi
  if [ ! -f "$dir/generator.safetensors" ]; then
    say "$name: generator"
    $B/rttrain generator -m "$dir/model.safetensors" --data data/train.rtds --out "$dir/gen" --width 256 --depth 6 \
      --steps 4000 --batch 256 --views 16 --fp16 --per-dim-std --threads "$THREADS" --export "$dir/generator.safetensors.tmp"
    mv "$dir/generator.safetensors.tmp" "$dir/generator.safetensors"
  fi
  f="$dir/fd_cfg1.json"
  if [ ! -f "$f" ]; then
    rm -rf "$dir/samples_cfg1"
    $B/rtgen -m "$dir/model.safetensors" -g "$dir/generator.safetensors" -n "$SAMPLES" --cfg 1 --decode-steps 1 \
      -o "$dir/samples_cfg1" --quiet
    $B/rteval -m "$dir/model.safetensors" --realism --sets "$dir/samples_cfg1" data/val.rtds --json --quiet > "$f.tmp"
    mv "$f.tmp" "$f"
  fi
done

python3 - "$RUNS" "$OUT" "$STEPS" "${NAMES[@]}" <<'EOF'
import json, os, sys
runs, out, steps, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
what = {"layout-pca": "layout path, PCA start, kept fixed (the default)",
        "layout-random": "layout path, random start, trained",
        "nolayout": "no layout path (adapted [CLS] token only)"}
L = ["# Layout-path ablation (generated by tools/ablation_layout.sh; do not edit)", "",
     f"128x128, the default's recipe for {steps} steps of batch 32 each (seed 0), 52 validation pictures, "
     "1-step decodes. PSNR at the default level and at levels 1 and 9 beside the linear (PCA) bar at the "
     "same mean payload bytes; token cosine to the frozen SSL token; generation: SSL-feature Frechet "
     "distance (model's own 128 px features) of 200 `rtgen` samples (cfg 1, 1-step decode) to the "
     "validation pictures, generator width 256, depth 6, 4,000 steps, --per-dim-std; [interval] as rteval prints it.", "",
     "| token | default level: record B | PSNR dB | PCA bar dB | level 1: B / dB / bar | level 9: B / dB / bar | cosine | Frechet [interval] |",
     "| --- | ---: | ---: | ---: | --- | --- | ---: | --- |"]
for n in names:
    d = os.path.join(runs, n)
    try:
        e = json.load(open(os.path.join(d, "eval.json")))
    except OSError:
        continue
    rows = {r["level"]: r for r in e["rows"] if r["name"] == "codec" and r.get("steps") == 1}
    bars = e.get("linear_bar") or [None] * 9
    def cell(level):
        r, bar = rows[level], bars[level - 1]
        return f"{r['bytes']:.1f} / {r['psnr']:.2f} / " + (f"{bar['psnr']:.2f}" if bar else "-")
    fd = "-"
    try:
        r = json.load(open(os.path.join(d, "fd_cfg1.json")))
        fd = f"{r['frechet']:.1f} [{r['low']:.1f}, {r['high']:.1f}]"
    except OSError:
        pass
    dl = e["default_level"]
    bar = bars[dl - 1]
    cos = e.get("token_cosine")
    L.append(f"| {what.get(n, n)} | {rows[dl]['bytes']:.1f} | {rows[dl]['psnr']:.2f} | " + (f"{bar['psnr']:.2f}" if bar else "-") +
             f" | {cell(1)} | {cell(9)} | " + (f"{cos:.3f}" if cos is not None else "-") + f" | {fd} |")
open(out, "w").write("\n".join(L) + "\n")
print("\n".join(L))
EOF
