/**
 * Non-finite gradients and error feedback: a NaN or an infinity on one rank skips the step on every rank, leaves
 * residuals / DGC momentum / compressor state exactly as they were, and training continues as if the step had not
 * happened; with loss scaling, residuals are kept in unscaled units. Every built-in compressor, with residual and
 * DGC error feedback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/backend/rng.js';
import { Tensor } from '../src/tensor/tensor.js';
import { DataParallel } from '../src/distributed/data-parallel.js';
import { SingleCommunicator } from '../src/distributed/single.js';
import { COMPRESSION_METHODS, GradientCompression, FRAME_SKIPPED, type CompressionSpec } from '../src/compress/index.js';
import { inProcessGroup } from './helpers/in-process-group.js';

const SHAPES: [string, number[]][] = [['w', [8, 16]], ['b', [16]]];

function params(): [string, Tensor][] {
  return SHAPES.map(([n, s]) => [n, new Tensor(new Float32Array(s.reduce((a, b) => a * b)), 'f32', s)]);
}

/** Gradients of rank `rank` at step `step` (seeded), optionally with one bad value in 'w'. */
function setGrads(named: [string, Tensor][], rank: number, step: number, bad?: number): void {
  const rng = new Rng(1000 * step + rank);
  for (const [n, p] of named) {
    const g = Float32Array.from({ length: p.size }, () => rng.normal());
    if (bad !== undefined && n === 'w') g[5] = bad;
    p.grad = new Tensor(g, 'f32', [...p.shape]);
  }
}

const allFinite = (x: unknown): boolean => {
  if (x instanceof Float32Array) return x.every(Number.isFinite);
  if (x && typeof x === 'object') return Object.values(x).every(allFinite);
  return true;
};

/** Two ranks through `steps` ([step, bad value on rank 0 or undefined]); the results and final states. */
async function run(spec: CompressionSpec, steps: [number, number | undefined][]) {
  const comms = inProcessGroup(2);
  const ranks = comms.map((c) => ({ dp: new DataParallel(c, { compression: spec, seed: 7 }), named: params() }));
  const results: boolean[][] = [];
  const states: unknown[][] = [];
  for (const [step, bad] of steps) {
    ranks.forEach((r, rank) => setGrads(r.named, rank, step, rank === 0 ? bad : undefined));
    const res = await Promise.all(ranks.map((r) => r.dp.syncGradients(r.named, step)));
    results.push(res.map((x) => x.finite));
    states.push(ranks.map((r) => structuredClone(r.dp.state())));
  }
  return { results, states, grads: ranks.map((r) => r.named.map(([, p]) => (p.grad as Tensor).f32().slice())) };
}

for (const method of COMPRESSION_METHODS) {
  for (const errorFeedback of ['residual', 'dgc'] as const) {
    for (const bad of [NaN, Infinity, -Infinity]) {
      test(`${method} + ${errorFeedback}: a ${bad} on rank 0 skips the step on both ranks and changes no state`, async () => {
        const spec: CompressionSpec = { method, errorFeedback };
        const hit = await run(spec, [[0, undefined], [1, bad], [2, undefined]]);
        assert.deepEqual(hit.results, [[true, true], [false, false], [true, true]]);
        assert.deepStrictEqual(hit.states[1], hit.states[0], 'the skipped step left memory and compressor state as they were');
        for (const s of hit.states) assert.ok(allFinite(s), 'residuals stay finite');
        for (const g of hit.grads.flat()) assert.ok(g.every(Number.isFinite), 'the next step is finite');
        // training continues as if the bad step had not happened
        const clean = await run(spec, [[0, undefined], [2, undefined]]);
        assert.deepStrictEqual(hit.states[2], clean.states[1]);
        assert.deepStrictEqual(hit.grads, clean.grads);
      });
    }
  }
}

test('dense all-reduce: a NaN on one rank is reported on both', async () => {
  const hit = await run(false as unknown as CompressionSpec, [[0, NaN], [1, undefined]]);
  assert.deepEqual(hit.results, [[false, false], [true, true]]);
});

test('loss scaling: residuals are kept unscaled, so a change of scale between steps gives the unscaled run\'s sums', async () => {
  for (const errorFeedback of ['residual', 'dgc'] as const) {
    const spec: CompressionSpec = { method: 'topk', ratio: 0.25, errorFeedback };
    const go = async (scales: number[]) => {
      const dp = new DataParallel(new SingleCommunicator(), { compression: spec, seed: 1 });
      const named = params();
      const out: Float32Array[][] = [];
      for (let step = 0; step < scales.length; step++) {
        setGrads(named, 0, step);
        for (const [, p] of named) p.grad = new Tensor((p.grad as Tensor).f32().map((x) => x * scales[step]!), 'f32', [...p.shape]);
        assert.equal((await dp.syncGradients(named, step, { lossScale: scales[step] })).finite, true);
        out.push(named.map(([, p]) => (p.grad as Tensor).f32().map((x) => x / scales[step]!)));
      }
      return { out, state: dp.state() };
    };
    const scaled = await go([65536, 1024, 2048]);
    const plain = await go([1, 1, 1]);
    assert.deepStrictEqual(scaled.out, plain.out, `${errorFeedback}: sums`);
    assert.deepStrictEqual(scaled.state, plain.state, `${errorFeedback}: residuals in unscaled units`);
  }
});

test('GradientCompression.encode of non-finite gradients changes no state and sends a skipped frame; decodeSum says so', () => {
  const gc = new GradientCompression({ method: 'topk', errorFeedback: true }, { seed: 3 });
  const g = new Map([['a', Float32Array.from({ length: 64 }, (_, i) => Math.sin(i))]]);
  gc.encode(g, 0);
  const before = structuredClone(gc.state());
  const frame = gc.encode(new Map([['a', g.get('a')!.map((x, i) => (i === 3 ? NaN : x))]]), 1);
  assert.equal(frame.length, 8);
  assert.equal(frame[3], FRAME_SKIPPED);
  assert.deepStrictEqual(gc.state(), before);
  const into = new Map([['a', new Float32Array(64)]]);
  assert.equal(gc.decodeSum([gc.encode(g, 2), frame], into, false), false);
  assert.ok(into.get('a')!.every(Number.isNaN));
});
