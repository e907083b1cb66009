#!/usr/bin/env bash
# Installs what open-autoglm needs on Debian (as root): the compiler and the native kernel libraries
# (OpenBLAS, OpenMP build; oneDNN), Gloo and Redis for the gloo communicator, Open MPI (mpirun, for the launcher
# tests), clang and lld for the WebAssembly kernels (wasm32 target), Chromium (headless, for the browser tests:
# test/browser.test.ts), Xvfb (Chromium on Mesa's llvmpipe instead of SwiftShader: test/browser-llvmpipe.test.ts),
# then the npm dependencies, which builds the native addon, the wasm kernels and dist/ (dist/web: the browser bundles).
# Without the system packages the install still succeeds, on the slower portable backend.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="g++ make python3 libopenblas-dev libopenblas0-openmp libdnnl-dev libgloo-dev redis-server openmpi-bin clang lld chromium xvfb"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing
  else
    echo "setup: missing system packages:$missing (install them as root for the fast native backend)" >&2
  fi
fi
npm ci --no-audit --no-fund
