#!/usr/bin/env bash
# Installs the Python side for the tests (`make test` calls it): CPU PyTorch pinned to the
# version the conformance fixtures are reproducible with, then this checkout's package
# `pip install -e python[train,test]` (transformers 5.24.0, safetensors, numpy, zstandard, pytest).
# Idempotent and quick: does nothing when the pinned versions and this checkout's package are
# already importable. Prints the Python interpreter to use (last line of stdout); pip's own
# output goes to stderr.
#
# Interpreter: $REPTOK_PYTHON if set; else python3 when it may be installed into (a virtual
# environment, or a Python that is not "externally managed" by the distribution, e.g. pyenv);
# else the virtual environment .venv/ of the checkout (created here; Debian/Ubuntu's python3
# needs python3-venv, installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TORCH=2.13.0
TORCH_CPU="torch==$TORCH+cpu"
TORCH_INDEX=https://download.pytorch.org/whl/cpu

ready() {   # the pinned packages and THIS checkout's reptok, without importing torch
  "$1" - "$ROOT" "$TORCH" <<'PY' 2>/dev/null
import importlib.metadata as md, importlib.util, os, sys
root, torch_v = sys.argv[1], sys.argv[2]
assert md.version("torch").split("+")[0] == torch_v
assert md.version("transformers") == "5.24.0"
for p in ("safetensors", "numpy", "zstandard", "pytest"):
    md.version(p)
spec = importlib.util.find_spec("reptok")
assert spec and os.path.realpath(spec.origin) == os.path.realpath(os.path.join(root, "python", "reptok", "__init__.py"))
PY
}

externally_managed() {
  "$1" - <<'PY'
import os, sys, sysconfig
in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if (not in_venv and os.path.exists(marker)) else 1)
PY
}

PY=${REPTOK_PYTHON:-}
if [ -z "$PY" ]; then
  PY=$(command -v python3 || true)
  [ -n "$PY" ] || { echo "install-python: no python3 (apt-get install python3)" >&2; exit 1; }
  if [ -x .venv/bin/python ]; then
    PY=$ROOT/.venv/bin/python
  elif externally_managed "$PY"; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" 2>/dev/null; then
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      echo "install-python: installing python3-venv" >&2
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    fi
    echo "install-python: creating .venv/ (the system python3 is externally managed)" >&2
    python3 -m venv .venv
    PY=$ROOT/.venv/bin/python
  fi
fi

if ready "$PY"; then
  echo "$PY"
  exit 0
fi
pip=("$PY" -m pip install -q --disable-pip-version-check)
have_torch=$("$PY" -c "import importlib.metadata as m; print(m.version('torch'))" 2>/dev/null || true)
if [ "${have_torch%%+*}" != "$TORCH" ]; then
  echo "install-python: installing $TORCH_CPU" >&2
  # the +cpu wheel resolves from the default index on the project machines (find-links); elsewhere
  # from PyTorch's CPU index
  "${pip[@]}" "$TORCH_CPU" >&2 2>/dev/null || "${pip[@]}" "$TORCH_CPU" --extra-index-url "$TORCH_INDEX" >&2
fi
echo "install-python: installing python/ (editable) with [train,test]" >&2
"${pip[@]}" -e "python[train,test]" >&2
ready "$PY" || { echo "install-python: the packages are still not importable with $PY" >&2; exit 1; }
echo "$PY"
