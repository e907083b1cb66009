/**
 * Task 'dpo' (preference tuning): the losses against TRL's formulas (values and gradients by finite differences), the
 * sequence log-probabilities against a log-softmax of the model's own logits (and the fused head path's gradients
 * against the logits path's), TRL's record shapes and their errors, pair tokenization and truncation, and runs end
 * to end on the tiny random-init chat model: the first step's loss is ln 2 (the reference is the initial model), the
 * preference is learned, the run folder is complete, a loaded run predicts and evaluates against the base model
 * (adapters off, or the base loaded for full fine-tuning), the CLI trains, evaluates and predicts, and the keys that
 * task dpo cannot honour are refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AutoGLMTrainer, isDpoEvalResult, type ChatPrediction, type DpoEvalResult } from '../src/train/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { noGrad } from '../src/tensor/autograd.js';
import { Rng } from '../src/backend/rng.js';
import { makeTinyChatModel } from '../src/sft/tiny-chat-model.js';
import { syntheticPair } from '../src/sft/synthetic.js';
import { dpoLoss, ktoKl, ktoLoss, sequenceLogProbs, type DpoLossType } from '../src/sft/dpo.js';
import { pairRow, toPreference, toUnpaired, tokenizePair, type PreferenceExample } from '../src/sft/preference.js';
import { RecordError } from '../src/sft/formats.js';
import { padBatch } from '../src/sft/batch.js';
import { chatTemplateOf } from '../src/sft/template.js';
import { IGNORE_INDEX } from '../src/sft/tokenize.js';
import { requireCausalLM } from '../src/train/causal-lm.js';
import { CheckpointError, ConfigError, DatasetError } from '../src/errors.js';
import { main } from '../src/cli/main.js';
import type { HFTokenizer } from '../src/models/hf/tokenizer.js';

const root = mkdtempSync(path.join(tmpdir(), 'autoglm-dpo-'));
const model = path.join(root, 'tiny');
makeTinyChatModel(model, { hiddenSize: 32, layers: 2, heads: 2, seed: 0 });
const tmp = (p: string) => mkdtempSync(path.join(root, p));

/** "reverse abc" answered "cba" (chosen) or with x's (rejected): a preference a tiny model learns in tens of steps. */
function pairs(n: number, seed: number): object[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const { question, answer } = syntheticPair('reverse', rng);
    return { prompt: [{ role: 'user', content: question }], chosen: [{ role: 'assistant', content: answer }], rejected: [{ role: 'assistant', content: 'x'.repeat(answer.length) }] };
  });
}
const data = path.join(root, 'prefs.jsonl');
writeFileSync(data, pairs(120, 1).map((r) => JSON.stringify(r)).join('\n') + '\n');
const QUICK = { task: 'dpo', batchSize: 8, maxLength: 48, evalBatchSize: 16, logEvery: 1, mixedPrecision: 'fp32', sampleGenerations: 2 } as const;

// ---- the losses -----------------------------------------------------------------------------------------------------

const logSigmoid = (x: number) => -Math.log(1 + Math.exp(-x));
/** TRL's DPOTrainer.dpo_loss for one batch, written out from its formulas (float64). */
function trlLoss(pc: number[], pr: number[], rc: number[], rr: number[], nc: number[], nr: number[], type: DpoLossType, beta: number, eps: number): number {
  let total = 0;
  for (let i = 0; i < pc.length; i++) {
    const norm = type === 'ipo';
    const logits = (norm ? pc[i]! / nc[i]! - pr[i]! / nr[i]! : pc[i]! - pr[i]!) - (norm ? rc[i]! / nc[i]! - rr[i]! / nr[i]! : rc[i]! - rr[i]!);
    const a = pc[i]! - rc[i]!, b = pr[i]! - rr[i]!, sig = (x: number) => 1 / (1 + Math.exp(-x));
    if (type === 'sigmoid') total += -logSigmoid(beta * logits) * (1 - eps) - logSigmoid(-beta * logits) * eps;
    else if (type === 'hinge') total += Math.max(0, 1 - beta * logits);
    else if (type === 'ipo') total += (logits - 1 / (2 * beta)) ** 2;
    else if (type === 'robust') total += (-logSigmoid(beta * logits) * (1 - eps) + logSigmoid(-beta * logits) * eps) / (1 - 2 * eps);
    else if (type === 'exo_pair') {
      const e = eps === 0 ? 1e-3 : eps;
      total += sig(beta * logits) * (logSigmoid(beta * logits) - Math.log(1 - e)) + sig(-beta * logits) * (logSigmoid(-beta * logits) - Math.log(e));
    } else if (type === 'sppo_hard') total += (a - 0.5 / beta) ** 2 + (b + 0.5 / beta) ** 2;
    else if (type === 'nca_pair') total += -logSigmoid(a * beta) - 0.5 * logSigmoid(-a * beta) - 0.5 * logSigmoid(-b * beta);
    else if (type === 'apo_zero') total += 1 - sig(beta * a) + sig(beta * b);
    else if (type === 'apo_down') total += sig(beta * a) + 1 - sig(beta * (a - b));
    else throw new Error(type);
  }
  return total / pc.length;
}

