/**
 * Universal Sentence Encoder Lite, as read from the shipped TF.js graph (scope KonaTransformer, 2 layers,
 * 6,975,744 parameters). B sentences, T tokens (T <= 128), pre-norm tensor2tensor layers ("n" before, "a" after):
 *
 *   inputs: SentencePiece ids as a sparse batch (indices (N, 2) = [sentence, position], values (N));
 *           positions >= 128 are dropped (ClipToMaxLength); densified with -1 as padding, mask = id >= 0
 *   e   = Embeddings_en[ids]                                       (B, T, 256)  vocab 8002 x 256
 *   x0  = e + (e + timing(pos))                                    (B, T, 256)  the graph's Layer_0/add sums
 *         the embeddings and AddTimingSignal's output, so the embeddings count twice
 *         timing(pos) = [sin(pos * inv), cos(pos * inv)], inv_i = 1e4^(-i/127), i < 128 (stored constant)
 *   Layer_0 (256 -> 512):
 *     h   = LN(x0)                                                 (B, T, 256)  eps 1e-6
 *     qkv = h W_qkv + b                                            (B, T, 768)  1x1 conv kernel [1,1,256,768]
 *     q, k, v split and shaped (B, 4, T, 64); att = softmax(q k^T / 8 - 1e9 * pad(key)) v
 *     a   = att W_o + b                                            (B, T, 512)  kernel [1,1,256,512]
 *     x1  = a + (x0 W_dense + b)                                   (B, T, 512)  AdjustResidualInput (256 -> 512)
 *     x2  = x1 + relu(LN(x1) W1 + b1) W2 + b2                      (B, T, 512)  FFN 512 -> 1536 -> 512
 *   Layer_1 (512 -> 512): x3 = x2 + MHA(LN(x2)) (4 heads of 128, scale 1/sqrt(128)); x4 = x3 + FFN(LN(x3))
 *   (no final layer norm)
 *   pooled = sum_t x4 * mask / max(len, 1)                         (B, 512)
 *   out    = l2_normalize(tanh(pooled W_h + b_h)), |.|^2 floored at 1e-12   (B, 512)
 *
 * The graph gathers the real tokens before each position-wise op and scatters them back (zeros at padding).
 * Here the batch stays padded: position-wise ops also run on padding, which never reaches a real token
 * (padded keys get the same -1e9 bias, pooling is masked), so each sentence's result is the graph's.
 */
import { Tensor } from '../../tensor/tensor.js';
import { noGrad, releaseWithGraph } from '../../tensor/autograd.js';
import { fusedQKVAttention, fusedQKVReadsBf16 } from '../../tensor/ops/nn.js';
import { releaseAfterRead } from '../../tensor/ops/elementwise.js';
import { Module, ModuleList } from '../../nn/module.js';
import { maybeCheckpoint, runLayers, type ActivationRecomputable } from '../../nn/checkpoint.js';
import { Dropout, Embedding, LayerNorm, Linear, linearThenActivation } from '../../nn/layers.js';
import { ConfigError, ShapeError, fmtShape } from '../../errors.js';
import type { USELiteConfig } from './config.js';
import { USETokenizer, padBatch } from './tokenizer.js';

/**
 * Multi-head self-attention with a fused qkv projection. Child names equal the properties they live in
 * (LoRA's `setChild` swaps a Linear by that name).
 */
