"""A PyTorch reference script (shared/bench/torch_reference.py, scripts/torch-sft-reference.py) run as it is, with its
timing loop serving rounds to an interleaved run (src/bench/rounds.ts) instead of timing all its steps at once:

    python3 scripts/torch-rounds.py <reference.py> <workload> [the reference's arguments]

The reference's `timed(fn, steps, warmup)` is replaced by one that runs the warm-up, writes `ROUNDS READY`, then for
each line `n` on stdin runs n steps and writes their times (ms) as a JSON array on one line, until a line `0` (or the
end of stdin); it returns the median, minimum and maximum over every step it ran, so the script reports as before.
Nothing else of the reference changes: its models, data and steps are the ones timed.
"""
import json, statistics, sys, time

if len(sys.argv) < 3:
    sys.exit("usage: torch-rounds.py <reference.py> <workload> [arguments]")
path = sys.argv[1]
with open(path) as f:
    src = f.read()
SIGNATURE = "def timed(fn, steps, warmup):"
if src.count(SIGNATURE) != 1:
    sys.exit(f"{path}: expected one '{SIGNATURE}' to serve rounds from; found {src.count(SIGNATURE)}")


def timed_rounds(fn, steps, warmup):
    for _ in range(warmup):
        fn()
    print("ROUNDS READY", flush=True)
    ts = []
    for line in sys.stdin:
        n = int(line.strip() or 0)
        if n <= 0:
            break
        got = []
        for _ in range(n):
            t0 = time.perf_counter(); fn(); got.append(time.perf_counter() - t0)
        print(json.dumps([t * 1e3 for t in got]), flush=True)
        ts += got
    if not ts:
        sys.exit("an interleaved run ended a measurement before its first round")
    return statistics.median(ts), min(ts), max(ts)


# the reference's own definition stays (renamed); `timed` is bound to the round server
src = src.replace(SIGNATURE, "timed = _timed_rounds\ndef _reference_timed(fn, steps, warmup):", 1)
sys.argv = [path] + sys.argv[2:]
exec(compile(src, path, "exec"), {"__name__": "__main__", "__file__": path, "_timed_rounds": timed_rounds})
