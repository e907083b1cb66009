#!/usr/bin/env python3
"""Stored PyTorch references for test/optim-torch.test.ts: learning-rate schedules (LinearLR, CosineAnnealingLR,
a LinearLR warm-up then cosine through SequentialLR), ReduceLROnPlateau (min/max, rel/abs thresholds, patience,
cooldown, min_lr), RMSprop (momentum, eps, alpha, weight decay) and clip_grad_norm_ at several max norms.

    /usr/bin/python3 scripts/make_optim_refs.py   # Debian's python3-torch; writes test/fixtures/optim-torch.json

The tests read the JSON; torch is not needed at test time.
"""
import json
import os

import torch

out = {"torch": torch.__version__}


def lrs(make_sched, steps, lr=0.1):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make_sched(opt)
    got = []
    for _ in range(steps):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return got


out["linear"] = {"lr": 0.1, "total": 10,
                 "lrs": lrs(lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=10), 12)}
out["cosine"] = {"lr": 0.1, "tMax": 10, "minLr": 0.01,
                 "lrs": lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.01), 11)}
W, N = 4, 14


def warmup_cosine(o):
    warm = torch.optim.lr_scheduler.LinearLR(o, start_factor=1.0 / W, end_factor=1.0, total_iters=W - 1)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=N - W, eta_min=0.0)
    return torch.optim.lr_scheduler.SequentialLR(o, [warm, cos], milestones=[W])


out["warmupCosine"] = {"lr": 0.1, "warmup": W, "total": N, "lrs": lrs(warmup_cosine, N)}

metrics = {
    "min": [1.0, 0.95, 0.96, 0.97, 0.5, 0.49, 0.495, 0.6, 0.7, 0.8, 0.9, 0.45, 0.46, 0.47, 0.48, 0.49],
    "max": [0.1, 0.2, 0.21, 0.19, 0.18, 0.5, 0.49, 0.48, 0.47, 0.46, 0.8, 0.79, 0.78, 0.77, 0.76, 0.75],
}
plateau = []
for mode in ["min", "max"]:
    for threshold_mode, threshold in [("rel", 0.1), ("abs", 0.02)]:
        for patience, cooldown in [(1, 0), (2, 2)]:
            p = torch.nn.Parameter(torch.zeros(1))
            opt = torch.optim.SGD([p], lr=1.0)
            s = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.5, patience=patience, threshold=threshold,
                                                           threshold_mode=threshold_mode, cooldown=cooldown, min_lr=0.1)
            got = []
            for m in metrics[mode]:
                s.step(m)
                got.append(opt.param_groups[0]["lr"])
            plateau.append({"mode": mode, "thresholdMode": threshold_mode, "threshold": threshold, "patience": patience,
                            "cooldown": cooldown, "factor": 0.5, "minLr": 0.1, "metrics": metrics[mode], "lrs": got})
out["plateau"] = plateau

w0 = [0.5, -1.25, 2.0, 0.1, -0.3]
grads = [[0.3, -0.2, 0.05, 1.5, 0.0], [-0.1, 0.4, 0.2, -0.7, 0.01], [0.05, 0.05, -0.3, 0.2, -0.02]]
rms = []
for momentum, eps, alpha, wd in [(0.0, 1e-8, 0.99, 0.0), (0.9, 1e-3, 0.9, 0.0), (0.5, 0.1, 0.8, 0.05), (0.7, 1e-6, 0.99, 0.01)]:
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = torch.optim.RMSprop([p], lr=0.01, alpha=alpha, eps=eps, momentum=momentum, weight_decay=wd)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    rms.append({"lr": 0.01, "alpha": alpha, "eps": eps, "momentum": momentum, "weightDecay": wd, "w0": w0, "grads": grads,
                "w": p.detach().tolist()})
out["rmsprop"] = rms

ga, gb = [3.0, -4.0, 0.5], [[1.0, 2.0], [-2.0, 0.25]]
clip = []
for max_norm in [0.5, 2.5, 1e3]:
    a = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    a.grad = torch.tensor(ga, dtype=torch.float64)
    b.grad = torch.tensor(gb, dtype=torch.float64)
    norm = torch.nn.utils.clip_grad_norm_([a, b], max_norm)
    clip.append({"maxNorm": max_norm, "grads": [ga, sum(gb, [])], "norm": float(norm), "clipped": [a.grad.tolist(), sum(b.grad.tolist(), [])]})
out["clip"] = clip

path = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "optim-torch.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", os.path.normpath(path))
