#!/usr/bin/env bash
# Cold install time, side by side in one run: the lock install that `make install` does against
# the resolving install it replaced (`pip install torch`, then `pip install -e '.[test]'`).
# Each gets a new virtual environment and an empty pip cache, so both download everything.
# Usage: bash benchmarks/bench_install.sh   (about 5 minutes; needs the package registry)
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run() {  # name, then the command; prints wall seconds
  local name="$1"; shift
  local t0; t0=$(date +%s.%N)
  "$@" > "$work/$name.log" 2>&1 || { echo "$name failed:"; tail -20 "$work/$name.log"; exit 1; }
  printf '%-34s %6.1f s\n' "$name" "$(echo "$(date +%s.%N) - $t0" | bc)"
}

resolving() {
  python3 -m venv "$work/v1"
  PIP_CACHE_DIR="$work/cache1" "$work/v1/bin/pip" install --quiet $TORCH_SPEC
  PIP_CACHE_DIR="$work/cache1" "$work/v1/bin/pip" install --quiet -e '.[test]'
}

locked() {
  PIP_CACHE_DIR="$work/cache2" make --always-make install VENV="$work/v2" TORCH_SPEC="$TORCH_SPEC"
}

echo "cold install, new venv, empty pip cache ($(nproc) cores)"
run "resolving (newest in range)" resolving
run "locked (make install)" locked
