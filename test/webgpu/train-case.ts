/**
 * A training run whose state never leaves the device: embedding -> layer norm -> Linear -> GELU -> Linear ->
 * cross-entropy, backward through every kernel, AdamW on every parameter, for 8 steps; only the losses are read
 * back (one read per step, the design's logging point). The same function runs on the portable backend; the two
 * loss trajectories and the final parameters must agree.
 */
import type { PortableBackend } from '../../src/backend/portable.js';
import type { WebGpuBackend } from '../../src/backend/webgpu/index.js';
import { Rng } from '../../src/backend/rng.js';
import type { Case } from './cases-elementwise.js';
import { compare } from './twin.js';

type Arr = Float32Array | Int32Array;
/** The part of a backend the run uses, with its storage type left open (typed arrays or device arrays). */
interface Kit {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  k: any;
  up(a: Arr, dtype: 'f32' | 'i32'): unknown;
  zeros(n: number): unknown;
  read(x: unknown): Promise<Arr>;
}

const V = 50, D = 32, F = 64, C = 7, N = 24, STEPS = 8;

async function run(K: Kit, seed: number): Promise<{ losses: number[]; params: Arr[] }> {
  const rng = new Rng(seed);
  const rand = (n: number, s: number): Float32Array => Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * s);
  const ids = K.up(Int32Array.from({ length: N }, () => rng.int(V)), 'i32');
  const targets = K.up(Int32Array.from({ length: N }, () => rng.int(C)), 'i32');
  const params = [K.up(rand(V * D, 1), 'f32'), K.up(Float32Array.from({ length: D }, () => 1), 'f32'), K.zeros(D),
    K.up(rand(D * F, 0.2), 'f32'), K.up(rand(F * C, 0.2), 'f32')];
  const [emb, gamma, beta, w1, w2] = params;
  const grads = params.map((_, i) => K.zeros([V * D, D, D, D * F, F * C][i]));
  const ms = grads.map((_, i) => K.zeros([V * D, D, D, D * F, F * C][i]));
  const vs = grads.map((_, i) => K.zeros([V * D, D, D, D * F, F * C][i]));
  const mm = (a: unknown, b: unknown, out: unknown, M: number, Nn: number, Kk: number, transA: boolean, transB: boolean): void =>
    K.k.matmul({ a, b, out, dtype: 'f32', batch: 1, M, N: Nn, K: Kk, transA, transB, strideA: 0, strideB: 0, alpha: 1, beta: 0 });
  const losses: number[] = [];
  for (let step = 1; step <= STEPS; step++) {
    // forward
    const x = K.zeros(N * D), h = K.zeros(N * D), mean = K.zeros(N), rstd = K.zeros(N);
    K.k.gather(emb, ids, D, x);
    K.k.layerNorm(x, gamma, beta, N, D, 1e-5, h, mean, rstd);
    const a = K.zeros(N * F), g = K.zeros(N * F), logits = K.zeros(N * C), loss = K.zeros(N), logp = K.zeros(N * C);
    mm(h, w1, a, N, F, D, false, false);
    K.k.unary('gelu', a, g);
    mm(g, w2, logits, N, C, F, false, false);
    K.k.crossEntropy(logits, targets, N, C, -100, 0.05, loss, logp);
    const total = K.zeros(1);
    K.k.reduce('sum', loss, 1, N, 1, total);
    losses.push((await K.read(total))[0] / N);
    // backward
    for (const gr of grads) K.k.fill(gr, 0);
    const dloss = K.up(Float32Array.from({ length: N }, () => 1 / N), 'f32');
    const dlogits = K.zeros(N * C), dg = K.zeros(N * F), da = K.zeros(N * F), dh = K.zeros(N * D), dx = K.zeros(N * D);
    K.k.crossEntropyBackward(logp, targets, N, C, -100, 0.05, dloss, dlogits);
    mm(g, dlogits, grads[4], F, C, N, true, false);
    mm(dlogits, w2, dg, N, F, C, false, true);
    K.k.unaryBackward('gelu', a, g, dg, da);
    mm(h, da, grads[3], D, F, N, true, false);
    mm(da, w1, dh, N, D, F, false, true);
    K.k.layerNormBackward(dh, x, gamma, mean, rstd, N, D, dx, grads[1], grads[2]);
    K.k.scatterAdd(dx, ids, D, grads[0]);
    params.forEach((p, i) => K.k.adamw({ param: p, grad: grads[i], m: ms[i], v: vs[i], lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8,
      weightDecay: 0.01, step, gradScale: 1 }));
  }
  return { losses, params: await Promise.all(params.map((p) => K.read(p))) };
}

export const trainCases: Case[] = [{
  name: 'a device-resident training run (embedding, layer norm, MLP, cross-entropy, AdamW; 8 steps)',
  async run(t, P: PortableBackend, G: WebGpuBackend) {
    const cpu = await run({ k: P, up: (a) => a.slice(), zeros: (n) => new Float32Array(n), read: async (x) => x as Arr }, 7);
    const gpu = await run({ k: G, up: (a, dt) => G.upload(a, dt), zeros: (n) => G.alloc('f32', n), read: (x) => G.read(x as never) as Promise<Arr> }, 7);
    const lc = Float32Array.from(cpu.losses), lg = Float32Array.from(gpu.losses);
    t.report(compare('loss trajectory', lg, lc, 'f32', 1e-4, 1e-6), `portable ${cpu.losses.map((l) => l.toFixed(5)).join(' ')}; ` +
      `webgpu ${gpu.losses.map((l) => l.toFixed(5)).join(' ')}`);
    if (!(cpu.losses[STEPS - 1] < cpu.losses[0] - 0.05)) throw new Error(`the loss did not fall: ${cpu.losses.join(', ')}`);
    cpu.params.forEach((p, i) => t.report(compare(`parameter ${i} after ${STEPS} steps`, gpu.params[i], p, 'f32', 1e-3, 1e-5)));
  },
}];
