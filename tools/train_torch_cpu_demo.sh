#!/usr/bin/env bash
# CPU demo of the PyTorch trainer (reptok.train of the package in python/, docs/TRAINING_TORCH.md):
#
#   1. torchrun --nproc_per_node 2 (gloo, CPU): a TINY tokenizer (32 px, patch 8, widths 64) on
#      data/train.rtds, interrupted after STEPS/2 steps (--stop-after) and resumed to STEPS steps,
#      then exported (rank 0) to $OUT/model.safetensors;
#   2. the same run without the interruption: its checkpoint must be bit-identical (resume check);
#   3. the Swift CLIs: rtenc -m MODEL encodes corpus/*.png, rtinfo must list the model's
#      fingerprint (computed independently by reptok-train --fingerprint) on every record,
#      rtdec -m MODEL decodes them, and every PNG must exist with its original size;
#   4. if rttrain is built: `rttrain eval` of the file (PSNR and record bytes must agree with the
#      Python exporter's numbers) and `rttrain export` of the torch CHECKPOINT (the Swift exporter
#      must read it: same configs and weights as the torch export).
# The export uses --quality-tolerance 0 (the finest step that fits 128 bytes): after 20 steps the
# decoder still ignores the token, so the default rule (widen the step while the PSNR holds) would
# quantize every token to zeros, and the records would carry nothing.
#
# Usage: tools/train_torch_cpu_demo.sh        (OUT=/tmp/reptok_torch_demo STEPS=20 NPROC=2)
# Exits non-zero on any failure. Uses one torch thread per process. Runs this checkout's package
# (PYTHONPATH=python: no pip install needed; `pip install -e python[train]` has the same effect).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/reptok_torch_demo}
STEPS=${STEPS:-20}
NPROC=${NPROC:-2}
HALF=$((STEPS / 2))
T0=$(date +%s)

fail() { echo "demo: FAILED: $*" >&2; exit 1; }
say() { echo "demo: $*" >&2; }

export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch, numpy, safetensors, zstandard, reptok.train" 2>/dev/null \
    || fail "needs torch, numpy, safetensors and zstandard (pip install -e 'python[train]')"
if command -v torchrun >/dev/null; then TORCHRUN=(torchrun); else TORCHRUN=(python3 -m torch.distributed.run); fi

# data (data/ is git-ignored; build it only if missing)
if [ ! -f data/train.rtds ] || [ ! -f data/val.rtds ]; then
    say "data/train.rtds missing: building it (python3 -m reptok.build_dataset --out data/)"
    python3 -m reptok.build_dataset --out data/
fi

# the Swift CLIs (built only if missing)
BIN=$(swift build -c release --show-bin-path)
for t in rtenc rtdec rtinfo; do
    if [ ! -x "$BIN/$t" ]; then
        say "building $t (swift build -c release --product $t)"
        swift build -c release --product "$t" >&2
    fi
done

rm -rf "$OUT"
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
TINY=(--data data/train.rtds --val data/val.rtds --tune all
      --image-size 32 --patch 8 --width 64 --depth 2 --heads 2
      --enc-width 64 --enc-depth 2 --enc-heads 2 --enc-patch 8
      --batch 8 --steps "$STEPS" --warmup 5 --lr 1e-3 --ema 0.99 --token-noise 0.1 --t-one 0.2
      --seed 0 --log-every 5 --threads 1 --workers 0)
RUN=("${TORCHRUN[@]}" --standalone --nnodes 1 --nproc_per_node "$NPROC" -m reptok.train)

