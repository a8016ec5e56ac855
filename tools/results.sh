#!/usr/bin/env bash
# docs/RESULTS.md and docs/results/*.png from ONE command on a fresh Debian machine with Swift:
# installs the system packages (reptok's, the four classical codecs, libjxl-devtools for
# butteraugli/ssimulacra), a Python venv in .build-results/venv (git-ignored) with pinned
# packages and this checkout's package (pip install -e python), then runs
# python/scripts/make_results.py (arguments are passed on, e.g. --skip-bench).
# About 15-25 minutes on 2 cores, most of it the classical codecs' sweep and the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
want=(libjpeg-turbo-progs webp libavif-bin libjxl-tools libjxl-devtools)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  # libjxl-devtools is optional (the page then leaves butteraugli/ssimulacra out).
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null \
    || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]/libjxl-devtools/}" >/dev/null
fi
venv=.build-results/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, skimage, pytorch_msssim, matplotlib, reptok.model' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.13.0+cpu scikit-image==0.26.0 pytorch-msssim==1.0.0 matplotlib \
    pillow numpy safetensors
  "$venv/bin/pip" install -q -e python
fi
PATH="$PWD/$venv/bin:$PATH" exec python python/scripts/make_results.py "$@"
