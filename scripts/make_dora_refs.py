#!/usr/bin/env python3
"""Stored references for test/lora-torch.test.ts: a LoRA linear with rsLoRA scaling (alpha / sqrt(r)) and DoRA
written out in torch from PEFT's formulas (peft/tuners/lora/layer.py and dora.py, dropout 0), independent of our
code: y = x W^T + b + s (x A^T) B^T for LoRA; for DoRA, with the row norm ||W + s B A|| detached,
    y = x W^T + b + (m / ||W + s B A|| - 1) (x W^T) + (m / ||W + s B A||) s (x A^T) B^T.
Outputs and the gradients of sum(y * G) with respect to x, A, B and m, in float64.

    /usr/bin/python3 scripts/make_dora_refs.py   # Debian's python3-torch; writes test/fixtures/lora-torch.json
"""
import json
import math
import os

import torch

torch.manual_seed(0)
N, IN, OUT, R, ALPHA = 3, 6, 5, 4, 8.0
cases = []
for use_rslora in [False, True]:
    for use_dora in [False, True]:
        W = torch.randn(OUT, IN, dtype=torch.float64) * 0.5
        b = torch.randn(OUT, dtype=torch.float64) * 0.1
        A = (torch.randn(R, IN, dtype=torch.float64) * 0.3).requires_grad_()
        B = (torch.randn(OUT, R, dtype=torch.float64) * 0.3).requires_grad_()
        s = ALPHA / math.sqrt(R) if use_rslora else ALPHA / R
        m0 = (W + s * B.detach() @ A.detach()).norm(dim=1) * (1 + 0.1 * torch.arange(OUT, dtype=torch.float64))
        m = m0.clone().requires_grad_()
        x = torch.randn(N, IN, dtype=torch.float64).requires_grad_()
        G = torch.randn(N, OUT, dtype=torch.float64)
        base = x @ W.T
        lora = (x @ A.T) @ B.T * s
        if use_dora:
            norm = (W + s * B @ A).norm(dim=1).detach()
            scale = m / norm
            y = base + b + (scale - 1) * base + scale * lora
        else:
            y = base + b + lora
        (y * G).sum().backward()
        flat = lambda t: t.detach().reshape(-1).tolist()
        cases.append({"useRslora": use_rslora, "useDora": use_dora, "n": N, "in": IN, "out": OUT, "r": R, "alpha": ALPHA, "scaling": s,
                      "W": flat(W), "b": flat(b), "A": flat(A), "B": flat(B), "m": flat(m0), "x": flat(x), "G": flat(G), "y": flat(y),
                      "gradX": flat(x.grad), "gradA": flat(A.grad), "gradB": flat(B.grad), "gradM": flat(m.grad) if use_dora else None})
path = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "lora-torch.json")
with open(path, "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f)
print("wrote", os.path.normpath(path))