export class MultiheadAttention extends Module {
  readonly qkv_transform: Linear;
  readonly output_transform: Linear;
  constructor(readonly inDim: number, readonly outDim: number, readonly heads: number) {
    super();
    if (inDim % heads !== 0) throw new ConfigError(`'MultiheadAttention' width ${inDim} is not divisible by heads ${heads}`);
    this.qkv_transform = this.module('qkv_transform', new Linear(inDim, 3 * inDim));
    this.output_transform = this.module('output_transform', new Linear(inDim, outDim));
  }
  /**
   * x (B, T, C); keyMask (B, T): 1 at padding keys, or null. The graph adds -1e9 to padded keys' scores; the
   * fused kernel gives them probability exactly 0, which is the same in float32.
   */
  forward(x: Tensor, keyMask: Tensor | null): Tensor {
    // the projection in bf16 where the fused kernel reads it so
    const qkv = this.qkv_transform.forward(x, { bf16Output: fusedQKVReadsBf16(x.shape[0], x.shape[1], 3 * this.inDim, this.heads, { mask: keyMask }) });
    const o = fusedQKVAttention(qkv, this.heads, { mask: keyMask }); // (B, T, C)
    return this.output_transform.forward(o, { consume: true }); // (B, T, outDim); o is read by it alone
  }
}

/** relu(x W1 + b1) W2 + b2: TF's conv1 / conv2 (position-wise dense layers). */
export class FFN extends Module implements ActivationRecomputable {
  recomputeActivation = false;
  readonly conv1: Linear;
  readonly conv2: Linear;
  constructor(dim: number, hidden: number) {
    super();
    this.conv1 = this.module('conv1', new Linear(dim, hidden));
    this.conv2 = this.module('conv2', new Linear(hidden, dim));
  }
  forward(x: Tensor): Tensor {
    // conv2 alone reads the activation, the activation alone conv1's output: both in bf16 under bf16 autocast
    return this.conv2.forward(maybeCheckpoint(this.recomputeActivation, this.conv1, (x) => linearThenActivation(this.conv1, 'relu', x), x), { consume: true });
  }
}

/** x + MHA(LN(x)) (through a dense residual projection when the width grows), then + FFN(LN(.)). */
export class TransformerLayer extends Module {
  readonly mha_norm: LayerNorm;
  readonly mha: MultiheadAttention;
  readonly adjust_residual: Linear | null;
  readonly ffn_norm: LayerNorm;
  readonly ffn: FFN;
  readonly drop: Dropout;
  constructor(inDim: number, cfg: USELiteConfig, heads: number) {
    super();
    this.mha_norm = this.module('mha_norm', new LayerNorm(inDim, cfg.lnEps));
    this.mha = this.module('mha', new MultiheadAttention(inDim, cfg.dim, heads));
    this.adjust_residual = inDim !== cfg.dim ? this.module('adjust_residual', new Linear(inDim, cfg.dim)) : null;
    this.ffn_norm = this.module('ffn_norm', new LayerNorm(cfg.dim, cfg.lnEps));
    this.ffn = this.module('ffn', new FFN(cfg.dim, cfg.ffnDim));
    this.drop = this.module('drop', new Dropout(cfg.dropout ?? 0));
  }
  forward(x: Tensor, keyMask: Tensor | null): Tensor {
    const residual = this.adjust_residual ? this.adjust_residual.forward(x) : x; // (B, T, dim)
    // each norm's output is read by its sublayer alone (NormOptions.privateOutput)
    const h = residual.add(this.drop.forward(this.mha.forward(this.mha_norm.forward(x, { privateOutput: true }), keyMask)));
    const n = this.ffn_norm.forward(h, { privateOutput: true });
    const out = h.add(this.drop.forward(this.ffn.forward(n)));
    releaseAfterRead(h, [n, out]); // read by ffn_norm and the second sum alone
    return out;
  }
}

export interface EmbedOptions {
  /** Sentences per forward pass (sorted by length, so that little padding is computed). */
  batchSize?: number;
}

/** USE-Lite: ids -> 512-d L2-normalised sentence embeddings. Load the shipped weights with `loadUSELite`. */
export class USELite extends Module {
  /** Each layer runs through `checkpoint` in training (its activations recomputed in backward); off by default. */
  gradientCheckpointing = false;
  readonly embeddings: Embedding;
  readonly layers: ModuleList<TransformerLayer>;
  readonly tanh_layer: Linear;
  /** Inverse timescales of the timing signal (embedDim / 2), a constant of the graph, not a parameter. */
  invTimescales: Float32Array;
  private readonly timing = new Map<number, Tensor>();