for (const [type, beta, eps] of [['sigmoid', 0.1, 0], ['sigmoid', 0.5, 0.2], ['hinge', 0.3, 0], ['ipo', 0.1, 0], ['robust', 0.3, 0.2], ['exo_pair', 0.3, 0],
  ['exo_pair', 0.5, 0.1], ['sppo_hard', 0.5, 0], ['nca_pair', 0.3, 0], ['apo_zero', 0.3, 0], ['apo_down', 0.3, 0]] as const) {
  test(`dpoLoss '${type}' (beta ${beta}, epsilon ${eps}): TRL's formula, and its gradient by finite differences`, () => {
    const rng = new Rng(7), B = 5;
    const policy = Array.from({ length: 2 * B }, () => -20 * rng.uniform() - 1);
    const reference = policy.map((v) => v + 4 * (rng.uniform() - 0.5));
    const counts = Array.from({ length: 2 * B }, () => 1 + Math.floor(10 * rng.uniform()));
    const f = (p: number[]) => trlLoss(p.slice(0, B), p.slice(B), reference.slice(0, B), reference.slice(B), counts.slice(0, B), counts.slice(B), type, beta, eps);
    const x = new Tensor(Float32Array.from(policy), 'f32', [2 * B]);
    x.requiresGrad = true;
    const { loss, sums } = dpoLoss(x, reference, counts, { beta, lossType: type, labelSmoothing: eps });
    const p32: number[] = Array.from(x.f32());
    assert.ok(Math.abs(loss.item() - f(p32)) < 1e-6 * Math.max(1, Math.abs(f(p32))), `loss ${loss.item()} vs TRL ${f(p32)}`);
    loss.backward();
    const g = x.grad!.f32();
    for (let i = 0; i < 2 * B; i++) {
      const h = 1e-4, up: number[] = [...p32], dn: number[] = [...p32];
      up[i]! += h;
      dn[i]! -= h;
      const fd = (f(up) - f(dn)) / (2 * h);
      assert.ok(Math.abs(g[i]! - fd) < 1e-5 + 1e-4 * Math.abs(fd), `d loss / d policy[${i}]: ${g[i]} vs finite difference ${fd}`);
    }
    // the rewards TRL logs
    const norm = (i: number) => (type === 'ipo' ? counts[i]! : 1);
    let chosen = 0, correct = 0;
    for (let i = 0; i < B; i++) {
      const c = beta * (p32[i]! - reference[i]!) / norm(i), r = beta * (p32[B + i]! - reference[B + i]!) / norm(B + i);
      chosen += c;
      correct += c > r ? 1 : 0;
    }
    assert.ok(Math.abs(sums.chosen - chosen) < 1e-9 && sums.correct === correct && sums.n === B);
  });
}

/** TRL's CPOTrainer (loss_type 'simpo') and ORPOTrainer losses for one batch, written out from their formulas (float64). */
function trlReferenceFree(pc: number[], pr: number[], nc: number[], nr: number[], type: 'simpo' | 'orpo', beta: number, eps: number, gamma: number): number {
  let total = 0;
  for (let i = 0; i < pc.length; i++) {
    const c = pc[i]! / nc[i]!, r = pr[i]! / nr[i]!; // average_log_prob=True
    if (type === 'simpo') {
      const logits = c - r - gamma / beta;
      total += -logSigmoid(beta * logits) * (1 - eps) - logSigmoid(-beta * logits) * eps;
    } else {
      const logOdds = c - r - (Math.log1p(-Math.exp(c)) - Math.log1p(-Math.exp(r)));
      total += -beta * logSigmoid(logOdds);
    }
  }
  return total / pc.length;
}

for (const [type, beta, eps, gamma] of [['simpo', 2, 0, 0.5], ['simpo', 2.5, 0.1, 1.4], ['orpo', 0.1, 0, 0], ['orpo', 1, 0, 0]] as const) {
  test(`dpoLoss '${type}' (beta ${beta}, epsilon ${eps}${type === 'simpo' ? `, gamma ${gamma}` : ''}), no reference: TRL's formula, its gradient by finite differences, rewards beta x mean log-probability`, () => {
    const rng = new Rng(11), B = 6;
    const counts = Array.from({ length: 2 * B }, () => 1 + Math.floor(12 * rng.uniform()));
    // per-token log-probabilities from -3 to -0.01: ORPO's odds are defined below 0 and steep near it
    const policy = counts.map((n) => -n * (0.01 + 3 * rng.uniform()));
    const f = (p: number[]) => trlReferenceFree(p.slice(0, B), p.slice(B), counts.slice(0, B), counts.slice(B), type, beta, eps, gamma);
    const x = new Tensor(Float32Array.from(policy), 'f32', [2 * B]);
    x.requiresGrad = true;
    const { loss, sums } = dpoLoss(x, null, counts, { beta, lossType: type, labelSmoothing: eps, gamma });
    const p32: number[] = Array.from(x.f32());
    assert.ok(Math.abs(loss.item() - f(p32)) < 1e-6 * Math.max(1, Math.abs(f(p32))), `loss ${loss.item()} vs TRL ${f(p32)}`);
    loss.backward();
    const g = x.grad!.f32();
    for (let i = 0; i < 2 * B; i++) {
      const h = 1e-5 * counts[i]!, up: number[] = [...p32], dn: number[] = [...p32];
      up[i]! += h;
      dn[i]! -= h;
      const fd = (f(up) - f(dn)) / (2 * h);
      assert.ok(Math.abs(g[i]! - fd) < 1e-6 + 1e-4 * Math.abs(fd), `d loss / d policy[${i}]: ${g[i]} vs finite difference ${fd}`);
    }
    let chosen = 0, rejected = 0, correct = 0;
    for (let i = 0; i < B; i++) {
      const c = beta * p32[i]! / counts[i]!, r = beta * p32[B + i]! / counts[B + i]!;
      chosen += c;
      rejected += r;
      correct += c > r ? 1 : 0;
    }
    assert.ok(Math.abs(sums.chosen - chosen) < 1e-9 && Math.abs(sums.rejected - rejected) < 1e-9 && sums.correct === correct && sums.n === B);
  });
}

test("dpoLoss 'orpo' where an answer is certain (mean log-probability 0, or just above in float32): finite loss and gradients", () => {
  const x = new Tensor(Float32Array.from([0, 1e-7, -2, -3]), 'f32', [4]);
  x.requiresGrad = true;
  const { loss } = dpoLoss(x, null, [1, 1, 1, 1], { beta: 0.1, lossType: 'orpo' });
  loss.backward();
  assert.ok(Number.isFinite(loss.item()) && loss.item() >= 0 && loss.item() < 1e-3, `loss ${loss.item()}`);
  assert.ok(Array.from(x.grad!.f32()).every(Number.isFinite), `${x.grad!.f32()}`);
  // losses that compare against the reference refuse to run without it
  assert.throws(() => dpoLoss(x, null, [1, 1, 1, 1], { beta: 0.1, lossType: 'sigmoid' }), /needs the reference model/);
});

