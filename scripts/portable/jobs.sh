# Sourced by the portable measurement scripts (bf16-suite.sh): run from the checkout with $out (the log
# folder) and $L (seconds a job may take) set. Gives:
#   machine.log in $out   the date, the CPU and its bf16 flags, Node, PyTorch, the CPU pairs;
#   P                     pairs of logical CPUs ("0,1" ...): a core's two threads where the topology says so, else
#                         neighbours; P4 the same CPUs four at a time ("0,1,2,3" ...);
#   pin <cpus> cmd...     cmd pinned to those CPUs with taskset (unpinned where they do not exist or taskset is missing);
#   job <name> "<cmds>"   the commands in the background, stopped after $L seconds, logged to $out/<name>.log.
{ date -u; lscpu; grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E 'amx|avx512_bf16|avx512_fp16' | tr '\n' ' '; echo
  node --version; ${AUTOGLM_PYTHON:-/usr/bin/python3} -c 'import torch; print("torch", torch.__version__)'; } > "$out/machine.log" 2>&1
read -r -a P <<< "$(python3 - <<'PY'
import os, glob, collections
g = collections.OrderedDict()
for c in sorted(glob.glob('/sys/devices/system/cpu/cpu[0-9]*'), key=lambda p: int(p.rsplit('cpu', 1)[1])):
    n = int(c.rsplit('cpu', 1)[1])
    try: s = open(c + '/topology/thread_siblings_list').read().strip()
    except OSError: s = str(n)
    g.setdefault(s, []).append(n)
v = list(g.values())
if not (v and all(len(x) == 2 for x in v)):
    f = sorted(os.sched_getaffinity(0)); v = [f[i:i + 2] for i in range(0, len(f) - 1, 2)]
print(' '.join(','.join(map(str, x)) for x in v))
PY
)"
P4=()
for ((i = 0; i + 1 < ${#P[@]}; i += 2)); do P4+=("${P[i]},${P[i + 1]}"); done
echo "cpu pairs: ${P[*]:-none}" >> "$out/machine.log"
pin() { local c=$1; shift; if [ -n "$c" ] && command -v taskset >/dev/null && taskset -c "$c" true 2>/dev/null; then taskset -c "$c" "$@"; else "$@"; fi; }
export -f pin
job() { local name=$1; shift; ( timeout -k 5 "$L" bash -c "$*" ) > "$out/$name.log" 2>&1 & }
