/**
 * The reference workloads of shared/bench/WORKLOADS.md, implemented exactly as torch_reference.py defines
 * them, so that the two engines time the same work. Each returns one record per measurement.
 */
import { backend } from '../backend/index.js';
import { Rng } from '../backend/rng.js';
import { ConfigError } from '../errors.js';
import { randint } from '../tensor/creation.js';
import { uninitF32, uninitU16 } from '../tensor/alloc.js';
import { autocast } from '../tensor/precision.js';
import { manualSeed } from '../nn/init.js';
import type { GradientCheckpointing } from '../nn/checkpoint.js';
import { noGrad } from '../tensor/autograd.js';
import { GPT2LMHeadModel, parseGPT2Config } from '../models/gpt2/model.js';
import { HFConfig } from '../models/hf/config.js';
import { makeRecord, timed, type BenchRecord } from './measure.js';

import { blockWorkload } from './block.js';
import { MODEL_WORKLOADS } from './model-workloads.js';
import { SFT_WORKLOADS } from './sft-workloads.js';

export { blockWorkload } from './block.js';

export interface WorkloadOptions {
  /** LoRA workloads: frozen base storage. */
  base?: 'none' | 'bf16' | 'int8' | 'nf4';
  /** gpt2 workloads: gradient checkpointing (true = 'full'), or 'mlp' (selective recomputation). */
  checkpointing?: GradientCheckpointing;
  dtype: 'fp32' | 'bf16';
  steps: number;
  warmup: number;
}

export type Workload = (o: WorkloadOptions) => BenchRecord[];

function randomF32(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  const d = new Float32Array(n);
  for (let i = 0; i < d.length; i++) d[i] = r.normal();
  return d;
}

/**
 * C = A @ B on the four shapes; GFLOP/s = 2MKN / time. bf16: operands stored as bf16; C in bf16 where the backend
 * writes products in bf16 (Backend.matmulToBf16, bf16 hardware: PyTorch's torch.mm of bf16 tensors, the reference,
 * writes a bf16 C too), else f32. The buffers come from the library's own allocator (tensor/alloc), as a tensor's do:
 * cache-line aligned on the native backend (16 bytes off a line, malloc's, cost AMX 15-25%; PyTorch's tensors are
 * aligned).
 */
function gemm(o: WorkloadOptions): BenchRecord[] {
  const out: BenchRecord[] = [];
  for (const [M, K, N] of [[512, 512, 512], [2048, 768, 768], [2048, 768, 3072], [2048, 3072, 768]]) {
    const cpu = !backend().device; // a device backend's buffers are its own: plain arrays there, as before
    const f32 = (n: number) => (cpu ? uninitF32(n) : new Float32Array(n)), u16 = (n: number) => (cpu ? uninitU16(n) : new Uint16Array(n));
    let a: Float32Array | Uint16Array = f32(M * K), b: Float32Array | Uint16Array = f32(K * N);
    a.set(randomF32(M * K, 1));
    b.set(randomF32(K * N, 2));
    if (o.dtype === 'bf16') {
      const a16 = u16(M * K), b16 = u16(K * N);
      backend().cast(a, 'f32', a16, 'bf16');
      backend().cast(b, 'f32', b16, 'bf16');
      a = a16;
      b = b16;
    }
    const be = backend();
    const args = { batch: 1, M, N, K, transA: false, transB: false, strideA: 0, strideB: 0, alpha: 1 };
    const toBf16 = o.dtype === 'bf16' && be.matmulToBf16 ? be.matmulToBf16 : null;
    const c = toBf16 ? u16(M * N) : f32(M * N);
    const product = toBf16
      ? () => toBf16({ ...args, a: a as Uint16Array, b: b as Uint16Array, out: c as Uint16Array })
      : () => be.matmul({ ...args, a, b, out: c as Float32Array, dtype: o.dtype === 'bf16' ? 'bf16' : 'f32', beta: 0 });
    const t = timed(product, Math.max(o.steps, 7), o.warmup);
    out.push(makeRecord(`gemm-${M}x${K}x${N}`, o.dtype, t, { gflops: Math.round((2 * M * K * N) / t.med / 1e8) / 10, out_dtype: toBf16 ? 'bf16' : 'f32' }));
  }
  return out;
}

/** The block step's Linear layers as (in, out) on its B*T = 1024 rows: qkv, proj, fc1, fc2, head. */
const BLOCK_LINEARS: [number, number][] = [[256, 768], [256, 256], [256, 1024], [1024, 256], [256, 512]];

