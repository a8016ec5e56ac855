#!/usr/bin/env bash
# Installs a model that shipped as the default in an earlier commit, so that .rtk files made
# with it still decode:  tools/install-model.sh COMMIT   (docs/MODELS.md lists them)
# It copies Sources/RepTokCodec/Models/default.safetensors as of COMMIT into
# ${XDG_DATA_HOME:-$HOME/.local/share}/reptok/models/, where rtdec looks for models by fingerprint.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 COMMIT" >&2; exit 64; }
cd "$(dirname "$0")/.."
dir="${XDG_DATA_HOME:-$HOME/.local/share}/reptok/models"
mkdir -p "$dir"
dest="$dir/reptok-$(git rev-parse --short "$1").safetensors"
git show "$1:Sources/RepTokCodec/Models/default.safetensors" > "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "installed $dest"