  constructor(readonly cfg: USELiteConfig, public tokenizer: USETokenizer | null = null) {
    super();
    if (cfg.layers.length === 0) throw new ConfigError(`'USELite' needs at least one layer; got 0`);
    if (cfg.layers[0].inDim !== cfg.embedDim) throw new ConfigError(`'USELite' layer 0 takes ${cfg.layers[0].inDim}; expected embedDim ${cfg.embedDim}`);
    if (cfg.embedDim % 2 !== 0) throw new ConfigError(`'USELite' embedDim ${cfg.embedDim} must be even (sin and cos halves)`);
    this.embeddings = this.module('embeddings', new Embedding(cfg.vocabSize, cfg.embedDim));
    this.layers = this.module('layers', new ModuleList(cfg.layers.map((l, i) => {
      if (i > 0 && l.inDim !== cfg.dim) throw new ConfigError(`'USELite' layer ${i} takes ${l.inDim}; expected ${cfg.dim} (only layer 0 changes width)`);
      return new TransformerLayer(l.inDim, cfg, l.heads);
    })));
    this.tanh_layer = this.module('tanh_layer', new Linear(cfg.dim, cfg.dim));
    this.invTimescales = defaultInvTimescales(cfg.embedDim / 2, cfg.maxTimescale);
  }

  /** Sets the timing-signal constant (from the checkpoint). */
  setInvTimescales(inv: Float32Array): void {
    if (inv.length !== this.cfg.embedDim / 2) throw new ShapeError(`'setInvTimescales' got ${inv.length} values; expected ${this.cfg.embedDim / 2}`);
    this.invTimescales = inv;
    this.timing.clear();
  }

  /** (T, embedDim): [sin(t * inv), cos(t * inv)] computed in float32, as the graph does. */
  private timingSignal(T: number): Tensor {
    let s = this.timing.get(T);
    if (!s) {
      const half = this.invTimescales.length, E = 2 * half;
      const d = new Float32Array(T * E);
      for (let t = 0; t < T; t++) {
        for (let i = 0; i < half; i++) {
          const a = Math.fround(t * this.invTimescales[i]);
          d[t * E + i] = Math.sin(a);
          d[t * E + half + i] = Math.cos(a);
        }
      }
      s = new Tensor(d, 'f32', [T, E]);
      this.timing.set(T, s);
    }
    return s;
  }

  private checkBatch(ids: Tensor, mask: Tensor | null): void {
    if (ids.ndim !== 2 || ids.dtype !== 'i32' || ids.shape[1] > this.cfg.maxLength) {
      throw new ShapeError(`Argument 'ids' passed to 'USELite.forward' is ${ids.dtype} ${fmtShape(ids.shape)}; expected i32 [B, T] with T <= ${this.cfg.maxLength}`);
    }
    if (mask && (mask.ndim !== 2 || mask.shape[0] !== ids.shape[0] || mask.shape[1] !== ids.shape[1])) {
      throw new ShapeError(`Argument 'attentionMask' passed to 'USELite.forward' has shape ${fmtShape(mask.shape)}; expected ${fmtShape(ids.shape)} like 'ids'`);
    }
  }

  /**
   * Token states (B, T, dim) of ids (B, T) i32; attentionMask (B, T) has 1 at tokens and 0 at padding
   * (null: every position is a token). Padded positions hold values that no token depends on.
   */
  encode(ids: Tensor, attentionMask: Tensor | null = null): Tensor {
    this.checkBatch(ids, attentionMask);
    const [B, T] = ids.shape;
    const e = this.embeddings.forward(ids); // (B, T, embedDim)
    let x = e.add(e.add(this.timingSignal(T))); // the graph adds the timed embeddings to the embeddings
    let keyMask: Tensor | null = null;
    if (attentionMask) {
      const m = attentionMask.f32();
      releaseWithGraph(x); // read by the mask alone
      x = x.mul(new Tensor(m, 'f32', [B, T, 1])); // the graph's scatter leaves zeros at padding
      const pad = new Float32Array(B * T);
      for (let i = 0; i < pad.length; i++) pad[i] = m[i] === 0 ? 1 : 0;
      keyMask = new Tensor(pad, 'f32', [B, T]);
    }
    // made here and read by the sums and the first layer alone: back to the pool with the graph
    releaseWithGraph(e, x);
    return runLayers(this.layers, this.gradientCheckpointing, (layer, h) => layer.forward(h, keyMask), x); // (B, T, dim)
  }

