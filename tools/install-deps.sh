#!/usr/bin/env bash
# Installs the system packages reptok builds and runs with (Debian/Ubuntu; run as root or with
# sudo available). Idempotent: does nothing when everything is present.
set -euo pipefail
pkgs=(pkg-config libzstd-dev libpng-dev libjpeg62-turbo-dev libopenblas0)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
