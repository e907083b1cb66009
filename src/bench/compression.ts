/**
 * `autoglm bench compression`: every compressor on the gradients of a real fine-tune step of the default
 * model (open-autoglm-base + a classifier head on custom_intent_v2), built as the trainer builds it. Per
 * method: the exact bytes of the step frame GradientCompression puts on the wire, against dense f32, the
 * median time of encode and of decodeSum (one rank), and the relative error ||decompressed - g|| / ||g||.
 * Error feedback is off, so the numbers are the compressor's own, except in the variant rows (VARIANTS: QSGD
 * 4-bit, top-k with DGC's momentum correction), whose time includes the memory's work and whose error is that of
 * the first step (fresh memory: what is sent from g itself, as later steps also send accumulated velocity).
 */
import { Tensor } from '../tensor/tensor.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { manualSeed } from '../nn/init.js';
import { SGD } from '../optim/sgd.js';
import { LoraModel } from '../peft/index.js';
import { loadModel } from '../models/registry.js';
import { SequenceClassifier, textEncoderOf } from '../models/classifier.js';
import { loadDataset, encodeDataset, collate } from '../data/index.js';
import { COMPRESSION_METHODS, GradientCompression, type CompressionSpec } from '../compress/index.js';
import { ConfigError } from '../errors.js';
import { median, r3 } from './measure.js';

export interface CompressionBenchOptions {
  source: 'lora' | 'full';
  /** One method, or all of them. */
  method?: string;
  /** Timed repeats per method (median reported). */
  repeats: number;
  /** Batch size of the gradient steps. */
  batchSize: number;
}

export interface CompressionRecord {
  method: string;
  source: string;
  /** The memory: 'none', or the error feedback of a variant row. */
  error_feedback: string;
  tensors: number;
  numel: number;
  bytes: number;
  dense_bytes: number;
  compression_ratio: number;
  compress_ms: number;
  decompress_ms: number;
  rel_error: number;
}

/** Rows beyond each method's defaults: name -> spec. */
export const VARIANTS: Record<string, CompressionSpec> = {
  'qsgd-4bit': { method: 'qsgd', levels: 7, errorFeedback: false }, // 1 sign + 3 level bits
  'topk-dgc': { method: 'topk', errorFeedback: 'dgc' }, //             top-k 10% with DGC momentum correction (m 0.9)
};

/** The specs measured: the defaults of each method (the threshold one scaled to these gradients), and VARIANTS. */
function specFor(method: string, grads: Map<string, Float32Array>): CompressionSpec {
  if (VARIANTS[method]) return VARIANTS[method];
  if (method !== 'threshold') return { method, errorFeedback: false };
  let ss = 0, n = 0;
  for (const g of grads.values()) {
    for (let i = 0; i < g.length; i++) ss += g[i] * g[i];
    n += g.length;
  }
  return { method, threshold: 1.645 * Math.sqrt(ss / n), errorFeedback: false }; // ~ the std-mask cut, global rms
}

/** Gradients (by parameter name) and shapes after two real training steps of the default model. */
export async function fineTuneGradients(source: 'lora' | 'full', batchSize: number): Promise<{ grads: Map<string, Float32Array>; shapes: Map<string, number[]> }> {
  manualSeed(42);
  const enc = textEncoderOf(await loadModel('open-autoglm-base'), 'open-autoglm-base');
  const splits = loadDataset({ dataset: 'custom_intent_v2', seed: 42 });
  const model = new SequenceClassifier(enc, splits.labels.length, 0.1);
  if (source === 'lora') {
    new LoraModel(model, { r: 8, alpha: 16, targetModules: 'all-linear', modulesToSave: ['classifier'], seed: 42, baseModelNameOrPath: enc.name });
  } else {
    for (const p of model.parameters()) p.requiresGrad = p.dtype === 'f32';
  }
  const train = encodeDataset(splits.train, enc.encodeText, splits.labels, { maxLength: Math.min(64, enc.maxLength) });
  const params = model.trainableParameters();
  const opt = new SGD(params, { lr: source === 'lora' ? 1e-3 : 1e-4 });
  model.train();
  for (let step = 0; step < 2; step++) {
    opt.zeroGrad();
    const idx = Array.from({ length: Math.min(batchSize, train.ids.length) }, (_, i) => (step * batchSize + i) % train.ids.length);
    const b = collate(train, idx, enc.padId);
    const logits = model.forward(new Tensor(b.ids, 'i32', [b.batchSize, b.seqLen]), new Tensor(b.mask, 'f32', [b.batchSize, b.seqLen]));
    crossEntropy(logits, new Tensor(Int32Array.from(idx, (i) => train.labels[i]), 'i32', [idx.length])).backward();
    if (step === 0) opt.step();
  }
  const grads = new Map<string, Float32Array>(), shapes = new Map<string, number[]>();
  for (const [name, p] of model.namedParameters()) {
    if (!p.requiresGrad || !p.grad) continue;
    grads.set(name, p.grad.f32().slice());
    shapes.set(name, [...p.shape]);
  }
  return { grads, shapes };
}


