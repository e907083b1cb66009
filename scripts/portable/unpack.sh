#!/usr/bin/env bash
# Unpacks scripts/portable/bundle.sh's archives into a checkout on the other machine, with python3 alone (no xz needed):
#
#   bash unpack.sh <checkout> <archive>...     then: source <checkout>/rt/env.sh
#
# node_modules, dist and build land in the checkout, Node and the libraries in <checkout>/rt. rt/env.sh puts them on
# PATH and LD_LIBRARY_PATH and sets AUTOGLM_PYTHON to the first python3 that imports torch (the --vs-torch references)
# and AUTOGLM_TORCH_REFERENCE to rt/torch_reference.py when it came along.
set -euo pipefail
repo=$(cd "$1" && pwd); shift
py=python3
for p in /opt/torch/.venv/bin/python3 "$(command -v python3 || true)" /usr/bin/python3; do
  if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import torch' 2>/dev/null; then py=$p; break; fi
done
for a in "$@"; do "$py" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$a" "$repo"; done
cat > "$repo/rt/env.sh" <<ENV
export PATH="$repo/rt/bin:\$PATH" LD_LIBRARY_PATH="$repo/rt/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
$("$py" -c 'import torch' 2>/dev/null && echo "export AUTOGLM_PYTHON=$py")
$([ -f "$repo/rt/torch_reference.py" ] && echo "export AUTOGLM_TORCH_REFERENCE=$repo/rt/torch_reference.py")
ENV
echo "unpacked into $repo; now: source $repo/rt/env.sh"
