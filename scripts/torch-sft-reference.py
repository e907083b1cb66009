"""PyTorch reference of the SFT step on the gpt2-lora workload (src/bench/sft-workloads.ts says what it is).

The model, LoRA and optimizer are those of ../shared/bench/torch_reference.py's gpt2-lora (GPT-2-small shape:
12 pre-LN blocks, d 768, 12 heads, MLP 3072 with erf GELU, vocab 50257, untied head without bias; LoRA r=8
alpha=16 on every block's fused qkv, A kaiming-uniform, B zeros; AdamW lr 1e-4 wd 0.01 on the LoRA parameters),
with explicit attention as there (or --attention sdpa: F.scaled_dot_product_attention with the same mask). The
batch is task sft's:
  gpt2-lora-sft:        example i (0..7) has 128 - 8i tokens, right-padded to 128; padded keys masked; loss on
                        the second half of each example (the first half is its prompt), padding ignored;
  gpt2-lora-sft-packed: row r holds examples of 48, 40, 24, 16 tokens rotated by r; positions restart in each
                        example; a query sees earlier keys of its own example only; loss on each second half.
  gpt2-lora-dpo:        gpt2-lora-sft's rows read as 4 pairs (rows 0-3 chosen, 4-7 rejected), DPO's sigmoid loss
                        (beta 0.1) on the answers' summed log-probabilities (TRL's selective_log_softmax) against
                        fixed reference log-probabilities, as TRL's DPOTrainer with precomputed reference values.
  gpt2-lora-kto:        those rows as 8 unpaired examples (even rows desirable), TRL's KTOTrainer step: the KL rows'
                        log-probabilities under no_grad (the same 8 rows: the same work), the KL estimate clamped
                        at 0, KTO's loss (beta 0.1) against fixed reference values.

Usage: python3 torch-sft-reference.py gpt2-lora-sft|gpt2-lora-sft-packed|gpt2-lora-dpo|gpt2-lora-kto [--threads 2] [--dtype fp32|bf16]
       [--steps 10] [--warmup 3] [--attention explicit|sdpa] [--json]
Prints the fields of torch_reference.py (engine, workload, dtype, threads, ms_per_step, ...).
"""
import argparse, json, math, resource, statistics, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("workload", choices=["gpt2-lora-sft", "gpt2-lora-sft-packed", "gpt2-lora-dpo", "gpt2-lora-kto"])
p.add_argument("--threads", type=int, default=2)
p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--attention", default="explicit", choices=["explicit", "sdpa"])
p.add_argument("--json", action="store_true")
a = p.parse_args()
if a.attention == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
    sys.exit(f"--attention sdpa needs torch >= 2.0 (F.scaled_dot_product_attention); this is torch {torch.__version__}")
torch.set_num_threads(a.threads)
torch.manual_seed(0)
IGNORE = -100
B, T, V = 8, 128, 50257


def timed(fn, steps, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), max(ts)


class Block(nn.Module):
    def __init__(s, d, nh, ff):
        super().__init__()
        s.nh = nh
        s.ln1 = nn.LayerNorm(d); s.qkv = nn.Linear(d, 3 * d); s.proj = nn.Linear(d, d)
        s.ln2 = nn.LayerNorm(d); s.fc1 = nn.Linear(d, ff); s.fc2 = nn.Linear(ff, d)

    def forward(s, x, blocked):  # blocked: (B, 1, T, T) bool, True where a query may not see a key
        Bb, Tt, C = x.shape; hs = C // s.nh
        q, k, v = s.qkv(s.ln1(x)).split(C, dim=-1)
        q = q.view(Bb, Tt, s.nh, hs).transpose(1, 2)
        k = k.view(Bb, Tt, s.nh, hs).transpose(1, 2)
        v = v.view(Bb, Tt, s.nh, hs).transpose(1, 2)
        if a.attention == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked)
        else:
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
            att = att.masked_fill(blocked, float("-inf")).softmax(-1)
            o = att @ v
        x = x + s.proj(o.transpose(1, 2).reshape(Bb, Tt, C))
        return x + s.fc2(F.gelu(s.fc1(s.ln2(x))))


class LoRALinear(nn.Module):
    def __init__(s, base, r, alpha):
        super().__init__()
        s.base = base; s.scale = alpha / r
        s.A = nn.Parameter(torch.empty(r, base.in_features)); nn.init.kaiming_uniform_(s.A, a=math.sqrt(5))
        s.B = nn.Parameter(torch.zeros(base.out_features, r))
        for q in base.parameters(): q.requires_grad_(False)

    def forward(s, x):
        return s.base(x) + (x @ s.A.t() @ s.B.t()) * s.scale


