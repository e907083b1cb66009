#!/usr/bin/python3
"""Golden fixtures for the Hugging Face architectures (test/hf-models.test.ts).

Run by hand with Debian's interpreter (torch 1.13; `transformers` is not installed here):

    /usr/bin/python3 scripts/make_golden.py [--out test/fixtures/golden]

For each architecture it builds a tiny random model with a small PyTorch reference implementation that follows
the Hugging Face modeling code exactly (same parameter names as the checkpoints: GPT2LMHeadModel,
LlamaForCausalLM / Qwen2ForCausalLM, BertForSequenceClassification, GlmForCausalLM), and writes

    <arch>/config.json, <arch>/model.safetensors (or a sharded index), <arch>/tokenizer.json,
    <arch>/tokenizer_config.json, <arch>/golden.safetensors

golden.safetensors holds the inputs (input_ids, attention_mask, labels, ...), the logits, the loss, the gradients
of a few parameters (`grad.<key>`) and, for decoders, a greedy continuation (`greedy_prompt`, `greedy_out`).
Everything is seeded: rerunning gives the same files.
"""
import argparse, json, math, os, struct
import torch, torch.nn as nn, torch.nn.functional as F

NEG = torch.finfo(torch.float32).min  # HF's additive mask value

# ---------------------------------------------------------------------------------------------------------
# files


def write_safetensors(path, tensors, metadata=None):
    """The safetensors format: u64 header length, JSON header, raw little-endian data."""
    dt = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32", torch.int64: "I64"}
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype in (torch.float16, torch.bfloat16) else t.numpy().tobytes()
        header[name] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def save_weights(d, state, dtype=torch.float32, shards=1):
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), state, {"format": "pt"})
        return
    keys = sorted(state)
    per = math.ceil(len(keys) / shards)
    weight_map, total = {}, 0
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k] for k in keys[i * per:(i + 1) * per]}
        write_safetensors(os.path.join(d, name), part, {"format": "pt"})
        for k, v in part.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def bytes_to_unicode():
    """GPT-2's byte -> printable unicode table (the ByteLevel pre-tokenizer's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


MERGES = ["Ġ t", "h e", "Ġt he", "i n", "a n", "e r", "o n", "Ġ a", "r e", "Ġ s", "a t", "e n", "o u", "Ġ w", "Ġ o",
          "Ġ h", "Ġ c", "i s", "i t", "Ġ b", "Ġ f", "o r", "in g", "Ġ m", "Ġ d", "Ġa n", "Ġan d", "l l", "e d", "Ġ i",
          "Ġc at", "a t"]


def bpe_tokenizer(special):
    """A byte-level BPE tokenizer.json (GPT-2 / Llama-3 / Qwen2 / GLM-4 style): 256 bytes + merges + specials."""
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: i for i, b in enumerate(sorted(b2u))}
    merges = []
    for m in MERGES:
        if m in merges:
            continue
        a, b = m.split(" ")
        if a in vocab and b in vocab and a + b not in vocab:
            vocab[a + b] = len(vocab)
            merges.append(m)
    added = []
    for s in special:
        vocab[s] = len(vocab)
        added.append({"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
           "pre_tokenizer": bl, "post_processor": bl, "decoder": bl,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": vocab, "merges": merges}}
    return tok, len(vocab)


def wordpiece_tokenizer():
    """A lower-casing WordPiece tokenizer.json (BERT style) with [CLS] A [SEP] (B [SEP]) templates."""
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ["the", "a", "is", "was", "cat", "dog", "movie", "good", "bad", "very", "not", "i", "it", "and", "this",
             "film", "great", "awful", "sat", "on", "mat", "love", "hate", "##s", "##ed", "##ing", "##ly", "."]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)] + [",", "!", "?", "'"]
    pieces = special + words + letters + ["##" + c for c in letters[:26]]
    vocab = {}
    for p in pieces:
        if p not in vocab:
            vocab[p] = len(vocab)
    added = [{"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s in special]
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                          "strip_accents": None, "lowercase": True},
           "pre_tokenizer": {"type": "BertPreTokenizer"},
           "post_processor": {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                         {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                              "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                                       {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                              "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                                                 "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]}}},
           "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
           "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                     "max_input_chars_per_word": 100, "vocab": vocab}}
    return tok, len(vocab)


def randomize(model, std=0.1):
    """Non-trivial values everywhere (norm weights near 1, biases non-zero) so that a wrong bias or norm shows."""
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = "norm" in name.lower() or ".ln_" in name
            if is_norm and name.endswith(".weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def greedy(model, prompt, n):
    ids = prompt.clone()
    with torch.no_grad():
        for _ in range(n):
            logits = model(ids)
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


def causal_lm_loss(logits, labels):
    """HF's shifted loss: logits at t predict labels at t+1; -100 is ignored."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


