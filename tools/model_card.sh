#!/usr/bin/env bash
# The measured parts of docs/MODEL.md (files under docs/model/), from the COMMITTED default
# model, generator and SSL encoder on the validation split (reptok.build_dataset, built if
# missing). Every output is deterministic (seeded, thread-count invariant).
#
#   tools/model_card.sh            # rewrite docs/model/{eval.md,grid.png,samples*.png,generation.md,fd_*.json}
#   tools/model_card.sh --check    # write them to a temporary folder and compare byte for byte
#
# About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1
M=Sources/RepTokCodec/Models/default.safetensors
G=Sources/RepTokCodec/Models/generator.safetensors
SSL=Sources/RepTokCodec/Models/ssl-encoder.safetensors
B=.build/release
SAMPLES=${SAMPLES:-200}
say() { echo "model_card: $*" >&2; }

[ -f data/train.rtds ] && [ -f data/val.rtds ] || PYTHONPATH=python python3 -m reptok.build_dataset --out data/
for p in rttrain rtgen rteval; do swift build -c release --product "$p" >&2; done
DEST=docs/model
W=$DEST
[ $CHECK = 1 ] && W=$(mktemp -d)
mkdir -p "$W"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say "reconstruction tables and grid (rttrain eval)"
$B/rttrain eval --model "$M" --data data/val.rtds --steps 1 8 --ssl-encoder "$SSL" --linear-bar data/train.rtds \
  --markdown --grid "$W/grid.png" --grid-pictures 8 > "$W/eval.md"

say "sample grids (rtgen --grid)"
$B/rtgen -m "$M" -g "$G" -n 60 --grid "$W/samples.png" -f --quiet
$B/rtgen -m "$M" -g "$G" -n 60 --decode-steps 8 --grid "$W/samples_8steps.png" -f --quiet

say "generation: SSL-feature Frechet distance to the validation pictures"
for spec in "1 1" "1.5 1" "3 1" "1.5 8"; do
  set -- $spec
  cfg=$1 ds=$2 d="$tmp/cfg${cfg}_d$ds"
  $B/rtgen -m "$M" -g "$G" -n "$SAMPLES" --cfg "$cfg" --decode-steps "$ds" -o "$d" --quiet
  # the samples' temporary folder is named "samples/..." in the file, so reruns compare equal
  $B/rteval -m "$M" --realism --sets "$d" data/val.rtds --json --quiet | sed "s|$tmp/|samples/|" \
    > "$W/fd_cfg${cfg}_decode$ds.json"
done
$B/rteval -m "$M" --realism --sets data/train.rtds data/val.rtds --json --quiet > "$W/fd_train_val.json"

python3 - "$W" "$SAMPLES" <<'EOF'
import json, os, sys
w, n = sys.argv[1], sys.argv[2]
L = ["| samples | --cfg | decoder steps | SSL-feature FD to validation | 95% interval |", "| --- | ---: | ---: | ---: | --- |"]
for cfg, ds in [("1", "1"), ("1.5", "1"), ("3", "1"), ("1.5", "8")]:
    e = json.load(open(os.path.join(w, f"fd_cfg{cfg}_decode{ds}.json")))
    L.append(f"| rtgen -n {n} --cfg {cfg} --decode-steps {ds} | {cfg} | {ds} | {e['frechet']:.1f} | [{e['low']:.1f}, {e['high']:.1f}] |")
e = json.load(open(os.path.join(w, "fd_train_val.json")))
L.append(f"| the {e['images'][0]} training pictures (reference) | - | - | {e['frechet']:.1f} | [{e['low']:.1f}, {e['high']:.1f}] |")
L.append("")
L.append(f"Feature encoder `{e['feature_encoder']}`, {e['dims']} dims, {e['views_per_image']} views per picture at "
         f"{e['resolution']}x{e['resolution']}, {e['resamples']} bootstrap resamples.")
open(os.path.join(w, "generation.md"), "w").write("\n".join(L) + "\n")
EOF

# splice the generated tables into docs/MODEL.md (between <!-- BEGIN name --> and <!-- END name -->)
python3 - "$W" "$DEST" <<'EOF'
import os, re, sys
w, dest = sys.argv[1], sys.argv[2]
card = "docs/MODEL.md"
text = open(card).read()
for name in ["eval.md", "generation.md", "ablation.md", "ablation_layout.md"]:
    src = os.path.join(w, name) if os.path.exists(os.path.join(w, name)) else os.path.join(dest, name)
    if not os.path.exists(src):
        continue
    body = open(src).read()
    if name.startswith("ablation"):   # the card takes the table; the file keeps its heading and notes
        body = "\n".join(l for l in body.splitlines() if l.startswith("|")) + "\n"
    pat = re.compile(r"(<!-- BEGIN %s -->\n).*?(<!-- END %s -->)" % (re.escape(name), re.escape(name)), re.S)
    if not pat.search(text):
        sys.exit(f"model_card: {card} has no <!-- BEGIN {name} --> block")
    text = pat.sub(lambda m: m.group(1) + body + m.group(2), text)
open(os.path.join(w, "MODEL.md") if w != dest else card, "w").write(text)
EOF

if [ $CHECK = 1 ]; then
  bad=0
  cmp -s "$W/MODEL.md" docs/MODEL.md && echo "same: MODEL.md" || { echo "DIFFERS: MODEL.md"; bad=1; }
  rm -f "$W/MODEL.md"
  for f in "$W"/*; do
    b=$(basename "$f")
    if cmp -s "$f" "$DEST/$b"; then echo "same: $b"; else echo "DIFFERS: $b"; bad=1; fi
  done
  rm -rf "$W"
  exit $bad
fi
say "wrote $W and docs/MODEL.md"