say "1/4 training: $NPROC gloo processes, $HALF steps, then interrupted (--stop-after $HALF)"
"${RUN[@]}" "${TINY[@]}" --out "$OUT/run" --stop-after "$HALF" 2>&1 | grep -v "^W.*OMP_NUM_THREADS\|^\*\*\*\*" >&2
[ -f "$OUT/run/checkpoint.safetensors" ] || fail "no checkpoint after the interrupted run"
[ ! -f "$OUT/run/model.safetensors" ] || fail "the interrupted run exported"
say "1/4 resuming to step $STEPS and exporting"
"${RUN[@]}" --out "$OUT/run" --resume --export-out "$OUT/model.safetensors" --quality-tolerance 0 \
    --threads 1 --workers 0 \
    > "$OUT/export.json" 2> >(grep -v "^W.*OMP_NUM_THREADS\|^\*\*\*\*" >&2)
[ -s "$OUT/model.safetensors" ] || fail "no model file"

say "2/4 the same run without interruption (resume must be bit-identical)"
"${RUN[@]}" "${TINY[@]}" --out "$OUT/straight" --no-export 2>&1 | grep -v "^W.*OMP_NUM_THREADS\|^\*\*\*\*" >&2
python3 - "$OUT/run/checkpoint.safetensors" "$OUT/straight/checkpoint.safetensors" "$STEPS" <<'EOF' || fail "resume check"
import json, sys
import numpy as np
from safetensors.numpy import load_file
from safetensors import safe_open
a, b, steps = load_file(sys.argv[1]), load_file(sys.argv[2]), int(sys.argv[3])
for p in sys.argv[1:3]:
    with safe_open(p, "np") as f:
        st = json.loads(f.metadata()["reptok.train"])
    assert st["step"] == steps, (p, st["step"])
assert sorted(a) == sorted(b), "different tensor names"
diff = [k for k in a if not np.array_equal(a[k], b[k])]
assert not diff, f"{len(diff)} tensors differ, e.g. {diff[:3]}"
print(f"demo: resume check: {len(a)} tensors (param., ema., adam., frozen.) bit-identical at step {steps}",
      file=sys.stderr)
EOF

