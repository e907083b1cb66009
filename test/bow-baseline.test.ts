/**
 * The bag-of-words baselines (src/eval/bow-baseline.ts): features, the logistic regression at its optimum (the
 * stationarity conditions of the L2-penalised mean cross-entropy hold), determinism, Naive Bayes, bowBaseline's
 * choice of C on validation, and typed errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bowTokens, bowFeatures, bowBaseline, BowLogisticRegression, MultinomialNaiveBayes } from '../src/eval/index.js';
import { ConfigError, DatasetError } from '../src/errors.js';
import type { Example } from '../src/data/types.js';

const ex = (text: string, label: string): Example => ({ text, label });

test('bowTokens / bowFeatures: lower-cased words, inner apostrophes kept, unigram and bigram counts', () => {
  assert.deepEqual(bowTokens("Don't WAKE me, at 7:15!"), ["don't", 'wake', 'me', 'at', '7', '15']);
  assert.deepEqual(bowTokens('  ?! '), []);
  const f = bowFeatures('play the song, play the song');
  assert.equal(f.get('play'), 2);
  assert.equal(f.get('play the'), 2);
  assert.equal(f.get('song play'), 1);
  assert.equal(f.size, 6); // play, the, song + play the, the song, song play
});

// Word order only: the same words, told apart by their bigrams.
const ORDER = [
  ex('dog bites man', 'dog_first'), ex('man bites dog', 'man_first'), ex('the dog bites the man', 'dog_first'),
  ex('the man bites the dog', 'man_first'), ex('dog bites man today', 'dog_first'), ex('man bites dog today', 'man_first'),
];

test('BowLogisticRegression: bigrams separate what unigrams cannot; words outside the vocabulary are ignored', () => {
  const m = BowLogisticRegression.fit(ORDER, { l2: 1e-3, iterations: 300, tolerance: 1e-8 });
  assert.equal(m.accuracy(ORDER), 1);
  assert.deepEqual(m.labels, ['dog_first', 'man_first']);
  assert.deepEqual(m.predict(['a dog bites a man', 'a man bites a dog']), ['dog_first', 'man_first']);
  assert.equal(m.predict(['zebra quokka'])[0], m.predict([''])[0]); // unknown words: the bias decides
});

test('BowLogisticRegression reaches the optimum: the gradient of the penalised loss vanishes', () => {
  const data = [
    ex('set an alarm for 7', 'alarm_set'), ex('wake me up at 6', 'alarm_set'), ex('set my alarm', 'alarm_set'),
    ex('cancel my alarm', 'alarm_cancel'), ex('delete the alarm for 7', 'alarm_cancel'), ex("don't wake me up", 'alarm_cancel'),
    ex('what alarms do i have', 'alarm_list'), ex('show my alarms', 'alarm_list'), ex('is my alarm set', 'alarm_list'),
  ];
  const l2 = 0.05, n = data.length;
  const m = BowLogisticRegression.fit(data, { l2, iterations: 500, tolerance: 1e-10 });
  const C = m.labels.length, p = data.map((e) => softmax(scores(m, e.text)));
  // bias: sum_i (p_i - y_i) = 0, i.e. the mean predicted probability of each class is its frequency
  for (let c = 0; c < C; c++) {
    const g = data.reduce((s, e, i) => s + p[i]![c]! - (e.label === m.labels[c] ? 1 : 0), 0) / n;
    assert.ok(Math.abs(g) < 1e-8, `bias gradient of ${m.labels[c]}: ${g}`);
  }
  // a weight: l2·w[f,c] + (1/n)·sum_i x_if (p_ic - y_ic) = 0
  for (const f of ['alarm', 'my alarm', "don't", 'show']) {
    const j = m.vocab.index.get(f)!;
    for (let c = 0; c < C; c++) {
      const g = l2 * m.w[j * C + c]! + data.reduce((s, e, i) => s + (bowFeatures(e.text).get(f) ?? 0) * (p[i]![c]! - (e.label === m.labels[c] ? 1 : 0)), 0) / n;
      assert.ok(Math.abs(g) < 1e-8, `gradient of '${f}' / ${m.labels[c]}: ${g}`);
    }
  }
});

function scores(m: BowLogisticRegression, text: string): number[] {
  const C = m.labels.length, z = [...m.b];
  for (const [f, k] of bowFeatures(text)) {
    const j = m.vocab.index.get(f);
    if (j !== undefined) for (let c = 0; c < C; c++) z[c]! += k * m.w[j * C + c]!;
  }
  return z;
}
function softmax(z: number[]): number[] {
  const mx = Math.max(...z), e = z.map((v) => Math.exp(v - mx)), s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

test('BowLogisticRegression is deterministic: the same data gives the same weights', () => {
  const a = BowLogisticRegression.fit(ORDER), b = BowLogisticRegression.fit([...ORDER]);
  assert.deepEqual(Buffer.from(a.w.buffer), Buffer.from(b.w.buffer));
  assert.deepEqual(Buffer.from(a.b.buffer), Buffer.from(b.b.buffer));
});

test('MultinomialNaiveBayes: counts decide; the prior breaks ties', () => {
  const nb = MultinomialNaiveBayes.fit([ex('play music', 'music'), ex('play a song', 'music'), ex('turn on the lights', 'lights'), ex('lights off', 'lights'), ex('play some jazz', 'music')]);
  assert.deepEqual(nb.predict(['play jazz', 'the lights', 'unknown words']), ['music', 'lights', 'music']);
});

test('bowBaseline: C chosen on validation, accuracy on test, deterministic', () => {
  const splits = { train: ORDER, validation: [ex('a dog bites a man', 'dog_first'), ex('a man bites a dog', 'man_first')], test: [ex('dog bites man again', 'dog_first'), ex('man bites dog again', 'man_first'), ex('bites', 'man_first')] };
  const r = bowBaseline(splits, { cGrid: [1, 10] });
  assert.equal(r.validationAccuracy, 1);
  assert.ok([1, 10].includes(r.c));
  assert.ok(Math.abs(r.accuracy * 3 - Math.round(r.accuracy * 3)) < 1e-12 && r.accuracy >= 2 / 3);
  assert.equal(r.testExamples, 3);
  const again = bowBaseline(splits, { cGrid: [1, 10] });
  assert.deepEqual({ ...again, seconds: 0 }, { ...r, seconds: 0 });
  // without validation: the first C of the grid
  assert.equal(bowBaseline({ ...splits, validation: [] }, { cGrid: [10, 1] }).c, 10);
});

test('bad input: typed errors naming the argument', () => {
  assert.throws(() => BowLogisticRegression.fit([]), (e: unknown) => e instanceof DatasetError && /at least one training example/.test((e as Error).message));
  assert.throws(() => BowLogisticRegression.fit(ORDER, { l2: 0 }), (e: unknown) => e instanceof ConfigError && /'l2'/.test((e as Error).message));
  assert.throws(() => BowLogisticRegression.fit(ORDER, { iterations: 0 }), (e: unknown) => e instanceof ConfigError && /'iterations'/.test((e as Error).message));
  assert.throws(() => MultinomialNaiveBayes.fit(ORDER, 0), ConfigError);
  assert.throws(() => bowBaseline({ train: ORDER, validation: [], test: [] }, { cGrid: [] }), (e: unknown) => e instanceof ConfigError && /cGrid/.test((e as Error).message));
});

test('autoglm finetune prints the baseline beside its accuracy, and baseline_bow_accuracy in --json; --no-baseline skips it', async () => {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { main } = await import('../src/cli/main.js');
  const run = async (extra: string[]) => {
    const out: string[] = [], log = console.log;
    console.log = (...a: unknown[]) => void out.push(a.join(' '));
    try {
      const args = ['finetune', '--max-train', '100', '--max-eval', '50', '--max-steps', '2', '--batch-size', '8', '--max-length', '24', '--quiet', '--json', '--output-dir', mkdtempSync(join(tmpdir(), 'autoglm-bow-'))];
      assert.equal(await main([...args, ...extra]), 0);
    } finally {
      console.log = log;
    }
    return { lines: out, json: JSON.parse(out[out.length - 1]!) as Record<string, unknown> };
  };
  const withBaseline = await run([]);
  const line = withBaseline.lines.find((l) => l.startsWith('bag-of-words baseline (unigram+bigram logistic regression): '));
  assert.ok(line && / \| fine-tuned: \d+\.\d%$/.test(line), withBaseline.lines.join('\n'));
  const b = withBaseline.json.baseline_bow_accuracy as number;
  assert.ok(b > 0 && b <= 1, `baseline_bow_accuracy ${b}`);
  assert.ok(line.includes(`${(100 * b).toFixed(1)}%`));
  const without = await run(['--no-baseline']);
  assert.equal(without.json.baseline_bow_accuracy, null);
  assert.ok(!without.lines.some((l) => l.startsWith('bag-of-words')));
});
