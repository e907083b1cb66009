/**
 * Text generation with a causal LM: greedy decoding or sampling (temperature, then top-k, then top-p, the
 * order transformers applies its logits warpers), seeded by a counter-based Rng so that a seed gives the same
 * text on every backend, with a KV cache (one forward over the prompt, then one position per step).
 */
import { Tensor } from '../../tensor/tensor.js';
import { noGrad } from '../../tensor/autograd.js';
import { Rng } from '../../backend/rng.js';
import { ConfigError } from '../../errors.js';
import type { CausalLM } from './family.js';
import { KVCache } from './layers.js';

export interface GenerateOptions {
  /** Tokens to add (default 32). */
  maxNewTokens?: number;
  /** false (default): greedy; true: sample from the (warped) distribution. */
  doSample?: boolean;
  /** Sampling temperature (> 0, default 1). */
  temperature?: number;
  /** Keep the k most likely tokens (0 = all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = all). */
  topP?: number;
  seed?: number;
  /** Stop after any of these ids (default: none). */
  eosTokenId?: number | number[] | null;
  /** false: recompute the whole sequence at each step (the reference the cache is tested against). */
  useCache?: boolean;
  /** Called with each new token as it is chosen (streaming). */
  onToken?: (id: number) => void;
}

function check(o: GenerateOptions): Required<Omit<GenerateOptions, 'eosTokenId' | 'onToken'>> {
  const r = { maxNewTokens: 32, doSample: false, temperature: 1, topK: 0, topP: 1, seed: 0, useCache: true, ...o };
  const bad = (k: string, v: unknown, want: string) => new ConfigError(`option '${k}' passed to 'generate' is ${v}; expected ${want}`);
  if (!Number.isInteger(r.maxNewTokens) || r.maxNewTokens < 0) throw bad('maxNewTokens', r.maxNewTokens, 'an integer >= 0');
  if (!(r.temperature > 0)) throw bad('temperature', r.temperature, 'a number > 0 (use doSample: false for greedy decoding)');
  if (!Number.isInteger(r.topK) || r.topK < 0) throw bad('topK', r.topK, 'an integer >= 0');
  if (!(r.topP > 0 && r.topP <= 1)) throw bad('topP', r.topP, 'a number in (0, 1]');
  return r;
}

/** Index of the largest value (the first on ties, as torch.argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Samples a token from logits after temperature, top-k and top-p warping. */
export function sampleToken(logits: Float32Array, o: { temperature: number; topK: number; topP: number }, rng: Rng): number {
  const V = logits.length;
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a]); // most likely first
  let keep = o.topK > 0 ? Math.min(o.topK, V) : V;
  const max = logits[order[0]];
  const p = new Float64Array(keep);
  let z = 0;
  for (let i = 0; i < keep; i++) {
    p[i] = Math.exp((logits[order[i]] - max) / o.temperature);
    z += p[i];
  }
  if (o.topP < 1) {
    // Keep tokens while the mass before them is below top_p (the first token always stays).
    let cum = 0, n = 0;
    while (n < keep && cum / z < o.topP) cum += p[n++];
    keep = Math.max(1, n);
    z = cum;
  }
  let u = rng.uniform() * z;
  for (let i = 0; i < keep; i++) {
    u -= p[i];
    if (u < 0) return order[i];
  }
  return order[keep - 1];
}

/** Continues `prompt` (token ids); returns prompt + new tokens. */
export function generate(model: CausalLM, prompt: number[], opts: GenerateOptions = {}): number[] {
  const o = check(opts);
  if (prompt.length === 0) throw new ConfigError(`'generate' needs a prompt of at least one token`);
  const eos = new Set(opts.eosTokenId === undefined || opts.eosTokenId === null ? [] : Array.isArray(opts.eosTokenId) ? opts.eosTokenId : [opts.eosTokenId]);
  const rng = new Rng(o.seed);
  const out = [...prompt];
  const wasTraining = model.training;
  model.eval();
  try {
    noGrad(() => {
      const cache = o.useCache ? new KVCache(model.numLayers) : null;
      let next = out;
      for (let step = 0; step < o.maxNewTokens; step++) {
        if (model.maxPositions !== null && out.length >= model.maxPositions) break;
        const ids = new Tensor(Int32Array.from(next), 'i32', [1, next.length]);
        const logits = model.forward(ids, { cache }); // (1, T, V)
        const V = logits.shape[2];
        const last = logits.slice(1, next.length - 1, next.length).f32().subarray(0, V);
        const id = o.doSample ? sampleToken(last, o, rng) : argmax(last);
        out.push(id);
        opts.onToken?.(id);
        if (eos.has(id)) break;
        next = cache ? [id] : out;
      }
    });
  } finally {
    model.train(wasTraining);
  }
  return out;
}