export function benchCompressors(grads: Map<string, Float32Array>, shapes: Map<string, number[]>, o: CompressionBenchOptions): CompressionRecord[] {
  const known = [...COMPRESSION_METHODS, ...Object.keys(VARIANTS)];
  const methods = o.method ? [o.method] : known;
  for (const m of methods) if (!known.includes(m)) throw new ConfigError(`option '--method' is '${m}'; expected one of ${known.join(', ')}`);
  const numel = [...grads.values()].reduce((s, g) => s + g.length, 0);
  let gss = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) gss += g[i] * g[i];
  const out = new Map([...grads].map(([k, g]) => [k, new Float32Array(g.length)]));
  const records: CompressionRecord[] = [];
  for (const method of methods) {
    const spec = specFor(method, grads);
    const gc = new GradientCompression(spec, { seed: 1, shapes });
    let frame = gc.encode(grads, 0); // warm-up (and PowerSGD's first Q)
    gc.decodeSum([frame], out, false);
    const withMemory = gc.memory.name !== 'none';
    const firstError = withMemory ? relError(grads, out, gss) : 0;
    const tc: number[] = [], td: number[] = [];
    for (let r = 0; r < o.repeats; r++) {
      const t0 = performance.now();
      frame = gc.encode(grads, r + 1);
      const t1 = performance.now();
      gc.decodeSum([frame], out, false);
      td.push(performance.now() - t1);
      tc.push(t1 - t0);
    }
    records.push({
      method, source: o.source, error_feedback: gc.memory.name, tensors: grads.size, numel, bytes: frame.length, dense_bytes: 4 * numel,
      compression_ratio: Math.round((4 * numel / frame.length) * 100) / 100,
      compress_ms: r3(median(tc)), decompress_ms: r3(median(td)),
      rel_error: Math.round((withMemory ? firstError : relError(grads, out, gss)) * 1e4) / 1e4,
    });
  }
  return records;
}

/** ||decoded - g|| / ||g|| over every tensor (`gss` = ||g||^2). */
function relError(grads: Map<string, Float32Array>, decoded: Map<string, Float32Array>, gss: number): number {
  let ess = 0;
  for (const [k, g] of grads) {
    const d = decoded.get(k) as Float32Array;
    for (let i = 0; i < g.length; i++) ess += (d[i] - g[i]) ** 2;
  }
  return Math.sqrt(ess / Math.max(gss, 1e-300));
}

export async function runCompressionBench(o: CompressionBenchOptions): Promise<CompressionRecord[]> {
  const { grads, shapes } = await fineTuneGradients(o.source, o.batchSize);
  return benchCompressors(grads, shapes, o);
}

/** A readable table of the records. */
export function formatCompressionTable(recs: CompressionRecord[]): string {
  const cols: (keyof CompressionRecord)[] = ['method', 'error_feedback', 'bytes', 'dense_bytes', 'compression_ratio', 'compress_ms', 'decompress_ms', 'rel_error'];
  const rows = [cols.map(String), ...recs.map((r) => cols.map((c) => String(r[c])))];
  const w = cols.map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  const head = recs.length ? `gradients: ${recs[0].source}, ${recs[0].tensors} tensors, ${recs[0].numel} floats\n` : '';
  return head + rows.map((r) => r.map((c, j) => (j === 0 ? c.padEnd(w[j]) : c.padStart(w[j]))).join('  ')).join('\n');
}
