"""PyTorch's side of onednn-bf16-matmul.cc: the same shapes as a Linear under bf16 autocast runs them (bf16 dst,
weights [N,K], bias) and as a plain bf16 matmul (weights [K,N]); median and best ms of 25 calls after 5.

    python3 scripts/experiments/torch-bf16-matmul.py [M K N ...]   (torch.set_num_threads(2))
"""
import sys, time
import torch
import torch.nn.functional as F

torch.set_num_threads(2)
d = [int(x) for x in sys.argv[1:]] or [512, 512, 512, 2048, 768, 768, 2048, 768, 3072, 2048, 3072, 768, 1024, 256, 1024,
                                       1024, 1024, 256, 2048, 264, 1024, 2048, 1032, 256, 2048, 776, 256]


def timed(fn):
    t = []
    for i in range(30):
        t0 = time.perf_counter(); fn(); dt = (time.perf_counter() - t0) * 1e3
        if i >= 5: t.append(dt)
    t.sort()
    return t[len(t) // 2], t[0]


for i in range(0, len(d) - 2, 3):
    M, K, N = d[i:i + 3]
    x = torch.randn(M, K).bfloat16(); W = torch.randn(N, K).bfloat16(); b = torch.randn(N).bfloat16(); B = torch.randn(K, N).bfloat16()
    xt = torch.randn(K, M).bfloat16()
    for name, fn in [("torch linear+bias (W [N,K])", lambda: F.linear(x, W, b)), ("torch matmul (B [K,N])", lambda: torch.matmul(x, B)),
                     ("torch matmul A trans", lambda: torch.matmul(xt.t(), B))]:
        med, best = timed(fn)
        print(f"{M:5d}x{K:5d}x{N:5d}  {name:<26s} med {med:7.3f} ms  best {best:7.3f}  {2 * M * K * N / med / 1e6:7.1f} GFLOP/s", flush=True)