/**
 * Floating-point operations of the block step's matrix products: each Linear's forward, input gradient and weight
 * gradient (2 * rows * in * out each), and attention's (B * H = 32 heads, T 128, head dim 64) two forward products
 * and five backward ones (the scores recomputed, dV, dP, dQ, dK), counted over the full T x T: a nominal count (the
 * wasm kernel skips the blocks above the causal diagonal, other engines compute them and mask).
 */
export function blockProductFlops(): number {
  const rows = 1024, heads = 32, T = 128, hd = 64;
  const linear = BLOCK_LINEARS.reduce((a, [i, o]) => a + 3 * 2 * rows * i * o, 0);
  return linear + 7 * 2 * heads * T * T * hd;
}

/**
 * GFLOP/s of the backend's matmul on the block step's Linear products (the 15 shapes, each layer's forward x W^T,
 * dx = dy W and dW = dy^T x), fastest of `runs` passes over the set: the GEMM kernel's own rate, apart from the
 * step's other work.
 */
export function blockGemmGflops(runs = 5): number {
  const rows = 1024, be = backend();
  const cases = BLOCK_LINEARS.flatMap(([i, o]) => [
    { M: rows, K: i, N: o, transA: false, transB: true },
    { M: rows, K: o, N: i, transA: false, transB: false },
    { M: o, K: rows, N: i, transA: true, transB: false },
  ]).map((c) => ({ ...c, a: randomF32(c.M * c.K, 3), b: randomF32(c.K * c.N, 4), out: new Float32Array(c.M * c.N) }));
  let flops = 0;
  for (const c of cases) flops += 2 * c.M * c.N * c.K;
  const pass = () => {
    for (const c of cases) be.matmul({ ...c, dtype: 'f32', batch: 1, strideA: 0, strideB: 0, alpha: 1, beta: 0 });
  };
  pass();
  let best = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    pass();
    best = Math.min(best, performance.now() - t0);
  }
  return Math.round(flops / best / 1e5) / 10;
}

/**
 * One pre-LN causal block + linear head to 512 classes + cross-entropy, SGD lr 1e-3; B8 T128 d256 h4 ff1024.
 * gflops: the step's matrix products (blockProductFlops) per second of the median step; gemm_gflops (fp32): the
 * matmul kernel alone on the step's Linear shapes (blockGemmGflops).
 */
function block(o: WorkloadOptions): BenchRecord[] {
  const w = blockWorkload();
  const compute = o.dtype === 'bf16' ? 'bf16' : 'f32';
  const t = timed(() => w.step(compute), o.steps, o.warmup);
  const total = w.params.reduce((a, p) => a + p.size, 0);
  const gflops = Math.round(blockProductFlops() / t.med / 1e8) / 10;
  return [makeRecord('block', o.dtype, t, {
    tokens_per_s: Math.round(w.tokens / t.med * 10) / 10, trainable_params: total, total_params: total, gflops,
    ...(compute === 'f32' ? { gemm_gflops: blockGemmGflops() } : {}),
  })];
}

/**
 * GPT-2 small (12 layers, d 768, 12 heads, MLP 3072, vocab 50257, 1024 positions) on the gpt2 architecture of
 * src/models/gpt2, seeded random init, inference only (noGrad): logits for every position of B8 T128.
 * GELU in its erf form as the reference defines; the LM head (tied to wte) costs the same as its untied one.
 */
function gpt2Forward(o: WorkloadOptions): BenchRecord[] {
  const B = 8, T = 128, V = 50257;
  manualSeed(0);
  const cfg = parseGPT2Config(new HFConfig({
    model_type: 'gpt2', vocab_size: V, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12, activation_function: 'gelu',
  }, '<gpt2-forward>'));
  const model = new GPT2LMHeadModel(cfg).eval();
  const ids = randint([B, T], V, 1);
  const compute = o.dtype === 'bf16' ? 'bf16' : 'f32';
  const t = timed(() => noGrad(() => autocast(compute, () => model.forward(ids))), o.steps, o.warmup);
  const total = model.parameters().reduce((a, p) => a + p.size, 0);
  return [makeRecord('gpt2-forward', o.dtype, t, { tokens_per_s: Math.round((B * T) / t.med * 10) / 10, trainable_params: 0, total_params: total })];
}

export const WORKLOADS: Record<string, Workload> = { gemm, block, 'gpt2-forward': gpt2Forward, ...MODEL_WORKLOADS, ...SFT_WORKLOADS };

export function runWorkload(name: string, o: WorkloadOptions): BenchRecord[] {
  const w = WORKLOADS[name];
  if (!w) throw new ConfigError(`unknown benchmark workload '${name}'; expected one of ${Object.keys(WORKLOADS).join(', ')}`);
  return w(o);
}