def additive_mask(attention_mask, T, causal):
    """(B, 1, T, T) additive mask: finfo.min at future positions (causal) and at padded keys."""
    B = attention_mask.shape[0]
    m = torch.zeros(B, 1, T, T)
    if causal:
        m = m.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), NEG)
    pad = (1 - attention_mask[:, None, None, :].float()) * NEG
    return torch.clamp(m + pad, min=NEG)


# ---------------------------------------------------------------------------------------------------------
# GPT-2 (modeling_gpt2.py): Conv1D weights are (in, out)


class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.E, s.nh = c["n_embd"], c["n_head"]
        s.c_attn = Conv1D(3 * s.E, s.E)
        s.c_proj = Conv1D(s.E, s.E)

    def forward(s, x, mask):
        B, T, E = x.shape
        hs = E // s.nh
        q, k, v = s.c_attn(x).split(E, dim=2)
        q, k, v = (t.view(B, T, s.nh, hs).permute(0, 2, 1, 3) for t in (q, k, v))
        w = q @ k.transpose(-1, -2) / math.sqrt(hs) + mask
        o = (w.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(B, T, E)
        return s.c_proj(o)


class GPT2MLP(nn.Module):
    def __init__(s, c):
        super().__init__()
        inner = c["n_inner"] or 4 * c["n_embd"]
        s.c_fc = Conv1D(inner, c["n_embd"])
        s.c_proj = Conv1D(c["n_embd"], inner)

    def forward(s, x):
        return s.c_proj(gelu_new(s.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.ln_1 = nn.LayerNorm(c["n_embd"], eps=c["layer_norm_epsilon"])
        s.attn = GPT2Attention(c)
        s.ln_2 = nn.LayerNorm(c["n_embd"], eps=c["layer_norm_epsilon"])
        s.mlp = GPT2MLP(c)

    def forward(s, x, mask):
        x = x + s.attn(s.ln_1(x), mask)
        return x + s.mlp(s.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.wte = nn.Embedding(c["vocab_size"], c["n_embd"])
        s.wpe = nn.Embedding(c["n_positions"], c["n_embd"])
        s.h = nn.ModuleList([GPT2Block(c) for _ in range(c["n_layer"])])
        s.ln_f = nn.LayerNorm(c["n_embd"], eps=c["layer_norm_epsilon"])

    def forward(s, ids, attention_mask):
        T = ids.shape[1]
        x = s.wte(ids) + s.wpe(torch.arange(T))
        mask = additive_mask(attention_mask, T, True)
        for b in s.h:
            x = b(x, mask)
        return s.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.transformer = GPT2Model(c)

    def forward(s, ids, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(ids)
        return s.transformer(ids, attention_mask) @ s.transformer.wte.weight.t()  # lm_head tied to wte


# ---------------------------------------------------------------------------------------------------------
# Llama / Qwen2 (modeling_llama.py, modeling_qwen2.py) and GLM (modeling_glm.py)


class RMSNorm(nn.Module):
    def __init__(s, d, eps):
        super().__init__()
        s.weight = nn.Parameter(torch.ones(d))
        s.eps = eps

    def forward(s, x):
        return s.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps))


def rope_tables(c, T, head_dim):
    dim = int(head_dim * c.get("partial_rotary_factor", 1.0))
    inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    freqs = torch.arange(T).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rotate_half_interleaved(x):  # GLM
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def apply_rope_glm(q, cos, sin):
    cos = cos[..., : cos.shape[-1] // 2].repeat_interleave(2, dim=-1)
    sin = sin[..., : sin.shape[-1] // 2].repeat_interleave(2, dim=-1)
    rd = cos.shape[-1]
    q_rot, q_pass = q[..., :rd], q[..., rd:]
    return torch.cat([q_rot * cos + rotate_half_interleaved(q_rot) * sin, q_pass], dim=-1)


def repeat_kv(x, n):
    B, H, T, D = x.shape
    return x if n == 1 else x[:, :, None].expand(B, H, n, T, D).reshape(B, H * n, T, D)


class DecoderAttention(nn.Module):
    def __init__(s, c, qkv_bias, o_bias, glm):
        super().__init__()
        s.nh, s.nkv = c["num_attention_heads"], c["num_key_value_heads"]
        s.hd = c.get("head_dim") or c["hidden_size"] // s.nh
        s.glm, s.c = glm, c
        E = c["hidden_size"]
        s.q_proj = nn.Linear(E, s.nh * s.hd, bias=qkv_bias)
        s.k_proj = nn.Linear(E, s.nkv * s.hd, bias=qkv_bias)
        s.v_proj = nn.Linear(E, s.nkv * s.hd, bias=qkv_bias)
        s.o_proj = nn.Linear(s.nh * s.hd, E, bias=o_bias)

    def forward(s, x, mask):
        B, T, _ = x.shape
        q = s.q_proj(x).view(B, T, -1, s.hd).transpose(1, 2)
        k = s.k_proj(x).view(B, T, -1, s.hd).transpose(1, 2)
        v = s.v_proj(x).view(B, T, -1, s.hd).transpose(1, 2)
        cos, sin = rope_tables(s.c, T, s.hd)
        if s.glm:
            q, k = apply_rope_glm(q, cos, sin), apply_rope_glm(k, cos, sin)
        else:
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, s.nh // s.nkv), repeat_kv(v, s.nh // s.nkv)
        w = q @ k.transpose(2, 3) * s.hd ** -0.5 + mask
        o = (w.softmax(-1) @ v).transpose(1, 2).reshape(B, T, -1)
        return s.o_proj(o)


class LlamaMLP(nn.Module):
    def __init__(s, c):
        super().__init__()
        E, I, b = c["hidden_size"], c["intermediate_size"], c.get("mlp_bias", False)
        s.gate_proj = nn.Linear(E, I, bias=b)
        s.up_proj = nn.Linear(E, I, bias=b)
        s.down_proj = nn.Linear(I, E, bias=b)

    def forward(s, x):
        return s.down_proj(F.silu(s.gate_proj(x)) * s.up_proj(x))


class GlmMLP(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.gate_up_proj = nn.Linear(c["hidden_size"], 2 * c["intermediate_size"], bias=False)
        s.down_proj = nn.Linear(c["intermediate_size"], c["hidden_size"], bias=False)

    def forward(s, x):
        gate, up = s.gate_up_proj(x).chunk(2, dim=-1)
        return s.down_proj(up * F.silu(gate))


class DecoderLayer(nn.Module):
    def __init__(s, c, qkv_bias, o_bias, glm):
        super().__init__()
        s.self_attn = DecoderAttention(c, qkv_bias, o_bias, glm)
        s.mlp = GlmMLP(c) if glm else LlamaMLP(c)
        s.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        s.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(s, x, mask):
        x = x + s.self_attn(s.input_layernorm(x), mask)
        return x + s.mlp(s.post_attention_layernorm(x))


class DecoderModel(nn.Module):
    def __init__(s, c, qkv_bias, o_bias, glm):
        super().__init__()
        s.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        s.layers = nn.ModuleList([DecoderLayer(c, qkv_bias, o_bias, glm) for _ in range(c["num_hidden_layers"])])
        s.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(s, ids, attention_mask):
        x = s.embed_tokens(ids)
        mask = additive_mask(attention_mask, ids.shape[1], True)
        for l in s.layers:
            x = l(x, mask)
        return s.norm(x)


class DecoderForCausalLM(nn.Module):
    """LlamaForCausalLM / Qwen2ForCausalLM / GlmForCausalLM."""

    def __init__(s, c, qkv_bias, o_bias, glm=False):
        super().__init__()
        s.model = DecoderModel(c, qkv_bias, o_bias, glm)
        s.tied = c.get("tie_word_embeddings", False)
        if not s.tied:
            s.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(s, ids, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(ids)
        h = s.model(ids, attention_mask)
        return h @ s.model.embed_tokens.weight.t() if s.tied else s.lm_head(h)


# ---------------------------------------------------------------------------------------------------------
# BERT (modeling_bert.py)


class BertEmbeddings(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"])
        s.position_embeddings = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])
        s.token_type_embeddings = nn.Embedding(c["type_vocab_size"], c["hidden_size"])
        s.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(s, ids, tt):
        x = s.word_embeddings(ids) + s.token_type_embeddings(tt) + s.position_embeddings(torch.arange(ids.shape[1]))
        return s.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(s, c):
        super().__init__()
        E = c["hidden_size"]
        s.nh = c["num_attention_heads"]
        s.query, s.key, s.value = nn.Linear(E, E), nn.Linear(E, E), nn.Linear(E, E)

    def forward(s, x, mask):
        B, T, E = x.shape
        hs = E // s.nh
        q, k, v = (l(x).view(B, T, s.nh, hs).permute(0, 2, 1, 3) for l in (s.query, s.key, s.value))
        w = q @ k.transpose(-1, -2) / math.sqrt(hs) + mask
        return (w.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(B, T, E)


class BertAddNorm(nn.Module):  # BertSelfOutput / BertOutput
    def __init__(s, c, d_in):
        super().__init__()
        s.dense = nn.Linear(d_in, c["hidden_size"])
        s.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(s, h, x):
        return s.LayerNorm(s.dense(h) + x)


class BertAttention(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.self = BertSelfAttention(c)
        s.output = BertAddNorm(c, c["hidden_size"])

    def forward(s, x, mask):
        return s.output(s.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])

    def forward(s, x):
        return F.gelu(s.dense(x))


class BertLayer(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.attention = BertAttention(c)
        s.intermediate = BertIntermediate(c)
        s.output = BertAddNorm(c, c["intermediate_size"])

    def forward(s, x, mask):
        a = s.attention(x, mask)
        return s.output(s.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.layer = nn.ModuleList([BertLayer(c) for _ in range(c["num_hidden_layers"])])


class BertPooler(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.dense = nn.Linear(c["hidden_size"], c["hidden_size"])

    def forward(s, h):
        return torch.tanh(s.dense(h[:, 0]))


class BertModel(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.embeddings = BertEmbeddings(c)
        s.encoder = BertEncoder(c)
        s.pooler = BertPooler(c)

    def forward(s, ids, attention_mask, tt):
        x = s.embeddings(ids, tt)
        mask = additive_mask(attention_mask, ids.shape[1], False)
        for l in s.encoder.layer:
            x = l(x, mask)
        return x, s.pooler(x)


class BertForSequenceClassification(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.bert = BertModel(c)
        s.classifier = nn.Linear(c["hidden_size"], c["num_labels"])

    def forward(s, ids, attention_mask, tt):
        h, pooled = s.bert(ids, attention_mask, tt)
        return s.classifier(pooled), h


# ---------------------------------------------------------------------------------------------------------
# fixtures


def grads_of(model, keys):
    named = dict(model.named_parameters())
    return {f"grad.{k}": named[k].grad.clone() for k in keys}


def decoder_fixture(out, name, config, model, tok, tok_cfg, grad_keys, vocab, dtype=torch.float32, shards=1,
                    extra_state=None):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    randomize(model)
    if dtype != torch.float32:  # the reference runs on the 16-bit values, in f32
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(dtype).float())
    g = torch.Generator().manual_seed(7)
    B, T = 2, 8
    ids = torch.randint(0, vocab, (B, T), generator=g)
    am = torch.ones(B, T, dtype=torch.int64)
    am[1, 5:] = 0  # right padding on the second row
    labels = ids.masked_fill(am == 0, -100)
    logits = model(ids, am)
    loss = causal_lm_loss(logits, labels)
    loss.backward()
    prompt = ids[:1, :4]
    out_ids = greedy(model, prompt, 6)
    state = {k: v for k, v in model.state_dict().items()}
    if extra_state:
        state.update(extra_state)
    save_weights(d, state, dtype, shards)
    write_json(os.path.join(d, "config.json"), config)
    write_json(os.path.join(d, "tokenizer.json"), tok)
    write_json(os.path.join(d, "tokenizer_config.json"), tok_cfg)
    golden = {"input_ids": ids.int(), "attention_mask": am.int(), "labels": labels.int(), "logits": logits.detach(),
              "loss": loss.detach().reshape([]), "greedy_prompt": prompt.int(), "greedy_out": out_ids.int()}
    golden.update(grads_of(model, grad_keys))
    write_safetensors(os.path.join(d, "golden.safetensors"), golden)
    print(f"{name}: loss {loss.item():.6f}, params {sum(p.numel() for p in model.parameters())}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "golden"))
    out = ap.parse_args().out
    torch.manual_seed(0)
    torch.set_num_threads(1)

    tok, V = bpe_tokenizer(["<|endoftext|>"])
    eos = V - 1
    gpt_cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V, "n_positions": 32,
               "n_embd": 32, "n_layer": 2, "n_head": 4, "n_inner": 64, "activation_function": "gelu_new",
               "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
               "bos_token_id": eos, "eos_token_id": eos, "tie_word_embeddings": True, "torch_dtype": "float32"}
    tok_cfg = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "model_max_length": 32, "clean_up_tokenization_spaces": False}
    m = GPT2LMHeadModel(gpt_cfg)
    # GPT-2 checkpoints carry the causal-mask buffer `attn.bias`: the loader must ignore it.
    buffers = {f"transformer.h.{i}.attn.bias": torch.tril(torch.ones(32, 32)).view(1, 1, 32, 32) for i in range(2)}
    decoder_fixture(out, "gpt2", gpt_cfg, m, tok, tok_cfg,
                    ["transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_fc.bias",
                     "transformer.ln_f.weight"], V, extra_state=buffers)

    tok, V = bpe_tokenizer(["<s>", "</s>"])
    llama_cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": 32,
                 "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                 "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": False,
                 "mlp_bias": False, "tie_word_embeddings": False, "hidden_act": "silu", "bos_token_id": V - 2,
                 "eos_token_id": V - 1, "torch_dtype": "float32"}
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "model_max_length": 64}
    decoder_fixture(out, "llama", llama_cfg, DecoderForCausalLM(llama_cfg, False, False), tok, tok_cfg,
                    ["model.layers.0.self_attn.k_proj.weight",
                     "model.layers.1.mlp.gate_proj.weight", "model.norm.weight", "lm_head.weight"], V, shards=2)

    tok, V = bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    qwen_cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": V, "hidden_size": 32,
                "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
                "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                "tie_word_embeddings": True, "hidden_act": "silu", "sliding_window": 4096, "use_sliding_window": False,
                "bos_token_id": V - 3, "eos_token_id": V - 1, "torch_dtype": "float16"}
    tok_cfg = {"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "model_max_length": 64}
    decoder_fixture(out, "qwen2", qwen_cfg, DecoderForCausalLM(qwen_cfg, True, False), tok, tok_cfg,
                    ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.bias",
                     "model.layers.1.self_attn.v_proj.weight"], V, dtype=torch.float16)

    tok, V = bpe_tokenizer(["[gMASK]", "<sop>", "<|endoftext|>", "<|user|>", "<|assistant|>"])
    glm_cfg = {"architectures": ["GlmForCausalLM"], "model_type": "glm", "vocab_size": V, "hidden_size": 32,
               "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "head_dim": 16, "partial_rotary_factor": 0.5, "max_position_embeddings": 64, "rms_norm_eps": 1.5625e-07,
               "rope_theta": 10000.0, "attention_bias": True, "attention_dropout": 0.0, "hidden_act": "silu",
               "tie_word_embeddings": False, "pad_token_id": V - 3, "eos_token_id": [V - 3, V - 1],
               "torch_dtype": "bfloat16"}
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
               "model_max_length": 64}
    decoder_fixture(out, "glm", glm_cfg, DecoderForCausalLM(glm_cfg, True, False, glm=True), tok, tok_cfg,
                    ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.bias",
                     "model.layers.1.mlp.gate_up_proj.weight", "lm_head.weight"], V, dtype=torch.bfloat16)

    # BERT sequence classification, with padding and token types
    tok, V = wordpiece_tokenizer()
    bert_cfg = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": V,
                "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                "max_position_embeddings": 32, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
                "id2label": {"0": "negative", "1": "neutral", "2": "positive"},
                "label2id": {"negative": 0, "neutral": 1, "positive": 2}, "torch_dtype": "float32"}
    bert_cfg["num_labels"] = 3
    d = os.path.join(out, "bert")
    os.makedirs(d, exist_ok=True)
    m = BertForSequenceClassification(bert_cfg)
    randomize(m)
    g = torch.Generator().manual_seed(7)
    B, T = 3, 8
    ids = torch.randint(5, V, (B, T), generator=g)
    ids[:, 0] = 2  # [CLS]
    am = torch.ones(B, T, dtype=torch.int64)
    am[1, 6:] = 0
    am[2, 4:] = 0
    ids = ids.masked_fill(am == 0, 0)
    tt = torch.zeros(B, T, dtype=torch.int64)
    tt[0, 5:] = 1
    labels = torch.tensor([2, 0, 1])
    logits, h = m(ids, am, tt)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    mean = (h * am[..., None]).sum(1) / am.sum(1, keepdim=True)
    state = dict(m.state_dict())
    state["bert.embeddings.position_ids"] = torch.arange(32).view(1, 32)  # a persisted buffer in older checkpoints
    save_weights(d, state)
    bert_cfg.pop("num_labels")  # HF derives it from id2label
    write_json(os.path.join(d, "config.json"), bert_cfg)
    write_json(os.path.join(d, "tokenizer.json"), tok)
    write_json(os.path.join(d, "tokenizer_config.json"), {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
               "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
               "mask_token": "[MASK]", "model_max_length": 32})
    golden = {"input_ids": ids.int(), "attention_mask": am.int(), "token_type_ids": tt.int(), "labels": labels.int(),
              "logits": logits.detach(), "loss": loss.detach().reshape([]), "hidden_mean": mean.detach()}
    golden.update(grads_of(m, ["bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight",
                               "bert.encoder.layer.1.output.LayerNorm.bias", "bert.pooler.dense.weight", "classifier.weight"]))
    write_safetensors(os.path.join(d, "golden.safetensors"), golden)
    print(f"bert: loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
