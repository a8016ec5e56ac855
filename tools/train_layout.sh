#!/usr/bin/env bash
# The 128x128 layout-path tokenizer run of issue #13, restartable across sessions:
#   - resumes runs/layout128 when its checkpoint survived (--resume),
#   - else starts from the PCA of the training views (LayoutInit; the step-0 model IS the linear
#     code), or, with INIT=model.safetensors, warm-starts from a committed layout model;
# then exports (sensitivity-weighted Laplace quantizer, levels at 40-160 B) and evaluates beside
# the linear (PCA) bar. Run it niced in the background at the start of a session:
#   nice -n 15 tools/train_layout.sh > runs/layout128.log 2>&1 &
# MINUTES (default 120) is the training time of a fresh run; Ctrl-C / SIGINT writes a checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/layout128}
MINUTES=${MINUTES:-120}
B=.build/release
[ -f data/train.rtds ] && [ -f data/val.rtds ] || PYTHONPATH=python python3 -m reptok.build_dataset --out data/
swift build -c release --product rttrain >&2
if [ -f "$RUN/checkpoint.safetensors" ]; then
  "$B/rttrain" tokenizer --data data/train.rtds --out "$RUN" --resume --no-export
else
  init=()
  [ -n "${INIT:-}" ] && init=(--init-from "$INIT")
  "$B/rttrain" tokenizer --data data/train.rtds --val data/val.rtds --out "$RUN" \
    --encoder Sources/RepTokCodec/Models/ssl-encoder.safetensors --tune all --lambda 0.1 \
    --image-size 128 --patch 16 --width 256 --depth 6 --heads 4 --skip-size 32 \
    --layout-dim 384 --layout-size 32 --batch 32 --lr 2e-4 --warmup 200 --t-one 0.5 \
    --minutes "$MINUTES" --threads 2 --log-every 25 --no-export "${init[@]}"
fi
"$B/rttrain" export --checkpoint "$RUN/checkpoint.safetensors" --out "$RUN/model.safetensors" --fp16 \
  --description "layout-path model, 128x128 (PCA start + {minutes} min of rttrain tokenizer)"
"$B/rttrain" eval --model "$RUN/model.safetensors" --data data/val.rtds --steps 1 8 --linear-bar data/train.rtds \
  --ssl-encoder Sources/RepTokCodec/Models/ssl-encoder.safetensors | tee "$RUN/eval.txt"