/** TRL's KTOTrainer.kto_loss (loss_type 'kto') for one batch, written out from its formulas (float64); the mean over the examples. */
function trlKto(pi: number[], ref: number[], labels: boolean[], kl: number, beta: number, wd: number, wu: number): number {
  let total = 0;
  pi.forEach((p, i) => {
    const r = p - ref[i]!;
    total += labels[i] ? wd * (1 - 1 / (1 + Math.exp(-beta * (r - kl)))) : wu * (1 - 1 / (1 + Math.exp(-beta * (kl - r))));
  });
  return total / pi.length;
}

for (const [beta, wd, wu] of [[0.1, 1, 1], [0.5, 1.33, 1]] as const) {
  test(`ktoLoss (beta ${beta}, weights ${wd} / ${wu}): TRL's formula, its gradient by finite differences (the KL estimate held), rewards and counts`, () => {
    const rng = new Rng(13), n = 7;
    const policy = Array.from({ length: n }, () => -30 * rng.uniform() - 1);
    const reference = policy.map((v) => v + 6 * (rng.uniform() - 0.5));
    const labels = Array.from({ length: n }, (_, i) => i % 3 !== 0);
    // the KL estimate: the mean log-ratio of the mismatched rows, clamped at 0
    assert.equal(ktoKl([-3, -5], [-4, -4]), 0);
    const kl = ktoKl([-3, -4], [-4, -4.4]);
    assert.ok(Math.abs(kl - 0.7) < 1e-12);
    const f = (p: number[]) => trlKto(p, reference, labels, kl, beta, wd, wu);
    const x = new Tensor(Float32Array.from(policy), 'f32', [n]);
    x.requiresGrad = true;
    // a data-parallel rank's share: divided by the global batch's 2n examples
    const { loss, sums } = ktoLoss(x, reference, labels, kl, { beta, desirableWeight: wd, undesirableWeight: wu }, 2 * n);
    const p32: number[] = Array.from(x.f32());
    assert.ok(Math.abs(2 * loss.item() - f(p32)) < 1e-6, `loss ${2 * loss.item()} vs TRL ${f(p32)}`);
    loss.backward();
    const g = x.grad!.f32();
    for (let i = 0; i < n; i++) {
      const h = 1e-3, up = [...p32], dn = [...p32];
      up[i]! += h;
      dn[i]! -= h;
      const fd = (f(up) - f(dn)) / (2 * h) / 2;
      assert.ok(Math.abs(g[i]! - fd) < 1e-7 + 1e-4 * Math.abs(fd), `d loss / d policy[${i}]: ${g[i]} vs finite difference ${fd}`);
    }
    let chosen = 0, rejected = 0, correct = 0;
    p32.forEach((p, i) => {
      const r = p - reference[i]!;
      if (labels[i]) chosen += beta * r;
      else rejected += beta * r;
      correct += (labels[i] ? r > kl : r < kl) ? 1 : 0;
    });
    assert.ok(Math.abs(sums.chosen - chosen) < 1e-9 && Math.abs(sums.rejected - rejected) < 1e-9 && sums.correct === correct);
    assert.deepEqual([sums.n, sums.nChosen, sums.nRejected, sums.kl, sums.nKl], [n, 4, 3, kl, 1]);
  });
}

// ---- log-probabilities of the answers ----------------------------------------------------------------------------------

/** sequenceLogProbs against a float64 log-softmax of the logits, and the fused head path's gradients against the logits path's. */
async function compareHeadPaths(frozenHead: boolean) {
  const { loadHFModel } = await import('../src/models/hf/loader.js');
  const m = requireCausalLM(await loadHFModel(model), model);
  if (frozenHead) {
    const hw = m.headWeights()!;
    hw.weight.requiresGrad = false;
    if (hw.bias) hw.bias.requiresGrad = false;
  }
  const tok = m.hf!.tokenizer as HFTokenizer;
  const template = chatTemplateOf(tok, model, {});
  const ex = toPreference(pairs(3, 2)[0]) as PreferenceExample;
  const ex2 = toPreference({ prompt: 'what is 2+2? ', chosen: '4', rejected: 'five' });
  const ps = [tokenizePair(ex, tok, template, 64)!, tokenizePair(ex2, tok, template, 64)!];
  const batch = padBatch([...ps.map((p) => pairRow(p, 'chosen')), ...ps.map((p) => pairRow(p, 'rejected'))], tok.padTokenId ?? 0);
  // reference: log-softmax of the full logits, in float64
  const [R, T] = batch.ids.shape as [number, number];
  const logits = noGrad(() => m.forward(batch.ids, { attentionMask: batch.attentionMask })).f32();
  const V = logits.length / (R * T), labels = batch.labels.i32('test');
  const want = Array.from({ length: R }, (_, r) => {
    let s = 0;
    for (let t = 0; t + 1 < T; t++) {
      const y = labels[r * T + t + 1]!;
      if (y === IGNORE_INDEX) continue;
      const row = logits.subarray((r * T + t) * V, (r * T + t + 1) * V);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let z = 0;
      for (const v of row) z += Math.exp(v - max);
      s += row[y]! - max - Math.log(z);
    }
    return s;
  });
  const params = [...m.namedParameters()].filter(([, p]) => p.requiresGrad);
  const run = () => {
    for (const [, p] of params) p.grad = null;
    const lp = sequenceLogProbs(m, batch);
    const v = Array.from(lp.f32());
    lp.sum().backward();
    return { v, g: new Map(params.map(([k, p]) => [k, Float32Array.from(p.grad!.f32())])) };
  };
  const fused = run();
  for (let r = 0; r < R; r++) assert.ok(Math.abs(fused.v[r]! - want[r]!) < 1e-4 * Math.max(1, Math.abs(want[r]!)), `row ${r}: ${fused.v[r]} vs ${want[r]}`);
  const head = m.headWeights.bind(m);
  m.headWeights = () => null;
  const plain = run();
  m.headWeights = head;
  for (let r = 0; r < R; r++) assert.ok(Math.abs(plain.v[r]! - want[r]!) < 1e-4 * Math.max(1, Math.abs(want[r]!)), `row ${r} (logits path): ${plain.v[r]} vs ${want[r]}`);
  let worst = 0;
  for (const [k, g] of fused.g) {
    const h = plain.g.get(k)!;
    let scale = 0;
    for (const v of h) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(g[i]! - h[i]!) / Math.max(scale, 1e-6));
  }
  assert.ok(worst < 1e-4, `fused vs logits path: relative gradient difference ${worst}`);
}

