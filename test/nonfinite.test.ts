/**
 * Non-finite gradients and error feedback: a NaN or an infinity on one rank skips the step on every rank, leaves
 * residuals / DGC momentum / compressor state exactly as they were, and training continues as if the step had not
 * happened; with loss scaling, residuals are kept in unscaled units. Every built-in compressor, with residual and
 * DGC error feedback. Also the other gradients a step may lack: a parameter that no rank has a gradient for (a
 * multi-task head the batch did not reach) is left out of the compressed frame and keeps no gradient.
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

for (const method of COMPRESSION_METHODS) {
  for (const errorFeedback of ['residual', 'dgc'] as const) {
    test(`${method} + ${errorFeedback}: a parameter no rank has a gradient for keeps none, and its state waits for a step that reaches it`, async () => {
      const spec: CompressionSpec = { method, errorFeedback };
      const withHead = (): [string, Tensor][] => [...params(), ['head', new Tensor(new Float32Array(12), 'f32', [3, 4])]];
      /** Two ranks, three steps; at step 1 'head' has no gradient on either rank (`absent`) or is not passed at all. */
      const three = async (absent: boolean) => {
        const ranks = inProcessGroup(2).map((c) => ({ dp: new DataParallel(c, { compression: spec, seed: 7 }), named: withHead() }));
        const out: { heads: (number[] | null)[]; grads: number[][] } = { heads: [], grads: [] };
        for (const step of [0, 1, 2]) {
          ranks.forEach((r, rank) => setGrads(r.named, rank, step));
          if (step === 1) for (const r of ranks) r.named[2]![1].grad = null;
          if (step === 2) ranks[0]!.named[2]![1].grad = null; // rank 1 alone reaches the head: both get the sum
          await Promise.all(ranks.map((r) => r.dp.syncGradients(step === 1 && !absent ? r.named.slice(0, 2) : r.named, step)));
          for (const r of ranks) {
            const g = r.named[2]![1].grad;
            out.heads.push(g ? Array.from(g.f32()) : null);
          }
        }
        out.grads = ranks.flatMap((r) => r.named.map(([, p]) => Array.from((p.grad as Tensor).f32())));
        return { out, states: ranks.map((r) => structuredClone(r.dp.state())) };
      };
      const absent = await three(true);
      assert.deepEqual(absent.out.heads.slice(2, 4), [null, null], 'no rank had a gradient at step 1: none after the sync');
      assert.ok(absent.out.heads[4] && absent.out.heads[4].some((x) => x !== 0), 'step 2: rank 1 alone has one: a sum');
      assert.deepStrictEqual(absent.out.heads[4], absent.out.heads[5], 'the same sum on both ranks');
      const skipped = await three(false);
      assert.deepStrictEqual(absent.out, skipped.out, 'as if the head had not been in step 1 at all');
      assert.deepStrictEqual(absent.states, skipped.states);
    });
  }
}
