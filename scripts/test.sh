#!/usr/bin/env bash
# The full test suite: lint, format check, types, then every test (real QEMU VMs under TCG included).
set -euo pipefail
cd "$(dirname "$0")/.."
V=.venv/bin
"$V/ruff" check src tests bench
"$V/ruff" format --check src tests bench
"$V/mypy" --strict src
# two processes, each test file on one of them (module fixtures stay whole)
"$V/pytest" -q -n 2 --dist loadfile --durations=25 "$@"