test('sequenceLogProbs: the sum of log-softmax of the model\'s logits over the answer tokens; the fused head path\'s gradients equal the logits path\'s', async () => {
  await compareHeadPaths(false);
});

test('sequenceLogProbs with the LM head frozen (LoRA): one fused product for the batch, per-row sums; the same values and gradients as the logits path', async () => {
  await compareHeadPaths(true);
});

// ---- records and tokenization ------------------------------------------------------------------------------------------

test("KTO's records: unpaired (plain or conversational, labels as CSV strings), or pairs unpaired into a desirable and an undesirable example; bad ones name their field", () => {
  const t = toUnpaired({ prompt: 'q', completion: 'a', label: true });
  assert.deepEqual(t.examples, [{ pair: { kind: 'text', prompt: 'q', chosen: 'a', rejected: 'a' }, label: true }]);
  const conv = toUnpaired({ prompt: [{ role: 'user', content: 'hi' }], completion: [{ role: 'assistant', content: 'go away' }], label: 'False' });
  assert.equal(conv.examples[0]!.label, false);
  assert.equal(conv.examples[0]!.pair.kind, 'conversation');
  assert.deepEqual(toUnpaired({ prompt: 'q', completion: 'a', label: 1 }).examples[0]!.label, true);
  const two = toUnpaired({ prompt: 'q', chosen: 'good', rejected: 'bad' }).examples;
  assert.deepEqual(two.map((e) => [e.pair.chosen, e.label]), [['good', true], ['bad', false]]);
  for (const [rec, field] of [[{ prompt: 'q', completion: 'a' }, 'label'], [{ prompt: 'q', completion: 'a', label: 'maybe' }, 'label'], [{ completion: 'a', label: true }, 'prompt'],
    [{ prompt: [{ role: 'user', content: 'hi' }], completion: 'a', label: true }, 'prompt'], [{ prompt: 'q', completion: '', label: true }, 'completion']] as const) {
    assert.throws(() => toUnpaired(rec), (e: unknown) => e instanceof RecordError && e.message.includes(`'${field}'`), JSON.stringify(rec));
  }
  // an unpaired record under a paired loss: the error says which loss reads it
  assert.throws(() => toPreference({ prompt: 'q', completion: 'a', label: true }), (e: unknown) => e instanceof RecordError && e.message.includes("dpoLossType 'kto'"));
});

test("preference records: TRL's shapes (explicit or implicit prompt, plain or conversational, CSV's JSON strings); a bad record names its field", () => {
  const conv = toPreference({ prompt: [{ role: 'user', content: 'hi' }], chosen: [{ role: 'assistant', content: 'hello' }], rejected: [{ role: 'assistant', content: 'go away' }] });
  assert.deepEqual(conv, { kind: 'conversation', prompt: [{ role: 'user', content: 'hi' }], chosen: [{ role: 'assistant', content: 'hello' }], rejected: [{ role: 'assistant', content: 'go away' }] });
  const implicit = toPreference({ chosen: JSON.stringify([{ role: 'system', content: 's' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }]),
    rejected: [{ role: 'system', content: 's' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'no' }] });
  assert.equal(implicit.kind, 'conversation');
  assert.deepEqual((implicit as { prompt: unknown[] }).prompt.length, 2);
  assert.deepEqual(toPreference({ prompt: 'Q: 2+2?', chosen: ' 4', rejected: ' 5' }), { kind: 'text', prompt: 'Q: 2+2?', chosen: ' 4', rejected: ' 5' });
  // Anthropic HH-RLHF: the prompt is the common start, cut back to a whitespace
  const hh = toPreference({ chosen: '\n\nHuman: name a fruit\n\nAssistant: apple', rejected: '\n\nHuman: name a fruit\n\nAssistant: apricot jam' });
  assert.deepEqual(hh, { kind: 'text', prompt: '\n\nHuman: name a fruit\n\nAssistant: ', chosen: 'apple', rejected: 'apricot jam' });
  const bad: Array<[unknown, string]> = [
    [{ prompt: 'p', chosen: 'a' }, 'rejected'],
    [{ prompt: 'p', chosen: 'a', rejected: 3 }, 'rejected'],
    [{ prompt: 'p', chosen: '', rejected: 'b' }, 'chosen'],
    [{ prompt: [{ role: 'user', content: 'p' }], chosen: 'a', rejected: 'b' }, 'prompt'],
    [{ chosen: 'apple', rejected: 'pear' }, 'chosen'],
    [{ chosen: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }], rejected: [{ role: 'user', content: 'c' }, { role: 'assistant', content: 'd' }] }, 'chosen'],
    [{ prompt: [{ role: 'user', content: 'p' }], chosen: [{ role: 'user', content: 'a' }], rejected: [{ role: 'assistant', content: 'b' }] }, 'chosen'],
    [{ prompt: [{ role: 'user', content: 'p' }], chosen: [{ role: 'bot', content: 'a' }], rejected: [{ role: 'assistant', content: 'b' }] }, 'chosen[0].role'],
  ];
  for (const [rec, field] of bad) {
    assert.throws(() => toPreference(rec), (e: unknown) => e instanceof RecordError && e.field === field, `${JSON.stringify(rec)}: expected a RecordError on '${field}'`);
  }
});

