#!/usr/bin/python3
"""PyTorch's per-operator profile of one workload of shared/bench/torch_reference.py (the reference our benchmarks run
against), to set beside our own per-kernel profiles (scripts/profile-block.ts, profile-cls.ts, profile-gpt2.ts):

  OPENBLAS_CORETYPE=SkylakeX LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \\
    /usr/bin/python3 scripts/torch-profile.py block --dtype bf16 [--steps 10] [--rows 25]

Runs the reference script unchanged except that its timing function also runs torch.profiler over `--steps` more steps
and prints the operators by self CPU time, per step. Needs Debian's python3-torch and ../shared/bench beside the repo."""
import os, sys

here = os.path.dirname(os.path.abspath(__file__))
ref = os.path.join(here, "..", "..", "shared", "bench", "torch_reference.py")
if not os.path.exists(ref):
    sys.exit(f"torch-profile: {ref} is missing (the shared folder beside the repository)")
rows = 25
if "--rows" in sys.argv:
    i = sys.argv.index("--rows"); rows = int(sys.argv[i + 1]); del sys.argv[i:i + 2]
sys.argv = [ref] + sys.argv[1:]
src = open(ref).read().replace("def timed(fn, steps, warmup):", "def _timed(fn, steps, warmup):", 1)

def timed(fn, steps, warmup):
    from torch.profiler import profile, ProfilerActivity
    r = g["_timed"](fn, steps, warmup)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps): fn()
    print(f"torch.profiler over {steps} steps (divide the totals by {steps} for a step):", file=sys.stderr)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows), file=sys.stderr)
    return r

g = {"__name__": "__main__", "__file__": ref, "timed": timed}
exec(compile(src, ref, "exec"), g)
