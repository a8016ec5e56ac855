#!/usr/bin/env bash
# Regenerates the decode parity vectors of this folder (README.md here):
#
#   Tests/Parity/decode/regenerate.sh            records, rtinfo JSON and rtdec --native pictures
#                                                from the committed tiny.safetensors
#   Tests/Parity/decode/regenerate.sh --model    first trains and exports tiny.safetensors again
#                                                (needs data/train.rtds and data/val.rtds)
#
# Needs the release binaries (swift build -c release; B=DIR to use others). Run it after a
# deliberate change of what rtenc writes or rtdec decodes, then make Python follow:
#   swift test --filter ParityDecodeTests && (cd python && pytest tests/test_decode.py)
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=Tests/Parity/decode
B=${B:-.build/release}
for t in rttrain rtenc rtdec rtinfo; do
    [ -x "$B/$t" ] || { echo "regenerate.sh: no $B/$t (swift build -c release)" >&2; exit 1; }
done
export REPTOK_THREADS=1

if [ "${1:-}" = "--model" ]; then
    TMP=$(mktemp -d)
    trap 'rm -rf "$TMP"' EXIT
    # A tiny layout-path model like the default: 16 px, decoder width 32, depth 2, patch 4, latent
    # skip 8, 64 layout coordinates read from the 8x8 picture beside a fresh 32-wide encoder's
    # token (D = 96), laplace payloads; 40 training steps and the export (about 2 minutes).
    "$B/rttrain" tokenizer --data data/train.rtds --out "$TMP/run" --image-size 16 --patch 4 --width 32 \
        --depth 2 --heads 2 --skip-size 8 --layout-dim 64 --layout-size 8 --enc-width 32 --enc-depth 1 \
        --enc-heads 2 --enc-patch 4 --batch 8 --steps 40 --warmup 5 --lr 0.001 --threads 1 --fp16 \
        --default-level 5 > "$TMP/train.log" 2>&1 || { cat "$TMP/train.log" >&2; exit 1; }
    # The export keeps per-picture step modes only when its calibration predicts a gain at every
    # level, which a model this small never does; the vectors need them (the payload's mode symbol
    # and the mode's step factor), so the default's 8 factors 2^((m - 4) / 4) and fixed
    # per-level lambdas are written into the config, as the export writes them.
    PYTHONPATH=python python3 - "$TMP/run/model.safetensors" "$OUT/tiny.safetensors" <<'EOF'
import json, struct, sys
from reptok._floats import f32_json
src, dst = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
cfg = json.loads(header["__metadata__"]["reptok.config"])
codec = cfg["codec"]
assert codec["entropy"] == "laplace" and "step_modes" not in codec, codec
codec["step_modes"] = [f32_json(2.0 ** ((m - 4) / 4)) for m in range(8)]
codec["level_lambda"] = [f32_json(x) for x in (0.0155, 0.0053, 0.0012, 0.00017, 2e-5, 1e-5, 1e-5, 1e-5, 1e-5)]
codec["description"] = "tiny parity model (Tests/Parity/decode/regenerate.sh)"
header["__metadata__"]["reptok.config"] = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
EOF
fi

TINY=$OUT/tiny.safetensors
rm -rf "$OUT/tiny" "$OUT/default" "$OUT"/*.rtk "$OUT"/*.json
mkdir -p "$OUT/tiny" "$OUT/default"

# Six named records of the corpus with the tiny model: levels 1-9, both samplers, seeds of 1 to
# 10 varint bytes. Each is decoded at 1 and at 8 steps (rtdec --native: the model's 16x16).
n=0
while read -r pic opts; do
    n=$((n + 1))
    # shellcheck disable=SC2086
    "$B/rtenc" -m "$TINY" $opts -c "corpus/$pic" > "$OUT/tiny/r$n.rtk"
    for s in 1 8; do
        "$B/rtdec" -m "$TINY" --native --steps $s -o "$OUT/tiny/r$n-s$s.png" "$OUT/tiny/r$n.rtk"
    done
done <<'EOF'
01_nature_kleiber-by-lukas-baubkus.png -q 1
02_face_astronaut.png -q 3 --seed 7
03_street_00000100_f0100.png -q 5
04_animal_horse.png -q 6 --sampler heun --steps 8 --seed 300
05_object_coffee2.png -q 9 --seed 18446744073709551615
06_videoframe_vid-20191220-170832_f0010.png -q 2 --seed 12345
EOF
cat "$OUT"/tiny/r[1-6].rtk > "$OUT/tiny.rtk"
rm "$OUT"/tiny/r[1-6].rtk

# Two records of the committed default model at its default level and steps, decoded at 1 step
# (128x128).
n=0
for pic in 02_face_astronaut.png 04_animal_horse.png; do
    n=$((n + 1))
    "$B/rtenc" -c "corpus/$pic" > "$OUT/default/r$n.rtk"
    "$B/rtdec" --native --steps 1 -o "$OUT/default/r$n-s1.png" "$OUT/default/r$n.rtk"
done
cat "$OUT"/default/r[12].rtk > "$OUT/default.rtk"
rm "$OUT"/default/r[12].rtk

(cd "$OUT" && "../../../$B/rtinfo" --json tiny.rtk > tiny.json && "../../../$B/rtinfo" --json default.rtk > default.json)
echo "regenerate.sh: wrote $(ls "$OUT"/tiny/*.png "$OUT"/default/*.png | wc -l) pictures; model $("$B/rtinfo" "$OUT/tiny.rtk" | awk 'NR == 2 { print $4 }')"