FP=$(python3 -m reptok.train --fingerprint "$OUT/model.safetensors")
say "3/4 model $OUT/model.safetensors: $(stat -c %s "$OUT/model.safetensors") bytes, fingerprint $FP"
mkdir -p "$OUT/rtk" "$OUT/decoded"
"$BIN/rtenc" -m "$OUT/model.safetensors" -d "$OUT/rtk" corpus/*.png
"$BIN/rtinfo" "$OUT"/rtk/corpus/*.rtk
"$BIN/rtinfo" --json "$OUT"/rtk/corpus/*.rtk > "$OUT/rtinfo.json"
"$BIN/rtdec" -m "$OUT/model.safetensors" -d "$OUT/decoded" "$OUT"/rtk/corpus/*.rtk
python3 - "$OUT" "$FP" corpus/*.png <<'EOF' || fail "encode/decode check"
import json, os, struct, sys
out, fp, pics = sys.argv[1], sys.argv[2], sys.argv[3:]
def png_size(p):
    with open(p, "rb") as f:
        h = f.read(24)
    assert h[:8] == b"\x89PNG\r\n\x1a\n" and h[12:16] == b"IHDR", f"{p} is not a PNG"
    return struct.unpack(">II", h[16:24])
info = json.load(open(os.path.join(out, "rtinfo.json")))
assert len(info) == len(pics), f"rtinfo lists {len(info)} records for {len(pics)} pictures"
models = sorted(set(r["model"] for r in info))
assert models == [fp], f"rtinfo lists models {models}, the file's fingerprint is {fp}"
decoded = {}
for dp, _, fn in os.walk(os.path.join(out, "decoded")):
    for f in fn:
        decoded[f] = os.path.join(dp, f)
print(f"{'picture':48} {'size':>9} {'.rtk':>5} {'decoded':>9}")
for p in pics:
    name = os.path.basename(p)
    rtk = os.path.join(out, "rtk", "corpus", name + ".rtk")
    assert os.path.exists(rtk), f"no record {rtk}"
    rec = [r for r in info if r["file"].endswith("/" + name + ".rtk")]
    assert len(rec) == 1 and (rec[0]["width"], rec[0]["height"]) == png_size(p), f"record of {name}"
    assert name in decoded, f"no decoded picture for {name}"
    w, h = png_size(p)
    dw, dh = png_size(decoded[name])
    assert (dw, dh) == (w, h), f"{name}: decoded {dw}x{dh}, original {w}x{h}"
    print(f"{name:48} {w:>4}x{h:<4} {os.path.getsize(rtk):>5} {dw:>4}x{dh:<4}")
print(f"demo: {len(pics)} pictures encoded and decoded with model {fp}", file=sys.stderr)
EOF

if [ -x "$BIN/rttrain" ]; then
    say "4/4 Swift cross-checks (rttrain eval of the file, rttrain export of the torch checkpoint)"
    REPTOK_THREADS=1 "$BIN/rttrain" eval --model "$OUT/model.safetensors" --data data/val.rtds --steps 1 --json \
        > "$OUT/swift_eval.json" 2>/dev/null || fail "rttrain eval"
    REPTOK_THREADS=1 "$BIN/rttrain" export --checkpoint "$OUT/run/checkpoint.safetensors" \
        --out "$OUT/swift_model.safetensors" --data data/train.rtds --val data/val.rtds --quality-tolerance 0 --json \
        > "$OUT/swift_export.json" 2>/dev/null || fail "rttrain export of the torch checkpoint"
    python3 - "$OUT" <<'EOF' || fail "Swift cross-check"
import json, os, sys
import numpy as np
from safetensors.numpy import load_file
from safetensors import safe_open
out = sys.argv[1]
tx = json.load(open(os.path.join(out, "export.json")))
ev = json.load(open(os.path.join(out, "swift_eval.json")))
sx = json.load(open(os.path.join(out, "swift_export.json")))
unq = [r for r in ev["rows"] if r["name"] == "unquantized token"][0]["psnr"]
d = abs(unq - tx["unquantized_psnr"])
print(f"demo: unquantized-token PSNR on val: Swift engine {unq:.4f} dB, torch export {tx['unquantized_psnr']:.4f} dB")
assert d < 0.05, f"PSNR differs by {d:.4f} dB"
codec = {r["level"]: r for r in ev["rows"] if r["name"] == "codec"}
print("demo: whole-record bytes on val, mean/max: Swift codec (rttrain eval) | torch exporter's prediction")
for lv in tx["predicted_levels"]:
    r = codec[lv["level"]]
    print(f"demo:   level {lv['level']}: {r['bytes']:6.2f} / {r['max_bytes']:3d} | {lv['mean']:6.2f} / {lv['max']:3d}")
    assert abs(r["bytes"] - lv["mean"]) <= 1.0, f"level {lv['level']}: byte counts disagree"
def cfg(p):
    with safe_open(p, "np") as f:
        return json.loads(f.metadata()["reptok.config"])
a, b = cfg(tx["path"]), cfg(sx["path"])
assert a["encoder"] == b["encoder"] and a["decoder"] == b["decoder"], "configs differ"
ta, tb = load_file(tx["path"]), load_file(sx["path"])
assert sorted(ta) == sorted(tb), "tensor names differ"
w = [k for k in ta if not k.startswith("quantizer.") and not np.array_equal(ta[k], tb[k])]
assert not w, f"weights differ: {w[:3]}"
print(f"demo: rttrain export read the torch checkpoint: same configs, same {len(ta) - 4} weight tensors; "
      f"base step Swift {sx['base_step']:.6g} vs torch {tx['base_step']:.6g}, "
      f"dictionary {sx['dictionary_bytes']} vs {tx['dictionary_bytes']} bytes")
EOF
else
    say "4/4 skipped (rttrain not built: swift build -c release --product rttrain)"
fi
say "passed in $(( $(date +%s) - T0 )) s; files in $OUT"
