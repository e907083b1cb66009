/**
 * GLM-4 as transformers' GlmForCausalLM (model_type 'glm'): the Llama decoder stack (../llama/model.ts) with
 * q/k/v biases, a fused `mlp.gate_up_proj` (gate then up, SwiGLU) and partial rotary embeddings
 * (partial_rotary_factor 0.5) in the *interleaved* layout: transformers' GLM rotates the pairs
 * (x[2i], x[2i+1]) of the first rotaryDim features by angle pos * inv_freq[i].
 *
 * The engine's `rope` rotates the pairs (x[i], x[i + rotaryDim/2]) (rotate-half). GLM's rotation is the same
 * rotation on features reordered so that the even ones come first: with P the permutation that moves x[2i] to
 * i and x[2i+1] to rotaryDim/2 + i, interleavedRope(x) = P^T rope(P x). Attention only uses q k^T, and
 * (P q)(P k)^T = q k^T, so q and k are deinterleaved (P applied, one strided copy each) before `rope` and are
 * never permuted back; v and the weights keep the checkpoint layout (loading, saving and PEFT adapters are
 * untouched). The KV cache holds keys in the permuted layout, which is consistent with the queries.
 * The golden test (test/hf-models.test.ts) checks logits and gradients against transformers' formulation.
 */
import { Tensor } from '../../tensor/tensor.js';
import { rope } from '../../tensor/ops/nn.js';
import { concat } from '../../tensor/ops/movement.js';
import { Module } from '../../nn/module.js';
import { maybeCheckpoint, type ActivationRecomputable } from '../../nn/checkpoint.js';
import type { Linear } from '../../nn/layers.js';
import type { HFConfig } from '../hf/config.js';
import type { HFFamily } from '../hf/family.js';
import { makeLinear } from '../hf/layers.js';
import { buildDecoder, parseDecoderConfig, type DecoderConfig, type DecoderParts } from '../llama/model.js';

export function parseGlmConfig(c: HFConfig): DecoderConfig {
  const cfg = parseDecoderConfig(c, { attentionBias: true, partialRotary: 0.5 });
  cfg.oBias = false; // GlmAttention.o_proj has no bias
  return cfg;
}

/** mlp.gate_up_proj (E -> 2I, no bias) split into gate | up; down_proj(up * silu(gate)). */
export class GlmMLP extends Module implements ActivationRecomputable {
  recomputeActivation = false;
  readonly gate_up_proj: Linear;
  readonly down_proj: Linear;
  constructor(readonly cfg: DecoderConfig) {
    super();
    this.gate_up_proj = this.module('gate_up_proj', makeLinear(cfg.hiddenSize, 2 * cfg.intermediateSize, false));
    this.down_proj = this.module('down_proj', makeLinear(cfg.intermediateSize, cfg.hiddenSize, false));
  }
  forward(x: Tensor): Tensor {
    const I = this.cfg.intermediateSize;
    const act = (x: Tensor) => {
      const gu = this.gate_up_proj.forward(x); // (B, T, 2I)
      const gate = gu.slice(-1, 0, I), up = gu.slice(-1, I, 2 * I); // (B, T, I) each
      return up.mul(gate.silu());
    };
    return this.down_proj.forward(maybeCheckpoint(this.recomputeActivation, this.gate_up_proj, act, x));
  }
}

/** (B, H, T, D) with the first `rot` features reordered evens-then-odds (P x); the rest unchanged. */
export function deinterleave(x: Tensor, rot: number): Tensor {
  const D = x.shape[3];
  const parts = [x.slice(3, 0, rot, 2), x.slice(3, 1, rot, 2)]; // (B, H, T, rot/2) each: x[2i], x[2i+1]
  if (rot < D) parts.push(x.slice(3, rot, D)); // (B, H, T, D - rot)
  return concat(parts, 3); // (B, H, T, D)
}

export const GLM_PARTS: DecoderParts = {
  mlp: (cfg) => new GlmMLP(cfg),
  rotate(q, k, cos, sin) {
    const rot = 2 * cos.shape[1];
    return [rope(deinterleave(q, rot), cos, sin), rope(deinterleave(k, rot), cos, sin)];
  },
};

export const glmFamily: HFFamily<DecoderConfig> = {
  name: 'glm',
  modelTypes: ['glm'],
  architectures: ['GlmForCausalLM', 'GlmModel', 'GlmForSequenceClassification'],
  defaultTask: 'causal-lm',
  basePrefix: 'model',
  ignoredKeys: [/\.rotary_emb\.inv_freq$/],
  parseConfig: parseGlmConfig,
  build: (cfg, opts) => buildDecoder(cfg, GLM_PARTS, 'Glm', opts),
};
