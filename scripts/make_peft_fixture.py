#!/usr/bin/python3
"""PEFT interop fixture, run by hand with Debian's python3-torch (not in CI):

  /usr/bin/python3 scripts/make_peft_fixture.py write test/fixtures/peft
      A small GPT with open-autoglm's TinyGPT key names (random weights), a LoRA adapter in PEFT's file layout
      (adapter_config.json + adapter_model.safetensors, PEFT's key names, random non-zero A and B), input ids and
      the logits PyTorch computes with PEFT's LoRA math: y = x W^T + b + (alpha / r) * B(A(x)).

  /usr/bin/python3 scripts/make_peft_fixture.py check FIXTURE_DIR ADAPTER_DIR OUT.json
      Loads an adapter written by open-autoglm into the same model and writes the logits PyTorch computes.

The script implements the model and LoRA itself (transformers/peft are not installed here); the safetensors
reader/writer is the format's 8-byte header + JSON + raw little-endian data."""
import json, math, os, struct, sys
import torch, torch.nn as nn, torch.nn.functional as F

CFG = dict(vocab=40, ctx=16, dim=32, heads=4, layers=2, mlp=64)

def save_st(path, tensors):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().to(torch.float32)
        b = t.numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)

def load_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; header = json.loads(f.read(n)); data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]
        assert v["dtype"] == "F32", v["dtype"]
        out[k] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(v["shape"]).clone()
    return out

class LoRALinear(nn.Module):
    def __init__(s, base, r, alpha):
        super().__init__(); s.base = base; s.scale = alpha / r
        s.A = nn.Parameter(torch.randn(r, base.in_features) * 0.3); s.B = nn.Parameter(torch.randn(base.out_features, r) * 0.3)
    def forward(s, x):
        return s.base(x) + (x @ s.A.t() @ s.B.t()) * s.scale

class Attn(nn.Module):
    def __init__(s, d, nh):
        super().__init__(); s.nh = nh; s.qkv = nn.Linear(d, 3 * d); s.proj = nn.Linear(d, d)
    def forward(s, x):
        B, T, C = x.shape; hs = C // s.nh
        q, k, v = s.qkv(x).split(C, dim=-1)
        q, k, v = [t.view(B, T, s.nh, hs).transpose(1, 2) for t in (q, k, v)]  # (B, nh, T, hs)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        return s.proj((att @ v).transpose(1, 2).reshape(B, T, C))

class MLP(nn.Module):
    def __init__(s, d, ff):
        super().__init__(); s.fc1 = nn.Linear(d, ff); s.fc2 = nn.Linear(ff, d)
    def forward(s, x):
        return s.fc2(F.gelu(s.fc1(x)))

class Block(nn.Module):
    def __init__(s, d, nh, ff):
        super().__init__(); s.ln1 = nn.LayerNorm(d); s.attn = Attn(d, nh); s.ln2 = nn.LayerNorm(d); s.mlp = MLP(d, ff)
    def forward(s, x):
        x = x + s.attn(s.ln1(x)); return x + s.mlp(s.ln2(x))

class TinyGPT(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.wte = nn.Embedding(c["vocab"], c["dim"]); s.wpe = nn.Embedding(c["ctx"], c["dim"])
        s.blocks = nn.ModuleList([Block(c["dim"], c["heads"], c["mlp"]) for _ in range(c["layers"])])
        s.ln_f = nn.LayerNorm(c["dim"]); s.head = nn.Linear(c["dim"], c["vocab"], bias=False)
    def forward(s, idx):
        T = idx.shape[1]
        x = s.wte(idx) + s.wpe(torch.arange(T))
        for b in s.blocks: x = b(x)
        return s.head(s.ln_f(x))

TARGETS = {"attn.qkv": ("attn", "qkv"), "mlp.fc1": ("mlp", "fc1")}

def inject(model, r, alpha, targets):
    for blk in model.blocks:
        for t in targets:
            parent, name = TARGETS[t]; p = getattr(blk, parent); setattr(p, name, LoRALinear(getattr(p, name), r, alpha))

def load_adapter(model, adir):
    cfg = json.load(open(os.path.join(adir, "adapter_config.json")))
    assert cfg["peft_type"] == "LORA"
    w = load_st(os.path.join(adir, "adapter_model.safetensors"))
    targets = [t for t in TARGETS if any(k.endswith(f"{t}.lora_A.weight") for k in w)]
    inject(model, cfg["r"], cfg["lora_alpha"], targets)
    for i, blk in enumerate(model.blocks):
        for t in targets:
            parent, name = TARGETS[t]; layer = getattr(getattr(blk, parent), name)
            layer.A.data = w[f"base_model.model.blocks.{i}.{t}.lora_A.weight"]; layer.B.data = w[f"base_model.model.blocks.{i}.{t}.lora_B.weight"]
    return cfg

def write(out):
    os.makedirs(os.path.join(out, "adapter"), exist_ok=True)
    torch.manual_seed(0)
    m = TinyGPT(CFG).eval()
    save_st(os.path.join(out, "base.safetensors"), m.state_dict())
    inject(m, 4, 8, ["attn.qkv", "mlp.fc1"])
    tensors = {}
    for i, blk in enumerate(m.blocks):
        for t in ["attn.qkv", "mlp.fc1"]:
            parent, name = TARGETS[t]; layer = getattr(getattr(blk, parent), name)
            tensors[f"base_model.model.blocks.{i}.{t}.lora_A.weight"] = layer.A
            tensors[f"base_model.model.blocks.{i}.{t}.lora_B.weight"] = layer.B
    save_st(os.path.join(out, "adapter", "adapter_model.safetensors"), tensors)
    json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
               "target_modules": ["qkv", "fc1"], "bias": "none", "use_rslora": False, "use_dora": False,
               "modules_to_save": None, "fan_in_fan_out": False, "init_lora_weights": True,
               "base_model_name_or_path": None}, open(os.path.join(out, "adapter", "adapter_config.json"), "w"), indent=2)
    ids = torch.randint(0, CFG["vocab"], (2, 8))
    with torch.no_grad(): logits = m(ids)
    json.dump({"config": CFG, "ids": ids.tolist(), "logits": logits.flatten().tolist()}, open(os.path.join(out, "expected.json"), "w"))

def check(fixture, adir, out):
    m = TinyGPT(CFG).eval(); m.load_state_dict(load_st(os.path.join(fixture, "base.safetensors")))
    load_adapter(m, adir)
    ids = torch.tensor(json.load(open(os.path.join(fixture, "expected.json")))["ids"])
    with torch.no_grad(): logits = m(ids)
    json.dump({"logits": logits.flatten().tolist()}, open(out, "w"))

if __name__ == "__main__":
    if sys.argv[1] == "write": write(sys.argv[2])
    else: check(sys.argv[2], sys.argv[3], sys.argv[4])
