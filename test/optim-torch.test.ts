/**
 * Schedules, ReduceLROnPlateau, RMSprop and global-norm clipping against stored PyTorch outputs
 * (test/fixtures/optim-torch.json, written by scripts/make_optim_refs.py with torch 1.13: LinearLR,
 * CosineAnnealingLR, a LinearLR warm-up then cosine through SequentialLR, ReduceLROnPlateau in min/max x rel/abs
 * with patience, cooldown and min_lr, RMSprop with momentum/eps/alpha/weight decay, clip_grad_norm_ at max norms
 * 0.5, 2.5 and 1000), and EarlyStopping against Lightning's rule written out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Tensor } from '../src/tensor/tensor.js';
import { EarlyStopping, ReduceLROnPlateau, cosineSchedule, linearSchedule } from '../src/optim/schedule.js';
import { RMSprop } from '../src/optim/rmsprop.js';
import { clipGradNorm } from '../src/optim/clip.js';
import { parseTrainerConfig } from '../src/train/config.js';
import { makeOptimizer } from '../src/train/setup.js';

const REF = JSON.parse(readFileSync(new URL('./fixtures/optim-torch.json', import.meta.url), 'utf8'));
const close = (got: number, want: number, what: string, rel = 1e-6): void =>
  assert.ok(Math.abs(got - want) <= rel * Math.max(1, Math.abs(want)), `${what}: ${got} vs torch ${want}`);

test('linear decay to 0 = torch LinearLR(1 -> 0) step by step, and 0 after the end', () => {
  const r = REF.linear, f = linearSchedule({ lr: r.lr, totalSteps: r.total });
  r.lrs.forEach((want: number, s: number) => close(f(s), want, `step ${s}`));
});

test('cosine = torch CosineAnnealingLR (eta_min, T_max) over the period', () => {
  const r = REF.cosine, f = cosineSchedule({ lr: r.lr, totalSteps: r.tMax, minLr: r.minLr, tMax: r.tMax });
  r.lrs.forEach((want: number, s: number) => close(f(s), want, `step ${s}`));
});

test('linear warm-up then cosine = torch SequentialLR(LinearLR(1/W -> 1), CosineAnnealingLR)', () => {
  const r = REF.warmupCosine, f = cosineSchedule({ lr: r.lr, totalSteps: r.total, warmupSteps: r.warmup });
  r.lrs.forEach((want: number, s: number) => close(f(s), want, `step ${s}`));
});

test('ReduceLROnPlateau = torch in min/max x rel/abs thresholds, with patience, cooldown and min_lr', () => {
  for (const c of REF.plateau) {
    const p = new ReduceLROnPlateau({ mode: c.mode, factor: c.factor, patience: c.patience, threshold: c.threshold, thresholdMode: c.thresholdMode, cooldown: c.cooldown, minLr: c.minLr });
    const what = `${c.mode}/${c.thresholdMode} ${c.threshold}, patience ${c.patience}, cooldown ${c.cooldown}`;
    c.metrics.forEach((m: number, i: number) => {
      p.step(m, 1.0);
      close(p.scale, c.lrs[i], `${what}, check ${i} (metric ${m})`, 1e-9);
    });
  }
});

test('ReduceLROnPlateau, rel mode on a negative metric: a worse value is no improvement (where torch counts it as one)', () => {
  const p = new ReduceLROnPlateau({ mode: 'min', factor: 0.5, patience: 0, threshold: 0.1 });
  p.step(-1, 1);
  p.step(-0.95, 1); // torch: -0.95 < -1 * (1 - 0.1) = -0.9, "better"; here worse than -1 by any margin
  assert.equal(p.scale, 0.5);
});

test('EarlyStopping = Lightning\'s rule: improved when beyond best by min_delta; stop after patience checks without', () => {
  const lightning = (mode: 'min' | 'max', patience: number, minDelta: number, xs: number[]) => {
    let best = mode === 'min' ? Infinity : -Infinity, wait = 0;
    return xs.map((x) => {
      const better = mode === 'min' ? x - -minDelta < best : x - minDelta > best; // monitor_op(current - min_delta, best)
      if (better) { best = x; wait = 0; } else wait++;
      return wait >= patience;
    });
  };
  const xs = [1, 0.9, 0.89, 0.95, 0.7, 0.69, 0.68, 0.8, 0.9, 1.2];
  for (const mode of ['min', 'max'] as const) for (const patience of [1, 2, 3]) for (const minDelta of [0, 0.015, 0.2]) {
    const e = new EarlyStopping({ mode, patience, minDelta });
    const got = xs.map((x, i) => e.check(x, i).stop);
    assert.deepEqual(got, lightning(mode, patience, minDelta, xs), `${mode}, patience ${patience}, min_delta ${minDelta}`);
  }
});

test('RMSprop = torch.optim.RMSprop over 3 steps: momentum, eps, alpha and weight decay honoured', () => {
  for (const c of REF.rmsprop) {
    const p = new Tensor(Float32Array.from(c.w0), 'f32', [c.w0.length]);
    p.requiresGrad = true;
    const opt = new RMSprop([p], { lr: c.lr, alpha: c.alpha, eps: c.eps, momentum: c.momentum, weightDecay: c.weightDecay });
    for (const g of c.grads) {
      p.grad = new Tensor(Float32Array.from(g), 'f32', [g.length]);
      opt.step();
    }
    const got = p.f32();
    c.w.forEach((want: number, i: number) => close(got[i]!, want, `momentum ${c.momentum} eps ${c.eps} alpha ${c.alpha} wd ${c.weightDecay} [${i}]`, 2e-6));
  }
});

test('clipGradNorm = torch clip_grad_norm_ at max norms 0.5, 2.5 and 1000 (norm returned, gradients scaled)', () => {
  for (const c of REF.clip) {
    const ps = c.grads.map((g: number[]) => {
      const p = new Tensor(new Float32Array(g.length), 'f32', [g.length]);
      p.grad = new Tensor(Float32Array.from(g), 'f32', [g.length]);
      return p;
    });
    const norm = clipGradNorm(ps, c.maxNorm);
    close(norm, c.norm, `max norm ${c.maxNorm}: norm`);
    ps.forEach((p: Tensor, j: number) => c.clipped[j].forEach((want: number, i: number) => close(p.grad!.f32()[i]!, want, `max norm ${c.maxNorm}: grad ${j}[${i}]`)));
  }
});

test("the trainer's rmsprop = torch.optim.RMSprop (alpha 0.99): momentum and eps from the config, momentum 0 when unset", () => {
  for (const c of REF.rmsprop.filter((r: { alpha: number }) => r.alpha === 0.99)) {
    const config = parseTrainerConfig({
      optimizer: 'rmsprop', learningRate: c.lr, eps: c.eps, weightDecay: c.weightDecay,
      ...(c.momentum === 0 ? {} : { momentum: c.momentum }),
    });
    const p = new Tensor(Float32Array.from(c.w0), 'f32', [c.w0.length]);
    p.requiresGrad = true;
    const opt = makeOptimizer([{ params: [p], weightDecay: c.weightDecay }], config);
    for (const g of c.grads) {
      p.grad = new Tensor(Float32Array.from(g), 'f32', [g.length]);
      opt.step();
    }
    c.w.forEach((want: number, i: number) => close(p.f32()[i]!, want, `trainer rmsprop momentum ${c.momentum} [${i}]`, 2e-6));
  }
  assert.ok(REF.rmsprop.some((r: { alpha: number; momentum: number }) => r.alpha === 0.99 && r.momentum > 0), 'the fixture has a momentum case at alpha 0.99');
});
