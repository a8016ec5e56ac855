#!/usr/bin/env bash
# `make demo`: encodes and decodes the corpus images with the embedded default model and prints
# each file's size and the PSNR of the decode (at the model resolution).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(swift build -c release --show-bin-path)"
out="${DEMO_OUT:-/tmp/reptok-demo}"
mkdir -p "$out"
"$bin/rtenc" --version
for img in corpus/*.png corpus/*.jpg; do
  [ -e "$img" ] || continue
  name="$(basename "$img")"
  "$bin/rtenc" -f -o "$out/$name.rtk" "$img"
  "$bin/rtdec" -f -o "$out/$name.png" "$out/$name.rtk"
  "$bin/rtinfo" "$out/$name.rtk"
done
echo "decoded images are in $out"