class LM(nn.Module):
    def __init__(s):
        super().__init__()
        s.wte = nn.Embedding(V, 768); s.wpe = nn.Embedding(1024, 768)
        s.blocks = nn.ModuleList([Block(768, 12, 3072) for _ in range(12)])
        s.ln_f = nn.LayerNorm(768); s.head = nn.Linear(768, V, bias=False)

    def forward(s, idx, pos, blocked, labels=None):
        x = s.wte(idx) + s.wpe(pos)
        for b in s.blocks: x = b(x, blocked)
        logits = s.head(s.ln_f(x))
        if labels is None:
            return logits
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=IGNORE)


# ---- the batch
packed = a.workload == "gpt2-lora-sft-packed"
rows = [[48, 40, 24, 16][r % 4:] + [48, 40, 24, 16][:r % 4] for r in range(B)] if packed else [[T - 8 * i] for i in range(B)]
idx = torch.randint(0, V, (B, T))
labels = torch.full((B, T), IGNORE, dtype=torch.long)
pos = torch.zeros(B, T, dtype=torch.long)
doc = torch.full((B, T), -1, dtype=torch.long)  # -1: padding
for b, lens in enumerate(rows):
    t0 = 0
    for d, n in enumerate(lens):
        pos[b, t0:t0 + n] = torch.arange(n)
        doc[b, t0:t0 + n] = d
        labels[b, t0 + n // 2:t0 + n] = idx[b, t0 + n // 2:t0 + n]
        t0 += n
causal = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
if packed:
    blocked = causal | (doc[:, :, None] != doc[:, None, :])
else:  # padded keys masked; a padding query still sees the real tokens before it
    blocked = causal | (doc[:, None, :] < 0)
blocked = blocked[:, None]
tokens = int((doc >= 0).sum())

m = LM()
for q in m.parameters(): q.requires_grad_(False)
for blk in m.blocks: blk.qkv = LoRALinear(blk.qkv, 8, 16)
params = [q for q in m.parameters() if q.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)


def selective_log_softmax(logits, index):
    """TRL's (trl/trainer/utils.py): log-softmax of the chosen entries without a second logits-sized tensor."""
    if logits.dtype in (torch.float32, torch.float64):
        picked = torch.gather(logits, dim=-1, index=index.unsqueeze(-1)).squeeze(-1)
        return picked - torch.stack([torch.logsumexp(lg, dim=-1) for lg in logits])
    return torch.stack([torch.gather(F.log_softmax(lg, dim=-1), dim=-1, index=ix.unsqueeze(-1)).squeeze(-1) for lg, ix in zip(logits, index)])


dpo = a.workload == "gpt2-lora-dpo"
ref = torch.tensor([-math.log(V) * ((T - 8 * r) // 2) for r in range(B)])  # a uniform model's (ours uses the same)


kto = a.workload == "gpt2-lora-kto"


def answer_logps():
    logits = m(idx, pos, blocked)
    lab = labels[:, 1:].clone(); scored = lab != IGNORE; lab[~scored] = 0
    return (selective_log_softmax(logits[:, :-1], lab) * scored).sum(-1)


def kto_loss():
    m.eval()
    with torch.no_grad():
        kl = (answer_logps() - ref).mean().clamp(min=0)
    m.train()
    r = answer_logps() - ref
    good = torch.arange(B) % 2 == 0
    return torch.where(good, 1 - torch.sigmoid(0.1 * (r - kl)), 1 - torch.sigmoid(0.1 * (kl - r))).mean()


def dpo_loss():
    lp = answer_logps()
    h = B // 2
    z = (lp[:h] - ref[:h]) - (lp[h:] - ref[h:])
    return -F.logsigmoid(0.1 * z).mean()


def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=(a.dtype == "bf16")):
        loss = dpo_loss() if dpo else kto_loss() if kto else m(idx, pos, blocked, labels)
    loss.backward(); opt.step()


med, lo, hi = timed(step, a.steps, a.warmup)
r = {"engine": f"torch-{torch.__version__}", "workload": a.workload, "dtype": a.dtype, "threads": a.threads,
     "ms_per_step": round(med * 1e3, 3), "ms_min": round(lo * 1e3, 3), "ms_max": round(hi * 1e3, 3),
     "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
     "tokens_per_s": round(tokens / med, 1), "trainable_params": sum(q.numel() for q in params),
     "total_params": sum(q.numel() for q in m.parameters()), "tokens": tokens, "attention": a.attention}
print(json.dumps(r) if a.json else "  ".join(f"{k}={v}" for k, v in r.items()))