test('pair tokenization: both rows share the prompt, only the answers are scored; long pairs keep the end of the prompt and the start of the answers', async () => {
  const { loadHFModel } = await import('../src/models/hf/loader.js');
  const m = requireCausalLM(await loadHFModel(model), model);
  const tok = m.hf!.tokenizer as HFTokenizer;
  const template = chatTemplateOf(tok, model, {});
  const ex = toPreference({ prompt: [{ role: 'user', content: 'reverse abcdef' }], chosen: [{ role: 'assistant', content: 'fedcba' }], rejected: [{ role: 'assistant', content: 'xx' }] });
  const p = tokenizePair(ex, tok, template, 512)!;
  const promptText = template.render([{ role: 'user', content: 'reverse abcdef' }], { addGenerationPrompt: true });
  assert.deepEqual(p.prompt, tok.encode(promptText, { addSpecialTokens: false }));
  const full = template.render([{ role: 'user', content: 'reverse abcdef' }, { role: 'assistant', content: 'fedcba' }]);
  assert.equal(tok.decode([...p.prompt, ...p.chosen], { skipSpecialTokens: false }), full);
  const row = pairRow(p, 'chosen');
  assert.equal(row.labels.filter((l) => l !== IGNORE_INDEX).length, p.chosen.length);
  assert.ok(row.labels.slice(0, p.prompt.length).every((l) => l === IGNORE_INDEX));
  // cut to 20: the prompt keeps its last max(20 - longest answer, 10) tokens, the answers their first ones
  const cut = tokenizePair(ex, tok, template, 20)!;
  const keep = Math.min(p.prompt.length, Math.max(20 - p.chosen.length, 10));
  assert.deepEqual(cut.prompt, p.prompt.slice(p.prompt.length - keep));
  assert.deepEqual(cut.chosen, p.chosen.slice(0, 20 - keep));
  assert.ok(cut.prompt.length + Math.max(cut.chosen.length, cut.rejected.length) <= 20);
  // plain text: the tokenizer's special tokens before the prompt, eos after each answer
  const t = tokenizePair(toPreference({ prompt: 'q', chosen: 'a', rejected: 'b' }), tok, template, 64)!;
  assert.deepEqual(t.prompt, tok.encode('q'));
  assert.equal(t.chosen.at(-1), tok.tokenToId(String((tok.config as { eos_token?: unknown }).eos_token)));
});

// ---- runs ------------------------------------------------------------------------------------------------------------

