#!/usr/bin/env bash
# Trains reptok's BOOTSTRAP default model and installs it as
# Sources/RepTokCodec/Models/default.safetensors.
#
# No self-supervised encoder exists yet, so the encoder is a fresh ViT trained end to end
# (--tune all, lambda 0: there is no SSL geometry to keep), with a small decoder sized for 2 CPU
# cores. The run goes to the background (nohup); follow runs/bootstrap/log.txt.
#
#   tools/train_bootstrap.sh                 # train MINUTES (default 25) in the background
#   tools/train_bootstrap.sh --foreground    # same, in this terminal
#   MINUTES=40 RUN=runs/boot2 tools/train_bootstrap.sh
#
# Re-running continues an interrupted run (--resume); when training is done it only redoes the
# export and the evaluation. Ctrl-C / kill -TERM finish the current step and checkpoint.
# Only ONE training process should run at a time on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN:-runs/bootstrap}
MINUTES=${MINUTES:-25}
OUT=${OUT:-Sources/RepTokCodec/Models/default.safetensors}
export REPTOK_THREADS=${REPTOK_THREADS:-2}
mkdir -p "$RUN"

if [ "${1:-}" != "--foreground" ]; then
    nohup "$0" --foreground >>"$RUN/log.txt" 2>&1 &
    echo "bootstrap training started (pid $!); log: $RUN/log.txt"
    exit 0
fi

echo "== $(date -u +%FT%TZ) train_bootstrap.sh: run $RUN, $MINUTES minutes, $REPTOK_THREADS threads"
if ! swift build -c release --product rttrain; then
    [ -x .build/release/rttrain ] || { echo "build failed and no rttrain binary"; exit 1; }
    echo "warning: build failed; using the existing .build/release/rttrain"
fi
BIN=.build/release/rttrain

# 1. train (resumable). Model: 64 px, decoder patch 8 (64 patch tokens), width 192, depth 4;
#    encoder ViT width 192, depth 4, patch 16. Clean-image prediction ("x") for 8x8 pixel patches.
#    Half of the samples at t = 1 (the only time a 1-step decode evaluates), 20% uniform t.
if [ -f "$RUN/checkpoint.safetensors" ]; then
    STEP=$(python3 - "$RUN/checkpoint.safetensors" <<'EOF'
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
h = json.loads(f.read(n)); s = json.loads(h["__metadata__"]["reptok.train"])
print("done" if s.get("total_steps") is not None and s["step"] >= s["total_steps"] else s["step"])
EOF
)
    if [ "$STEP" != "done" ]; then
        echo "resuming at step $STEP"
        "$BIN" tokenizer --data data/train.rtds --out "$RUN" --resume --no-export
    fi
else
    "$BIN" tokenizer --data data/train.rtds --val data/val.rtds --out "$RUN" \
        --image-size 64 --patch 8 --width 192 --depth 4 --heads 4 --prediction x \
        --enc-width 192 --enc-depth 4 --enc-heads 3 --enc-patch 16 --tune all --lambda 0 \
        --batch 32 --lr 4e-4 --warmup 200 --minutes "$MINUTES" --ema 0.999 \
        --t-one 0.5 --t-uniform 0.2 --token-noise 0.1 \
        --whole-view 0.5 --min-crop-area 0.35 --jitter 0.1 --seed 0 \
        --checkpoint-minutes 5 --log-every 50 --no-export
fi

# 2. export: EMA weights in F16, quantizer fitted on the training tokens, step sized so the whole
#    record is <= 128 bytes for every validation picture at the default level 5.
"$BIN" export --checkpoint "$RUN/checkpoint.safetensors" --out "$OUT" --val data/val.rtds --fp16 \
    --record-bytes 128 --default-level 5 --default-steps 1 --sampler euler --bootstrap \
    --description "bootstrap model (trained {minutes} minutes, not SSL-pretrained)" | tee "$RUN/export.txt"

# 3. evaluate on the validation pictures
"$BIN" eval --model "$OUT" --data data/val.rtds --steps 1 2 4 | tee "$RUN/eval.txt"
"$BIN" eval --model "$OUT" --data data/val.rtds --steps 1 2 4 --json >"$RUN/eval.json"
ls -l "$OUT"
echo "== $(date -u +%FT%TZ) done"
