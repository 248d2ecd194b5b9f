#!/usr/bin/env bash
# Install what vmrunner needs on a Debian 12 host (as root, or with sudo):
# Debian packages, then a virtualenv in .venv with vmrunner and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
PKGS=(
  qemu-system-x86 qemu-utils mmdebstrap busybox-static e2fsprogs iproute2 nftables
  util-linux python3 python3-venv python3-pip postgresql nix-bin
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}" >&2
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
echo "bootstrap: ready (.venv/bin/vmrunner)" >&2
