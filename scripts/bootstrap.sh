#!/usr/bin/env bash
# Install what vmrunner needs on a Debian 12 host (as root, or with sudo):
# Debian packages, then a virtualenv in .venv with vmrunner and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
# Every program that src/ or tests/ run must come from one of these (or Debian's base
# system): tests/test_bootstrap_programs.py checks it.
PKGS=(
  qemu-system-x86 qemu-utils mmdebstrap busybox-static e2fsprogs iproute2 nftables
  util-linux uidmap python3 python3-venv python3-pip postgresql nix-bin git cpio procps nodejs
  chromium  # tests/dashboard: Playwright drives /usr/bin/chromium (it cannot fetch its own)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node (for the tests' real peers from npm: GitHub's workflow parser, the toolkit):
# nodejs above; Debian's npm, unless the installed node brings its own npm.
if ! command -v npm >/dev/null; then
  missing+=(npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}" >&2
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Image builds run recipe code (maintainer scripts, `run:` commands) in a user namespace
# where root is root's subordinate id range (vmrunner.images.idmap): give root a range of
# 65536 ids in /etc/subuid and /etc/subgid, after every range already there.
for f in /etc/subuid /etc/subgid; do
  [ -e "$f" ] || $SUDO touch "$f"
  if ! grep -q '^root:' "$f"; then
    start=$(awk -F: 'BEGIN { m = 100000 } $2 + $3 > m { m = $2 + $3 } END { print m }' "$f")
    echo "root:$start:65536" | $SUDO tee -a "$f" >/dev/null
  fi
done
# The system user QEMU runs as when vmrunner runs as root (the qemu_user setting, "auto"):
# no home, no login, its own group, and kvm (for /dev/kvm) when that group exists.
if ! getent passwd vmrunner-qemu >/dev/null; then
  $SUDO useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin vmrunner-qemu
fi
if getent group kvm >/dev/null && ! id -nG vmrunner-qemu | tr ' ' '\n' | grep -qx kvm; then
  $SUDO usermod -a -G kvm vmrunner-qemu
fi
# The tests' npm packages (GitHub's workflow parser, for the differential test of
# `vmrunner check`), pinned by tests/node/package-lock.json.
npm ci --prefix tests/node --no-audit --no-fund
# Debian's own Python (3.11.2 on Debian 12), not whatever python3 is first on PATH:
# that is what a fresh machine runs vmrunner with.
PY=${PYTHON:-/usr/bin/python3}
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')" != \
  "$("$PY" -c 'import sys; print(sys.base_prefix)')" ]; then
  echo "bootstrap: .venv was made with another Python; making it anew with $PY" >&2
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
echo "bootstrap: ready (.venv/bin/vmrunner)" >&2
