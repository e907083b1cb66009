#!/usr/bin/env bash
# The open questions of issue #17 on an AMX CPU, in one run of about 5 minutes: whether the narrower zero fill of
# oneDNN's buffers (AUTOGLM_DNNL_FILL_SCOPE=tails, native/matmul.cc) keeps every product exact, and what it saves.
# Each job on its own pair of CPUs at 2 threads (scripts/portable/jobs.sh); phase 1 and phase 2 each stop after
# [seconds, default 150].
#
#   bash scripts/portable/amx-diag.sh <out-dir> [seconds]
#
# Run from a checkout that scripts/portable/unpack.sh filled (with the weights archive), after `source rt/env.sh`.
# Phase 1: the sweep of products that read their buffers (rt/bin/onednn-dst-reads), oneDNN's products variant by
# variant against PyTorch's (rt/bin/onednn-bf16-matmul, scripts/experiments/torch-bf16-matmul.py), the probe
# (AUTOGLM_DNNL_PROBE) over the exactness tests and the workloads, the workloads under both scopes.
# Phase 2: the exactness tests under the tails scope (twice) and under the default.
# The end prints what carries the figures; every log stays in <out-dir> (keep them in one archive: a transfer may
# bring back only a few files).
set -u
cd "$(dirname "$0")/../.."
out=$(mkdir -p "$1" && cd "$1" && pwd)
L=${2:-150}
PY=${AUTOGLM_PYTHON:-/usr/bin/python3}
export AUTOGLM_NUM_THREADS=2 PY
source scripts/portable/jobs.sh
ab() { for i in $(seq $3); do echo "== all $1"; pin "$2" node bin/autoglm.js bench $1 --dtype bf16 --threads 2 $4
  echo "== tails $1"; AUTOGLM_DNNL_FILL_SCOPE=tails pin "$2" node bin/autoglm.js bench $1 --dtype bf16 --threads 2 $4; done; }
export -f ab
EXACT="test/native-smoke.test.ts test/checkpoint.test.ts test/train-resume.test.ts test/data-parallel.test.ts test/bf16-trajectory.test.ts test/sft-task.test.ts"
t0=$(date +%s)
job sweep "pin '${P[0]:-}' rt/bin/onednn-dst-reads; pin '${P[0]:-}' rt/bin/onednn-bf16-matmul; pin '${P[0]:-}' \"\$PY\" scripts/experiments/torch-bf16-matmul.py"
job probe "AUTOGLM_DNNL_PROBE=1 pin '${P[1]:-}' node --import tsx --test --test-concurrency=1 $EXACT; \
  for w in gpt2-lora-sft-packed cls-full cls-lora block; do AUTOGLM_DNNL_PROBE=1 pin '${P[1]:-}' node bin/autoglm.js bench \$w --dtype bf16 --threads 2 --steps 1 --warmup 0; done"
job gemm "for i in 1 2 3; do echo '== all'; pin '${P[2]:-}' node bin/autoglm.js bench gemm --vs-torch --dtype bf16 --threads 2; echo '== tails'; AUTOGLM_DNNL_FILL_SCOPE=tails pin '${P[2]:-}' node bin/autoglm.js bench gemm --dtype bf16 --threads 2; done"
job block "ab block '${P[3]:-}' 3 ''; ab cls-lora '${P[3]:-}' 3 ''"
job gpt2 "ab gpt2-lora '${P[4]:-}' 3 '--steps 2 --warmup 1'"
job vs-torch "for w in block cls-lora cls-full; do for i in 1 2 3; do pin '${P[5]:-}' node --import tsx scripts/bench-dtypes.ts \$w --vs-torch --dtypes bf16 --repeat 1 --threads 2; done; done"
job vs-torch-gpt2 "for w in gpt2-lora gpt2-full; do for i in 1 2 3; do pin '${P[6]:-}' node --import tsx scripts/bench-dtypes.ts \$w --vs-torch --dtypes bf16 --repeat 1 --threads 2 --steps 3 --warmup 1; done; done"
wait
echo "phase 1: $(( $(date +%s) - t0 )) s"
job tails1 "AUTOGLM_DNNL_FILL_SCOPE=tails pin '${P4[0]:-}' node --import tsx --test --test-concurrency=2 $EXACT"
job tails2 "AUTOGLM_DNNL_FILL_SCOPE=tails pin '${P4[1]:-}' node --import tsx --test --test-concurrency=2 $EXACT"
job default "pin '${P4[2]:-}' node --import tsx --test --test-concurrency=2 $EXACT test/lora-linear.test.ts test/bf16-widened.test.ts test/precision.test.ts"
wait
echo "total: $(( $(date +%s) - t0 )) s"
echo "== sweep"; grep -E 'depend|tested' "$out/sweep.log" | tail -30
echo "== probe"; grep -h 'oneDNN product' "$out/probe.log" | sort | uniq -c
for f in probe tails1 tails2 default; do echo "== tests $f"; grep -E '^# (tests|pass|fail)|^not ok' "$out/$f.log"; done
echo "== A/B all vs tails"; grep -hE '^==|ms_per_step' "$out/gemm.log" "$out/block.log" "$out/gpt2.log" | grep -v torch | sed -E 's/engine=open-autoglm-native +//; s/ +(peak_rss_mb|ms_min|ms_max|threads|trainable_params|total_params|tokens_per_s|train_peak_rss_mb)=[^ ]*//g' | cut -c1-120
echo "== vs torch"; grep -hE 'ours/torch|GFLOP/s ours' "$out"/*.log | sed -E 's/; peak RSS MB:.*//; s/peak RSS ours[^)]*\) //' | cut -c1-200
tar -czf "$out.tar.gz" -C "$(dirname "$out")" "$(basename "$out")" && echo "logs: $out.tar.gz"