  /** Mean of the token states over tokens (B, dim): the input of the tanh layer. */
  pool(states: Tensor, attentionMask: Tensor | null = null): Tensor {
    const [B, T] = states.shape;
    if (!attentionMask) return states.sum(1).div(Math.max(T, 1));
    const m = attentionMask.f32();
    const len = new Float32Array(B);
    for (let b = 0; b < B; b++) {
      let n = 0;
      for (let t = 0; t < T; t++) n += m[b * T + t];
      len[b] = Math.max(n, 1);
    }
    return states.mul(new Tensor(m, 'f32', [B, T, 1])).sum(1).div(new Tensor(len, 'f32', [B, 1])); // (B, dim)
  }

  /** Sentence embeddings (B, dim), L2-normalised: l2_normalize(tanh(pool(encode(ids)) W + b)). */
  forward(ids: Tensor, attentionMask: Tensor | null = null): Tensor {
    const states = this.encode(ids, attentionMask);
    const pooled = this.pool(states, attentionMask);
    releaseWithGraph(states); // read by the pooling alone here
    const y = this.tanh_layer.forward(pooled).tanh(); // (B, dim)
    return y.div(y.square().sum(-1, true).maximum(this.cfg.l2Eps).sqrt());
  }

  private requireTokenizer(op: string): USETokenizer {
    if (!this.tokenizer) throw new ConfigError(`'USELite.${op}' needs a tokenizer; load the model with loadUSELite() or set 'tokenizer'`);
    return this.tokenizer;
  }

  /** Token ids of texts, padded into one batch (clipped to maxLength), ready for `forward`. */
  tokenize(texts: readonly string[]): { ids: Tensor; attentionMask: Tensor; lengths: number[] } {
    return this.requireTokenizer('tokenize').encodeBatch(texts, this.cfg.maxLength);
  }

  /** Embeddings (N, dim) of texts, without gradients, batched by length; row i belongs to texts[i]. */
  embed(texts: readonly string[], opts: EmbedOptions = {}): Tensor {
    const tok = this.requireTokenizer('embed');
    const batchSize = opts.batchSize ?? 64;
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new ConfigError(`Option 'batchSize' passed to 'USELite.embed' is ${batchSize}; expected a positive integer`);
    const D = this.cfg.dim;
    const seqs = texts.map((t) => tok.encode(t));
    const order = seqs.map((_, i) => i).sort((a, b) => seqs[a].length - seqs[b].length || a - b);
    const out = new Float32Array(texts.length * D);
    noGrad(() => {
      for (let s = 0; s < order.length; s += batchSize) {
        const idx = order.slice(s, s + batchSize);
        const batch = padBatch(idx.map((i) => seqs[i]), this.cfg.maxLength);
        const e = this.forward(batch.ids, batch.attentionMask).f32(); // (b, D)
        idx.forEach((i, r) => out.set(e.subarray(r * D, (r + 1) * D), i * D));
      }
    });
    return new Tensor(out, 'f32', [texts.length, D]);
  }
}

/** tensor2tensor's inverse timescales: (1/maxTimescale)^(i / (n - 1)), i < n, in float32. */
export function defaultInvTimescales(n: number, maxTimescale: number): Float32Array {
  const inc = Math.log(maxTimescale) / Math.max(n - 1, 1);
  return Float32Array.from({ length: n }, (_, i) => Math.exp(-i * inc));
}
