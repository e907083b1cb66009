/**
 * Bag-of-words baselines for text classification: what a model that only counts words gets, printed beside the
 * fine-tuned model's accuracy so that a user sees what fine-tuning bought.
 *
 * Features: lower-cased word tokens (letters and digits, an inner apostrophe kept: "don't"), unigram and bigram
 * counts, the vocabulary of the training split. Models:
 * - `BowLogisticRegression`: multinomial logistic regression (softmax, a bias per class, L2 on the weights), fitted
 *   full-batch by L-BFGS (history 5) with scikit-learn's defaults: C = 1, at most 100 iterations, tolerance 1e-4.
 *   No random numbers: the same data gives the same weights.
 * - `MultinomialNaiveBayes`: the classic count model with add-alpha smoothing.
 * `bowBaseline()` fits the regression on train, picks its inverse L2 strength C on validation from a small grid (as the
 * fine-tuned model gets its own validation split) and reports the test accuracy.
 */
import { ConfigError, DatasetError } from '../errors.js';
import type { DatasetSplits, Example } from '../data/types.js';

/** Lower-cased word tokens: runs of letters/digits, an apostrophe inside a word kept ("what's"). */
export function bowTokens(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(/[\p{L}\p{N}]+(?:'[\p{L}]+)*/gu) ?? [];
}

/** Unigram and bigram counts of `text` (bigrams joined by a space). */
export function bowFeatures(text: string): Map<string, number> {
  const t = bowTokens(text);
  const counts = new Map<string, number>();
  const add = (f: string) => counts.set(f, (counts.get(f) ?? 0) + 1);
  for (let i = 0; i < t.length; i++) {
    add(t[i]!);
    if (i > 0) add(`${t[i - 1]} ${t[i]}`);
  }
  return counts;
}

/** A text as sparse feature counts over a fixed vocabulary (features outside it are dropped). */
interface SparseRow {
  idx: Int32Array;
  val: Float64Array;
}

class Vocabulary {
  readonly index = new Map<string, number>();
  static fromTexts(texts: readonly string[]): Vocabulary {
    const v = new Vocabulary();
    for (const t of texts) for (const f of bowFeatures(t).keys()) if (!v.index.has(f)) v.index.set(f, v.index.size);
    return v;
  }
  get size(): number {
    return this.index.size;
  }
  row(text: string): SparseRow {
    const idx: number[] = [], val: number[] = [];
    for (const [f, n] of bowFeatures(text)) {
      const i = this.index.get(f);
      if (i !== undefined) {
        idx.push(i);
        val.push(n);
      }
    }
    return { idx: Int32Array.from(idx), val: Float64Array.from(val) };
  }
}

function labelIds(examples: readonly Example[], labels: readonly string[], caller: string): Int32Array {
  const id = new Map(labels.map((l, i) => [l, i]));
  return Int32Array.from(examples, (e, i) => {
    const c = id.get(e.label);
    if (c === undefined) throw new DatasetError(`'${caller}': example ${i} has label '${e.label}', which is not among the ${labels.length} training labels`);
    return c;
  });
}

function checkTrain(train: readonly Example[], caller: string): string[] {
  if (train.length === 0) throw new DatasetError(`'${caller}' needs at least one training example; got none`);
  return [...new Set(train.map((e) => e.label))].sort();
}

function argmax(z: Float64Array): number {
  let best = 0;
  for (let c = 1; c < z.length; c++) if (z[c]! > z[best]!) best = c;
  return best;
}

export interface BowLogisticRegressionOptions {
  /**
   * L2 penalty on the weights (not the biases), added to the mean cross-entropy as l2/2·|W|². Default 1/n for n
   * training examples: scikit-learn's LogisticRegression default (C = 1 = 1/(l2·n)).
   */
  l2?: number;
  /** At most this many L-BFGS iterations. Default 100 (scikit-learn's max_iter). */
  iterations?: number;
  /** Stop when every gradient component is at most this in absolute value. Default 1e-4 (scikit-learn's tol). */
  tolerance?: number;
  /** Warm start: the weights of features both models know, and the biases, start from this model (same labels). */
  init?: BowLogisticRegression;
}

/** Multinomial logistic regression on unigram + bigram counts. */
export class BowLogisticRegression {
  private constructor(
    readonly labels: string[],
    /** @internal */ readonly vocab: Vocabulary,
    /** @internal (V, C) row-major */ readonly w: Float64Array,
    /** @internal */ readonly b: Float64Array,
  ) {}

  static fit(train: readonly Example[], opts: BowLogisticRegressionOptions = {}): BowLogisticRegression {
    const iterations = opts.iterations ?? 100, tolerance = opts.tolerance ?? 1e-4;
    if (!Number.isInteger(iterations) || iterations < 1) throw new ConfigError(`'BowLogisticRegression.fit': option 'iterations' must be a positive integer; got ${iterations}`);
    if (!(tolerance >= 0)) throw new ConfigError(`'BowLogisticRegression.fit': option 'tolerance' must be >= 0; got ${tolerance}`);
    const labels = checkTrain(train, 'BowLogisticRegression.fit');
    const vocab = Vocabulary.fromTexts(train.map((e) => e.text));
    const l2 = opts.l2 ?? 1 / train.length;
    if (!(l2 > 0) || !Number.isFinite(l2)) throw new ConfigError(`'BowLogisticRegression.fit': option 'l2' must be a positive number; got ${l2}`);
    const rows = train.map((e) => vocab.row(e.text));
    const y = labelIds(train, labels, 'BowLogisticRegression.fit');
    const C = labels.length, nW = vocab.size * C;
    const theta = new Float64Array(nW + C); // [W (V, C) row-major | b (C)]
    if (opts.init) {
      if (opts.init.labels.join('\n') !== labels.join('\n')) {
        throw new ConfigError(`'BowLogisticRegression.fit': option 'init' has labels [${opts.init.labels.join(', ')}]; expected the training labels [${labels.join(', ')}]`);
      }
      for (const [f, j] of vocab.index) {
        const from = opts.init.vocab.index.get(f);
        if (from !== undefined) theta.set(opts.init.w.subarray(from * C, from * C + C), j * C);
      }
      theta.set(opts.init.b, nW);
    }
    const objective = (t: Float64Array, g: Float64Array) => crossEntropyL2(rows, y, C, nW, l2, t, g);
    lbfgs(objective, theta, iterations, tolerance);
    return new BowLogisticRegression(labels, vocab, theta.slice(0, nW), theta.slice(nW));
  }

  /** The number of unigram + bigram features seen in training. */
  get numFeatures(): number {
    return this.vocab.size;
  }

  predict(texts: readonly string[]): string[] {
    const C = this.labels.length, z = new Float64Array(C);
    return texts.map((t) => {
      logits(this.vocab.row(t), this.w, this.b, C, z);
      return this.labels[argmax(z)]!;
    });
  }

  accuracy(examples: readonly Example[]): number {
    return accuracyOf(this.predict(examples.map((e) => e.text)), examples);
  }
}

function logits(r: SparseRow, w: Float64Array, b: Float64Array, C: number, z: Float64Array): void {
  z.set(b);
  for (let k = 0; k < r.idx.length; k++) {
    const base = r.idx[k]! * C, v = r.val[k]!;
    for (let c = 0; c < C; c++) z[c]! += v * w[base + c]!;
  }
}

/** Mean cross-entropy + l2/2·|W|² at θ = [W | b]; writes the gradient into `g`, returns the loss. */
function crossEntropyL2(rows: readonly SparseRow[], y: Int32Array, C: number, nW: number, l2: number, theta: Float64Array, g: Float64Array): number {
  const n = rows.length, w = theta.subarray(0, nW), b = theta.subarray(nW), gb = g.subarray(nW), z = new Float64Array(C);
  let loss = 0;
  for (let j = 0; j < nW; j++) {
    g[j] = l2 * w[j]!;
    loss += 0.5 * l2 * w[j]! * w[j]!;
  }
  gb.fill(0);
  for (let i = 0; i < n; i++) {
    const r = rows[i]!;
    logits(r, w, b, C, z);
    loss -= logSoftmaxAt(z, y[i]!) / n; // z now holds the probabilities
    z[y[i]!]! -= 1;
    for (let c = 0; c < C; c++) gb[c]! += z[c]! / n;
    for (let k = 0; k < r.idx.length; k++) {
      const base = r.idx[k]! * C, v = r.val[k]! / n;
      for (let c = 0; c < C; c++) g[base + c]! += v * z[c]!;
    }
  }
  return loss;
}

/** Turns logits `z` into probabilities in place; returns log p[target]. */
function logSoftmaxAt(z: Float64Array, target: number): number {
  let m = -Infinity, s = 0;
  for (const v of z) m = Math.max(m, v);
  const zt = z[target]! - m;
  for (let c = 0; c < z.length; c++) s += (z[c] = Math.exp(z[c]! - m));
  for (let c = 0; c < z.length; c++) z[c]! /= s;
  return zt - Math.log(s);
}

const dot = (a: Float64Array, b: Float64Array) => {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += a[j]! * b[j]!;
  return s;
};

/**
 * Minimises a smooth convex f by L-BFGS (history m, Armijo backtracking from the unit step), in place on x. Stops
 * after `maxIter` iterations, when max|∇f| <= tol, or when a step no longer lowers f. Its memory is 2m + 4 vectors
 * the size of x, allocated once.
 */
function lbfgs(f: (x: Float64Array, g: Float64Array) => number, x: Float64Array, maxIter: number, tol: number, m = 5): void {
  const d = x.length, g = new Float64Array(d), xNew = new Float64Array(d), gNew = new Float64Array(d), dir = new Float64Array(d);
  const S = Array.from({ length: m }, () => new Float64Array(d)), Y = Array.from({ length: m }, () => new Float64Array(d));
  const rho = new Float64Array(m), alpha = new Float64Array(m);
  let stored = 0, next = 0; // pairs held; ring slot of the next pair
  const slot = (k: number) => (next - stored + k + m) % m; // k-th oldest pair held
  let fx = f(x, g);
  for (let it = 0; it < maxIter; it++) {
    let gmax = 0;
    for (const v of g) gmax = Math.max(gmax, Math.abs(v));
    if (gmax <= tol) return;
    // two-loop recursion: dir = -H·g
    for (let j = 0; j < d; j++) dir[j] = -g[j]!;
    for (let k = stored - 1; k >= 0; k--) {
      const i = slot(k), s = S[i]!, y = Y[i]!;
      alpha[i] = rho[i]! * dot(s, dir);
      for (let j = 0; j < d; j++) dir[j]! -= alpha[i]! * y[j]!;
    }
    const last = slot(stored - 1);
    const gamma = stored ? 1 / (rho[last]! * dot(Y[last]!, Y[last]!)) : 1 / Math.max(1, gmax);
    for (let j = 0; j < d; j++) dir[j]! *= gamma;
    for (let k = 0; k < stored; k++) {
      const i = slot(k), s = S[i]!, y = Y[i]!;
      const beta = rho[i]! * dot(y, dir);
      for (let j = 0; j < d; j++) dir[j]! += (alpha[i]! - beta) * s[j]!;
    }
    const slope = dot(g, dir);
    if (!(slope < 0)) return; // not a descent direction: converged to rounding
    let step = 1, fNew = NaN;
    for (let tries = 0; tries < 30; tries++, step /= 2) {
      for (let j = 0; j < d; j++) xNew[j] = x[j]! + step * dir[j]!;
      fNew = f(xNew, gNew);
      if (fNew <= fx + 1e-4 * step * slope) break;
    }
    if (!(fNew < fx)) return;
    const s = S[next]!, y = Y[next]!;
    for (let j = 0; j < d; j++) {
      s[j] = xNew[j]! - x[j]!;
      y[j] = gNew[j]! - g[j]!;
    }
    const sy = dot(s, y);
    if (sy > 1e-12) {
      rho[next] = 1 / sy;
      next = (next + 1) % m;
      stored = Math.min(m, stored + 1);
    }
    x.set(xNew);
    g.set(gNew);
    fx = fNew;
  }
}

function accuracyOf(pred: readonly string[], examples: readonly Example[]): number {
  let ok = 0;
  for (let i = 0; i < examples.length; i++) if (pred[i] === examples[i]!.label) ok++;
  return examples.length ? ok / examples.length : NaN;
}

/** Multinomial Naive Bayes on unigram + bigram counts, add-`alpha` smoothing (default 1). */
export class MultinomialNaiveBayes {
  private constructor(readonly labels: string[], private readonly vocab: Vocabulary, private readonly logProb: Float64Array, private readonly logPrior: Float64Array) {}

  static fit(train: readonly Example[], alpha = 1): MultinomialNaiveBayes {
    if (!(alpha > 0)) throw new ConfigError(`'MultinomialNaiveBayes.fit': 'alpha' must be positive; got ${alpha}`);
    const labels = checkTrain(train, 'MultinomialNaiveBayes.fit');
    const vocab = Vocabulary.fromTexts(train.map((e) => e.text));
    const y = labelIds(train, labels, 'MultinomialNaiveBayes.fit');
    const V = vocab.size, C = labels.length;
    const counts = new Float64Array(V * C).fill(alpha), totals = new Float64Array(C).fill(alpha * V), prior = new Float64Array(C);
    train.forEach((e, i) => {
      const r = vocab.row(e.text), c = y[i]!;
      prior[c]!++;
      for (let k = 0; k < r.idx.length; k++) {
        counts[r.idx[k]! * C + c]! += r.val[k]!;
        totals[c]! += r.val[k]!;
      }
    });
    for (let j = 0; j < V; j++) for (let c = 0; c < C; c++) counts[j * C + c] = Math.log(counts[j * C + c]! / totals[c]!);
    return new MultinomialNaiveBayes(labels, vocab, counts, prior.map((p) => Math.log(p / train.length)));
  }

  predict(texts: readonly string[]): string[] {
    const C = this.labels.length, z = new Float64Array(C);
    return texts.map((t) => {
      const r = this.vocab.row(t);
      z.set(this.logPrior);
      for (let k = 0; k < r.idx.length; k++) for (let c = 0; c < C; c++) z[c]! += r.val[k]! * this.logProb[r.idx[k]! * C + c]!;
      return this.labels[argmax(z)]!;
    });
  }

  accuracy(examples: readonly Example[]): number {
    return accuracyOf(this.predict(examples.map((e) => e.text)), examples);
  }
}

export interface BowBaselineResult {
  /** Test accuracy of the logistic regression chosen on validation (NaN without a test split). */
  accuracy: number;
  validationAccuracy: number;
  /** The inverse L2 strength chosen on validation (scikit-learn's C: l2 = 1/(C·n)). */
  c: number;
  numFeatures: number;
  trainExamples: number;
  testExamples: number;
  seconds: number;
}

/** The inverse L2 strengths tried, scikit-learn's C (l2 = 1/(C·n)); its default is 1. */
export const BOW_C_GRID = [1, 10, 100] as const;

/**
 * The bag-of-words logistic-regression baseline of a classification dataset: fitted on train for each C of `cGrid`
 * (each warm-started from the previous one), the best on validation (the first on ties; the first C of the grid
 * when there is no validation split) scored on test.
 */
export function bowBaseline(splits: Pick<DatasetSplits, 'train' | 'validation' | 'test'>, opts: { cGrid?: readonly number[]; iterations?: number } = {}): BowBaselineResult {
  const t0 = performance.now();
  const grid = opts.cGrid ?? BOW_C_GRID;
  if (grid.length === 0 || !grid.every((c) => c > 0 && Number.isFinite(c))) throw new ConfigError(`'bowBaseline': option 'cGrid' must hold positive numbers; got [${grid.join(', ')}]`);
  let best: { model: BowLogisticRegression; c: number; val: number } | null = null;
  let prev: BowLogisticRegression | undefined;
  for (const c of splits.validation.length > 0 ? grid : grid.slice(0, 1)) {
    const model = BowLogisticRegression.fit(splits.train, { l2: 1 / (c * splits.train.length), iterations: opts.iterations, init: prev });
    const val = splits.validation.length > 0 ? model.accuracy(splits.validation) : NaN;
    if (!best || val > best.val) best = { model, c, val };
    prev = model;
  }
  const { model, c, val } = best!;
  return {
    accuracy: model.accuracy(splits.test), validationAccuracy: val, c, numFeatures: model.numFeatures,
    trainExamples: splits.train.length, testExamples: splits.test.length, seconds: (performance.now() - t0) / 1000,
  };
}