test('LoRA DPO run: the first loss is ln 2, the preference is learned; adapter, dpo.json, samples; a loaded run predicts and evaluates against the base', async () => {
  const out = tmp('lora-');
  const t = new AutoGLMTrainer({ model, config: { ...QUICK, method: 'lora', learningRate: 2e-2, epochs: 20, maxSteps: 60, evalEvery: 20, outputDir: out } });
  const notes: string[] = [];
  t.on('note', (m: string) => notes.push(m));
  const h = await t.finetune({ dataset: data });
  assert.equal(h.stepsDone, 60);
  // the reference is the initial model: every pair's margin is 0 at the first step
  const s1 = h.steps[0]!;
  assert.ok(Math.abs(s1.loss - Math.LN2) < 1e-5 && Math.abs(s1.rewards!.margin) < 1e-5, JSON.stringify(s1));
  const v = h.evals.at(-1)!;
  assert.ok(v.accuracy! >= 0.9 && v.loss < 0.6 && v.rewards!.margin > 0.1, JSON.stringify(v));
  assert.equal(v.accuracy, v.rewards!.accuracy);
  assert.deepEqual(h.preference?.validation, { loss: v.loss, ...v.rewards });
  for (const f of ['adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'adapter/tokenizer.json', 'adapter/tokenizer_config.json', 'dpo.json', 'samples.jsonl']) {
    assert.ok(existsSync(path.join(out, f)), f);
  }
  const summary = JSON.parse(readFileSync(path.join(out, 'dpo.json'), 'utf8')) as { pairs: { train: number; validation: number }; beta: number; loss_type: string };
  assert.deepEqual([summary.pairs.train, summary.pairs.validation, summary.beta, summary.loss_type], [108, 12, 0.1, 'sigmoid']);
  assert.equal(readFileSync(path.join(out, 'samples.jsonl'), 'utf8').trim().split('\n').length, 2);
  const metrics = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8');
  assert.ok(metrics.includes('"rewards":{"chosen"'), 'rewards in metrics.jsonl');
  const answers = (await t.predict(['reverse abc'])) as ChatPrediction[];
  // in memory: on the validation split against the precomputed reference, and on a file against the base (adapters off)
  const mem = (await t.evaluate('validation')) as DpoEvalResult;
  assert.ok(isDpoEvalResult(mem) && Math.abs(mem.loss - v.loss) < 1e-6 && mem.n === 12);
  const loaded = await AutoGLMTrainer.load(out);
  assert.deepEqual(await loaded.predict(['reverse abc']), answers);
  const again = (await loaded.evaluate('validation')) as DpoEvalResult;
  assert.ok(Math.abs(again.loss - mem.loss) < 1e-5 && again.accuracy === mem.accuracy, `loaded ${JSON.stringify(again)} vs ${JSON.stringify(mem)}`);
  const file = (await loaded.evaluate(data, { maxEval: 10 })) as DpoEvalResult;
  assert.ok(file.n === 10 && file.accuracy >= 0.9, JSON.stringify(file));
  await assert.rejects(loaded.evaluate('validation', { exactMatch: true }), (e: unknown) => e instanceof ConfigError && e.message.includes('exactMatch'));
});

test('full DPO run (IPO loss): trains every weight; the loaded run evaluates against the base model loaded from its name', async () => {
  const out = tmp('full-');
  const t = new AutoGLMTrainer({ model, config: { ...QUICK, method: 'full', dpoLossType: 'ipo', dpoBeta: 0.5, learningRate: 1e-3, maxSteps: 6, evalEvery: 6, outputDir: out } });
  t.on('note', () => {});
  const h = await t.finetune({ dataset: data });
  assert.ok(existsSync(path.join(out, 'model/model.safetensors')));
  const last = h.evals.at(-1)!;
  // IPO at the reference: (0 - 1 / (2 beta))^2 = 1; training moves it
  assert.ok(Math.abs(h.steps[0]!.loss - 1) < 1e-5, `first IPO loss ${h.steps[0]!.loss}`);
  const loaded = await AutoGLMTrainer.load(out);
  const r = (await loaded.evaluate('validation')) as DpoEvalResult;
  assert.ok(Math.abs(r.loss - last.loss) < 1e-4 * Math.max(1, last.loss), `loaded ${r.loss} vs trained ${last.loss}`);
});

/**
 * A file of 12 copies of one pair ("reverse abcd": "dcba" or `rejected`), and the initial model's log-probability of
 * each side's answer with its length.
 */
async function onePairFile(name: string, rejected: string) {
  const one = { prompt: [{ role: 'user', content: 'reverse abcd' }], chosen: [{ role: 'assistant', content: 'dcba' }], rejected: [{ role: 'assistant', content: rejected }] };
  const file = path.join(root, name);
  writeFileSync(file, Array.from({ length: 12 }, () => JSON.stringify(one)).join('\n') + '\n');
  const { loadHFModel } = await import('../src/models/hf/loader.js');
  const m = requireCausalLM(await loadHFModel(model), model);
  const tok = m.hf!.tokenizer as HFTokenizer;
  const p = tokenizePair(toPreference(one), tok, chatTemplateOf(tok, model, {}), 48)!;
  const side = (s: 'chosen' | 'rejected') => ({ lp: noGrad(() => sequenceLogProbs(m, padBatch([pairRow(p, s)], tok.padTokenId ?? 0))).item(), n: p[s].length });
  return { file, chosen: side('chosen'), rejected: side('rejected') };
}

test("RPO (rpoAlpha): the loss adds alpha x the chosen answers' mean next-token NLL, in training and evaluation", async () => {
  const { file, chosen: { lp, n } } = await onePairFile('same.jsonl', 'xxxx');
  const want = Math.LN2 + 2 * (-lp / n);
  const t = new AutoGLMTrainer({ model, config: { ...QUICK, rpoAlpha: 2, maxSteps: 1, evalEvery: 1, learningRate: 1e-12, warmupSteps: 0, outputDir: tmp('rpo-') } });
  t.on('note', () => {});
  const h = await t.finetune({ dataset: file });
  assert.ok(Math.abs(h.steps[0]!.loss - want) < 1e-5 * want, `first step's loss ${h.steps[0]!.loss} vs ln 2 + 2 x ${-lp / n}`);
  assert.ok(Math.abs(h.evals[0]!.loss - want) < 1e-5 * want, `evaluation loss ${h.evals[0]!.loss} vs ${want}`);
});

test('SimPO and ORPO runs (no reference model): nothing is scored before the first step, the preference is learned, the loaded run evaluates without the base', async () => {
  for (const [loss, cfg] of [['simpo', { dpoBeta: 2, simpoGamma: 1 }], ['orpo', { dpoBeta: 0.5 }]] as const) {
    const out = tmp(`${loss}-`);
    const t = new AutoGLMTrainer({ model, config: { ...QUICK, method: 'lora', dpoLossType: loss, ...cfg, learningRate: 2e-2, epochs: 20, maxSteps: 60, evalEvery: 10, saveEvery: 30, outputDir: out } });
    const notes: string[] = [];
    t.on('note', (m: string) => notes.push(m));
    const h = await t.finetune({ dataset: data });
    assert.ok(notes.includes(`dpo: loss '${loss}' takes no reference model`) && !notes.some((n) => n.includes('reference log-probabilities')), notes.join('\n'));
    const first = h.evals[0]!, v = h.evals.at(-1)!;
    assert.ok(v.accuracy! >= 0.9 && v.rewards!.margin > first.rewards!.margin && v.loss < first.loss, `${loss}: ${JSON.stringify(first)} -> ${JSON.stringify(v)}`);
    const summary = JSON.parse(readFileSync(path.join(out, 'dpo.json'), 'utf8')) as { loss_type: string; reference: unknown; simpo_gamma?: number };
    assert.deepEqual([summary.loss_type, summary.reference, summary.simpo_gamma], [loss, null, loss === 'simpo' ? 1 : undefined]);
    // a loaded run scores the validation pairs as the run did, with no base model
    const loaded = await AutoGLMTrainer.load(out);
    const again = (await loaded.evaluate('validation')) as DpoEvalResult;
    assert.ok(Math.abs(again.loss - v.loss) < 1e-5 * Math.max(1, v.loss) && again.accuracy === v.accuracy, `loaded ${JSON.stringify(again)} vs ${JSON.stringify(v)}`);
    // resume: no reference in the checkpoint, none computed
    const r = new AutoGLMTrainer({ model, config: { ...QUICK, method: 'lora', dpoLossType: loss, ...cfg, learningRate: 2e-2, epochs: 20, maxSteps: 70, evalEvery: 30, saveEvery: 30, outputDir: out, resume: true } });
    const rnotes: string[] = [];
    r.on('note', (m: string) => rnotes.push(m));
    assert.equal((await r.finetune({ dataset: data })).stepsDone, 70);
    assert.ok(!rnotes.some((n) => n.includes('reference log-probabilities')), rnotes.join('\n'));
  }
});

test("ORPO's loss is its odds-ratio term plus the chosen answers' mean NLL (weight 1), in training and evaluation", async () => {
  const { file, chosen, rejected } = await onePairFile('orpo-one.jsonl', 'xxxxx');
  const c = chosen.lp / chosen.n, r = rejected.lp / rejected.n, beta = 0.3;
  const want = -c - beta * logSigmoid(c - r - (Math.log1p(-Math.exp(c)) - Math.log1p(-Math.exp(r))));
  const t = new AutoGLMTrainer({ model, config: { ...QUICK, dpoLossType: 'orpo', dpoBeta: beta, maxSteps: 1, evalEvery: 1, learningRate: 1e-12, warmupSteps: 0, outputDir: tmp('orpo-') } });
  t.on('note', () => {});
  const h = await t.finetune({ dataset: file });
  assert.ok(Math.abs(h.steps[0]!.loss - want) < 1e-5 * want, `first step's loss ${h.steps[0]!.loss} vs ${want}`);
  assert.ok(Math.abs(h.evals[0]!.loss - want) < 1e-5 * want, `evaluation loss ${h.evals[0]!.loss} vs ${want}`);
  assert.ok(Math.abs(h.steps[0]!.rewards!.chosen - beta * c) < 1e-5, 'ORPO reward: beta x mean log-probability');
});

test("KTO run (unpaired examples): the first loss is 0.5, desirable completions rise above the KL estimate and undesirable ones fall below; resume, loaded run, a file's examples", async () => {
  const file = path.join(root, 'kto.jsonl');
  // the paired data unpaired by hand, one record per example, alternating labels
  writeFileSync(file, pairs(120, 1).flatMap((r) => {
    const p = r as { prompt: unknown; chosen: unknown; rejected: unknown };
    return [{ prompt: p.prompt, completion: p.chosen, label: true }, { prompt: p.prompt, completion: p.rejected, label: false }];
  }).map((r) => JSON.stringify(r)).join('\n') + '\n');
  const out = tmp('kto-');
  const cfg = { ...QUICK, method: 'lora', dpoLossType: 'kto', desirableWeight: 1.2, learningRate: 2e-2, epochs: 20, evalEvery: 30, saveEvery: 30, outputDir: out } as const;
  const t = new AutoGLMTrainer({ model, config: { ...cfg, maxSteps: 60 } });
  const notes: string[] = [];
  t.on('note', (m: string) => notes.push(m));
  const h = await t.finetune({ dataset: file });
  assert.ok(notes.some((n) => /^kto: \d+ desirable and \d+ undesirable training examples$/.test(n)), notes.join('\n'));
  // at the reference every log-ratio and the KL estimate are 0: each loss is w (1 - sigmoid(0))
  const s1 = h.steps[0]!;
  assert.ok(s1.loss > 0.5 - 1e-6 && s1.loss < 0.6 + 1e-6 && Math.abs(s1.rewards!.margin) < 1e-5 && s1.rewards!.kl === 0, JSON.stringify(s1));
  const v = h.evals.at(-1)!;
  assert.ok(v.accuracy! >= 0.9 && v.rewards!.margin > 0.1 && v.loss < s1.loss - 0.03 && typeof v.rewards!.kl === 'number', JSON.stringify(h.evals));
  const summary = JSON.parse(readFileSync(path.join(out, 'dpo.json'), 'utf8')) as { examples: { train: number }; desirable_weight: number; loss_type: string };
  assert.deepEqual([summary.examples.train, summary.desirable_weight, summary.loss_type], [216, 1.2, 'kto']);
  const loaded = await AutoGLMTrainer.load(out);
  const again = (await loaded.evaluate('validation')) as DpoEvalResult;
  assert.ok(Math.abs(again.loss - v.loss) < 1e-5 && again.accuracy === v.accuracy, `loaded ${JSON.stringify(again)} vs ${JSON.stringify(v)}`);
  // a preference file's pairs, unpaired, against the base (adapters off)
  const onPairs = (await loaded.evaluate(data, { maxEval: 20 })) as DpoEvalResult;
  assert.ok(onPairs.n === 20 && onPairs.accuracy >= 0.8, JSON.stringify(onPairs));
  const r = new AutoGLMTrainer({ model, config: { ...cfg, maxSteps: 70, resume: true } });
  const rnotes: string[] = [];
  r.on('note', (m: string) => rnotes.push(m));
  assert.equal((await r.finetune({ dataset: file })).stepsDone, 70);
  assert.ok(rnotes.includes('dpo: reference log-probabilities from the checkpoint'), rnotes.join('\n'));
});

test("TRL's other pair losses end to end: at the reference (every log-ratio 0) the first step's loss is each formula's value at 0", async () => {
  const e = 1e-3, beta = 0.5;
  const atZero: Array<[DpoLossType, number, object]> = [
    ['robust', Math.LN2, { labelSmoothing: 0.2 }], ['exo_pair', 0.5 * (-Math.LN2 - Math.log(1 - e)) + 0.5 * (-Math.LN2 - Math.log(e)), {}],
    ['sppo_hard', 2 * (0.5 / beta) ** 2, {}], ['nca_pair', 2 * Math.LN2, {}], ['apo_zero', 1, {}], ['apo_down', 1, {}],
  ];
  for (const [loss, want, extra] of atZero) {
    const t = new AutoGLMTrainer({ model, config: { ...QUICK, dpoLossType: loss, dpoBeta: beta, ...extra, maxSteps: 2, evalEvery: 2, outputDir: tmp(`${loss}-`) } });
    t.on('note', () => {});
    const h = await t.finetune({ dataset: data, maxTrain: 24, maxEval: 8 });
    assert.ok(Math.abs(h.steps[0]!.loss - want) < 1e-5, `${loss}: first loss ${h.steps[0]!.loss} vs ${want}`);
    assert.ok(Number.isFinite(h.evals[0]!.loss) && h.evals[0]!.rewards !== undefined, `${loss}: ${JSON.stringify(h.evals[0])}`);
  }
});

test('DPO config: keys it cannot honour are refused, labelSmoothing is conservative DPO\'s epsilon (sigmoid, below 0.5); early stopping on the reward accuracy', async () => {
  const refused: Array<[object, string]> = [
    [{ packing: true }, 'packing'], [{ completionOnlyLoss: false }, 'completionOnlyLoss'], [{ datasetFormat: 'alpaca' }, 'datasetFormat'],
    [{ headDropout: 0.3 }, 'headDropout'], [{ method: 'head' }, 'method'], [{ labelSmoothing: 0.5 }, 'labelSmoothing'],
    [{ dpoLossType: 'hinge', labelSmoothing: 0.1 }, 'labelSmoothing'], [{ earlyStopping: { monitor: 'val_macro_f1' } }, 'earlyStopping'],
    [{ dpoLossType: 'orpo', labelSmoothing: 0.1 }, 'labelSmoothing'], [{ simpoGamma: 1 }, 'simpoGamma'], [{ dpoLossType: 'orpo', rpoAlpha: 1 }, 'rpoAlpha'],
    [{ desirableWeight: 2 }, 'desirableWeight'], [{ dpoLossType: 'ipo', undesirableWeight: 2 }, 'undesirableWeight'], [{ dpoLossType: 'kto', rpoAlpha: 1 }, 'rpoAlpha'],
    [{ dpoLossType: 'kto', labelSmoothing: 0.1 }, 'labelSmoothing'], [{ dpoLossType: 'apo_zero', labelSmoothing: 0.1 }, 'labelSmoothing'],
  ];
  for (const [cfg, key] of refused) {
    assert.throws(() => new AutoGLMTrainer({ model, config: { task: 'dpo', ...cfg } }), (e: unknown) => e instanceof ConfigError && e.message.includes(key) && e.message.includes('dpo'), JSON.stringify(cfg));
  }
  const out = tmp('es-');
  const t = new AutoGLMTrainer({ model, config: { ...QUICK, maxSteps: 4, evalEvery: 2, earlyStopping: { monitor: 'val_accuracy', patience: 5 }, outputDir: out } });
  t.on('note', () => {});
  const h = await t.finetune({ dataset: data });
  assert.equal(h.best?.metric, 'val_accuracy');
  await assert.rejects(new AutoGLMTrainer({ model, config: { task: 'dpo' } }).finetune({ dataset: { name: 'x', train: [], validation: [], test: [], labels: [], extraLabels: {}, skipped: [] } }),
    (e: unknown) => e instanceof ConfigError && e.message.includes('preference file'));
  // the default model is the classification encoder: the error says which model a decoder task takes
  await assert.rejects(new AutoGLMTrainer({ config: { task: 'dpo' } }).finetune({ dataset: data }),
    (e: unknown) => e instanceof ConfigError && e.message.includes("task 'dpo' takes a Hugging Face decoder") && e.message.includes('open-autoglm-base'));
});

test('a resumed DPO run takes the reference log-probabilities from its checkpoint; other pairs (another maxLength) are a CheckpointError', async () => {
  const out = tmp('resume-');
  const run = async (cfg: object) => {
    const t = new AutoGLMTrainer({ model, config: { ...QUICK, saveEvery: 2, outputDir: out, ...cfg } });
    const notes: string[] = [];
    t.on('note', (m: string) => notes.push(m));
    return { h: await t.finetune({ dataset: data }), notes };
  };
  const first = await run({ maxSteps: 2 });
  assert.ok(first.notes.some((n) => /^dpo: reference log-probabilities of 120 pairs computed/.test(n)), first.notes.join('\n'));
  const second = await run({ maxSteps: 4, resume: true });
  assert.equal(second.h.stepsDone, 4);
  assert.ok(second.notes.includes('dpo: reference log-probabilities from the checkpoint'), second.notes.join('\n'));
  await assert.rejects(run({ maxSteps: 6, resume: true, maxLength: 36 }),
    (e: unknown) => e instanceof CheckpointError && e.message.includes('reference log-probabilities of other train pairs'));
});

test('a bad preference record: a DatasetError naming file, line and field; skipped and counted under onBadLine skip', async () => {
  const file = path.join(root, 'bad.jsonl');
  const good = pairs(20, 4).map((r) => JSON.stringify(r));
  good.splice(5, 0, JSON.stringify({ prompt: 'p', chosen: 'a' }));
  writeFileSync(file, good.join('\n') + '\n');
  await assert.rejects(new AutoGLMTrainer({ model, config: { ...QUICK, maxSteps: 1, outputDir: tmp('bad-') } }).finetune({ dataset: file }),
    (e: unknown) => e instanceof DatasetError && e.message.includes(`${file}:6`) && e.message.includes("'rejected'"));
  writeFileSync(file, [...good, '{"prompt": "p", "chosen": '].join('\n') + '\n'); // and a line that is not JSON
  const t = new AutoGLMTrainer({ model, config: { ...QUICK, maxSteps: 1, outputDir: tmp('skip-') } });
  const notes: string[] = [];
  t.on('note', (m: string) => notes.push(m));
  await t.finetune({ dataset: file, onBadLine: 'skip' });
  assert.ok(notes.some((n) => n.startsWith('skipped 2 bad record(s)')), notes.join('\n'));
});

test('autoglm finetune --task dpo --json: reward accuracy in the summary; autoglm eval and predict on the run folder', async () => {
  const logs: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => logs.push(a.join(' '));
  const out = tmp('cli-');
  try {
    assert.equal(await main(['finetune', '--task', 'dpo', '--model', model, '--dataset', data, '--max-steps', '3', '--batch-size', '8', '--max-length', '48',
      '--mixed-precision', 'fp32', '--dpo-beta', '0.2', '--sample-generations', '0', '--output-dir', out, '--quiet', '--json']), 0);
    const j = JSON.parse(logs.at(-1)!) as { reward_accuracy: number; eval_loss: number; steps: number };
    assert.ok(j.steps === 3 && j.reward_accuracy >= 0 && j.reward_accuracy <= 1 && Number.isFinite(j.eval_loss), logs.at(-1));
    assert.ok(logs.some((l) => l.startsWith('preference: validation reward accuracy')), logs.join('\n'));
    assert.equal(await main(['eval', out, '--split', 'validation', '--json']), 0);
    const e = JSON.parse(logs.at(-1)!) as { task: string; loss: number; n: number };
    assert.ok(e.task === 'dpo' && e.n === 12 && Math.abs(e.loss - j.eval_loss) < 1e-5, logs.at(-1));
    assert.equal(await main(['predict', out, 'reverse abc', '--json']), 0);
    assert.equal((JSON.parse(logs.at(-1)!) as { prompt: string }).prompt, 'reverse abc');
  } finally {
    console.log = log;
  }
});
