#!/usr/bin/env bash
# One tokenizer training run on a lent GPU machine (the workplace's `device` tool), in one call:
# the 128 px recipe of docs/MODEL.md, by the package's trainer (python -m reptok.train, from the
# checkout through PYTHONPATH=python: nothing to pip install there), exported to a model file that
# rtenc/rtdec load. That machine has PyTorch and CUDA but no Swift and no network, so the
# training set travels as small JPEG folders (python/scripts/device_pack.py) and the run writes only what
# comes back: OUT/model.safetensors (the export), OUT/metrics.jsonl, OUT/train.log.
#
# Here, first (once per checkout):
#   PYTHONPATH=python python3 python/scripts/device_pack.py   # data/*.rtds -> device-data/ (about 15 MB)
#   # the export needs zstd: the system libzstd, or this wheel where the machine lacks it (5.5 MB)
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl zstandard==0.25.0
# Then the device call (carry device-data; the command runs in the repository root there):
#   run(command: "MINUTES=7 bash tools/device_train.sh", carry: ["device-data", ".whl"], timeout_s: 600)
# And back here (files_at of the reply): join the pieces, check, and measure every reported
# number with the Swift tools on the real validation pack:
#   cat FILES_AT/model.safetensors.part-* > m.safetensors
#   test "$(sha256sum < m.safetensors | cut -d' ' -f1)" = "$(cut -d' ' -f1 FILES_AT/model.sha256)"
#   .build/release/rttrain eval --model m.safetensors --data data/val.rtds --steps 1 8
#
# A local smoke test of the same script on the CPU (21 steps, no GPU; --minutes fixes the step
# budget only once warm-up ends, hence the short warm-up; about 6 minutes on 2 shared cores):
#   OUT=/tmp/dev DEVICE=cpu MINUTES=0.3 BATCH=8 WORKERS=1 EXTRA="--warmup 5" bash tools/device_train.sh
#
# The default's architecture (RECIPE=layout, docs/MODEL.md: the layout path of 384 coordinates read
# from the 32x32 picture, the 32x32 latent skip, both fixed with --layout-lr 0, tune all, t-one 0.5,
# no token noise), warm-started from a codec model file (INIT, normally the committed default):
#   run(command: "INIT=Sources/RepTokCodec/Models/default.safetensors RECIPE=layout MINUTES=6 bash tools/device_train.sh",
#       carry: ["device-data"], timeout_s: 600)
# The tree that travels is at most 64 MiB and the tracked files (the three committed models) are
# 56 MiB, so this recipe's pack is smaller than the header's (6.8 MB, 542 pictures):
#   PYTHONPATH=python python3 python/scripts/device_pack.py --short-side 192 --quality 82
# It writes no model file there (the laplace quantizer and the step modes are rttrain export's) but
# the EMA weights, OUT/weights.safetensors (F32, 55 MB: in 15 MB pieces, weights.sha256). Here:
#   cat FILES_AT/weights.safetensors.part-* > /tmp/w.safetensors
#   test "$(sha256sum < /tmp/w.safetensors | cut -d' ' -f1)" = "$(cut -d' ' -f1 FILES_AT/weights.sha256)"
#   PYTHONPATH=python python3 -m reptok.train --expand /tmp/w.safetensors runs/torch-layout/checkpoint.safetensors
#   .build/release/rttrain export --checkpoint runs/torch-layout/checkpoint.safetensors --out runs/torch-layout/model.safetensors \
#     --fp16 --data data/train.rtds --val data/val.rtds
#   .build/release/rttrain eval --model runs/torch-layout/model.safetensors --data data/val.rtds --steps 1 8 --linear-bar data/train.rtds
# The python run is stopped by SIGINT (weights of the last step written) if it overruns MINUTES by
# 2.5 minutes, so something comes back before the call's limit.
#
# Settings (environment): MINUTES (training wall time, default 7: the machine's start and the
# export fit in the 10-minute call), BATCH (global batch, 256), LR (6e-4), WORKERS (view-rendering
# processes, 14 of the 16 cores), TUNE (all), DEVICE (cuda), EXTRA (more reptok.train flags),
# RECIPE (legacy: the skip-8 tokenizer without layout path, exported by the torch exporter; layout:
# the default's architecture, needs INIT; its LR defaults to 2e-4, WARMUP to 100).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?OUT must name the folder for the results (the device tool sets it)}
DATA=${DATA:-device-data}
MINUTES=${MINUTES:-7}
BATCH=${BATCH:-256}
RECIPE=${RECIPE:-legacy}
if [ "$RECIPE" = layout ]; then LR=${LR:-2e-4}; WARMUP=${WARMUP:-100}; else LR=${LR:-6e-4}; WARMUP=${WARMUP:-300}; fi
WORKERS=${WORKERS:-14}
TUNE=${TUNE:-all}
DEVICE=${DEVICE:-cuda}
RUN=${RUN:-/tmp/reptok-device-run}
export PYTHONUNBUFFERED=1
[ -d "$DATA/train" ] && [ -d "$DATA/val" ] || { echo "device_train: $DATA/train and $DATA/val missing (PYTHONPATH=python python3 python/scripts/device_pack.py, then carry $DATA)" >&2; exit 1; }
# wheels carried in .whl/ (e.g. zstandard where the machine has no libzstd), as the device notes say
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"   # the package, from this checkout
mkdir -p "$OUT"
{ date -u; nvidia-smi -L 2>/dev/null || true; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee "$OUT/train.log"
rm -rf "$RUN"
set +e
if [ "$RECIPE" = layout ]; then
  INIT=${INIT:?RECIPE=layout needs INIT=model.safetensors (e.g. Sources/RepTokCodec/Models/default.safetensors)}
  budget=$(python3 -c "print(int(float('$MINUTES') * 60 + 150))")
  timeout --signal=INT --kill-after=60 "$budget" \
  python3 -m reptok.train --data "$DATA/train" --val "$DATA/val" --out "$RUN" --device "$DEVICE" \
    --encoder Sources/RepTokCodec/Models/ssl-encoder.safetensors --tune "$TUNE" --lambda 0.1 \
    --image-size 128 --patch 16 --width 256 --depth 6 --heads 4 --skip-size 32 \
    --layout-dim 384 --layout-size 32 --layout-lr 0 --init-from "$INIT" \
    --batch "$BATCH" --lr "$LR" --warmup "$WARMUP" --minutes "$MINUTES" --ema 0.999 \
    --token-noise 0 --t-one 0.5 --t-uniform 0.1 --seed 0 --workers "$WORKERS" --checkpoint-minutes 100 \
    --log-every 50 --no-export --weights-out "$OUT/weights.safetensors" \
    $( [ "$DEVICE" = cuda ] && echo --tf32 ) ${EXTRA:-} 2>&1 | tee -a "$OUT/train.log"
else
python3 -m reptok.train --data "$DATA/train" --val "$DATA/val" --out "$RUN" --device "$DEVICE" \
  --encoder Sources/RepTokCodec/Models/ssl-encoder.safetensors --tune "$TUNE" --lambda 0.1 \
  --image-size 128 --patch 16 --width 256 --depth 6 --heads 4 --skip-size 8 \
  --batch "$BATCH" --lr "$LR" --warmup "$WARMUP" --minutes "$MINUTES" --ema 0.999 \
  --token-noise 0.1 --t-one 0.5 --t-uniform 0.1 --seed 0 --workers "$WORKERS" --checkpoint-minutes 100 \
  --log-every 50 --fp16 --record-bytes 128 --export-out "$OUT/model.safetensors" \
  --description "128 px, $TUNE from the shipped SSL encoder, tools/device_train.sh ({minutes} min on $DEVICE)" \
  $( [ "$DEVICE" = cuda ] && echo --tf32 ) ${EXTRA:-} 2>&1 | tee -a "$OUT/train.log"
fi
rc=${PIPESTATUS[0]}
set -e
cp "$RUN/metrics.jsonl" "$OUT/" 2>/dev/null || true
# files come back from the device at most 16 MiB each: a larger model file travels in pieces
# (join here: cat model.safetensors.part-* > model.safetensors; sha256 in model.sha256)
if [ -f "$OUT/model.safetensors" ] && [ "$(stat -c %s "$OUT/model.safetensors")" -gt $((15 * 1024 * 1024)) ]; then
  (cd "$OUT" && sha256sum model.safetensors > model.sha256 && split -b 15M -d -a 1 model.safetensors model.safetensors.part- \
     && rm model.safetensors)
fi
if [ -f "$OUT/weights.safetensors" ] && [ "$(stat -c %s "$OUT/weights.safetensors")" -gt $((15 * 1024 * 1024)) ]; then
  (cd "$OUT" && sha256sum weights.safetensors > weights.sha256 && split -b 15M -d -a 1 weights.safetensors weights.safetensors.part- \
     && rm weights.safetensors)
fi
echo "device_train: exit $rc" | tee -a "$OUT/train.log"
exit "$rc"
