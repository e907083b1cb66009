#!/usr/bin/env node
/**
 * The `block` workload of shared/bench/WORKLOADS.md in TensorFlow.js, the reference that `autoglm bench block
 * --vs-tfjs` times side by side with ours: one pre-LayerNorm causal transformer block (B8 T128 d256, 4 heads, MLP
 * 1024 with erf GELU, every Linear with bias) + a linear head to 512 classes + softmax cross-entropy, SGD lr 1e-3,
 * on TF.js's WebAssembly backend (@tensorflow/tfjs-backend-wasm, SIMD; its threads are a browser feature) or its
 * plain JavaScript one (--backend cpu). Prints one JSON line with the fields of torch_reference.py.
 *   node scripts/tfjs-reference.mjs block [--backend wasm|cpu] [--threads N] [--steps N] [--warmup N] [--json]
 */
import * as tf from '@tensorflow/tfjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const workload = args[0];
if (workload !== 'block') {
  console.error(`tfjs-reference: only the 'block' workload is implemented; got '${workload}'`);
  process.exit(2);
}
const backendName = opt('backend', 'wasm');
const threads = Number(opt('threads', '1'));
const steps = Number(opt('steps', '10'));
const warmup = Number(opt('warmup', '3'));

if (backendName === 'wasm') {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  if (threads > 0) wasm.setThreadsCount?.(threads);
}
await tf.setBackend(backendName);
await tf.ready();

const B = 8, T = 128, d = 256, H = 4, hs = d / H, ff = 1024, C = 512;
const seeded = (shape, seed, scale) => tf.variable(tf.randomNormal(shape, 0, scale, 'float32', seed));
const zeros = (shape) => tf.variable(tf.zeros(shape));
const ones = (shape) => tf.variable(tf.ones(shape));
const P = {
  ln1g: ones([d]), ln1b: zeros([d]),
  wqkv: seeded([d, 3 * d], 1, 1 / Math.sqrt(d)), bqkv: zeros([3 * d]),
  wproj: seeded([d, d], 2, 1 / Math.sqrt(d)), bproj: zeros([d]),
  ln2g: ones([d]), ln2b: zeros([d]),
  w1: seeded([d, ff], 3, 1 / Math.sqrt(d)), b1: zeros([ff]),
  w2: seeded([ff, d], 4, 1 / Math.sqrt(ff)), b2: zeros([d]),
  wh: seeded([d, C], 5, 1 / Math.sqrt(d)), bh: zeros([C]),
};
const x = tf.randomNormal([B * T, d], 0, 1, 'float32', 6);
const labels = tf.oneHot(tf.randomUniform([B * T], 0, C, 'int32', 7), C);
// causal mask: -1e9 above the diagonal, added to the scores
const causal = tf.linalg.bandPart(tf.ones([T, T]), -1, 0).sub(1).mul(1e9);

function layerNorm(h, g, b) {
  const { mean, variance } = tf.moments(h, -1, true);
  return h.sub(mean).mul(tf.rsqrt(variance.add(1e-5))).mul(g).add(b);
}
function attention(h) {
  const qkv = h.matMul(P.wqkv).add(P.bqkv).reshape([B, T, 3, H, hs]).transpose([2, 0, 3, 1, 4]);  // (3, B, H, T, hs)
  const [q, k, v] = tf.unstack(qkv);
  const s = q.matMul(k, false, true).mul(1 / Math.sqrt(hs)).add(causal);
  const o = tf.softmax(s).matMul(v).transpose([0, 2, 1, 3]).reshape([B * T, d]);
  return o.matMul(P.wproj).add(P.bproj);
}
function gelu(h) {
  return h.mul(tf.erf(h.mul(Math.SQRT1_2)).add(1)).mul(0.5);
}
function loss() {
  const h = x.add(attention(layerNorm(x, P.ln1g, P.ln1b)));
  const m = gelu(layerNorm(h, P.ln2g, P.ln2b).matMul(P.w1).add(P.b1)).matMul(P.w2).add(P.b2);
  const logits = h.add(m).matMul(P.wh).add(P.bh);
  return tf.losses.softmaxCrossEntropy(labels, logits);
}
const opt_ = tf.train.sgd(1e-3);
const vars = Object.values(P);
const step = () => {
  const l = opt_.minimize(loss, true, vars);
  const v = l.dataSync()[0];
  l.dispose();
  return v;
};
for (let i = 0; i < warmup; i++) step();
const ts = [];
for (let i = 0; i < steps; i++) {
  const t0 = performance.now();
  step();
  ts.push(performance.now() - t0);
}
ts.sort((a, b) => a - b);
const med = ts.length % 2 ? ts[ts.length >> 1] : (ts[ts.length / 2 - 1] + ts[ts.length / 2]) / 2;
const r3 = (v) => Math.round(v * 1e3) / 1e3;
const rec = {
  engine: `tfjs-${backendName}`,
  workload: 'block',
  dtype: 'fp32',
  threads: backendName === 'wasm' ? (await import('@tensorflow/tfjs-backend-wasm')).getThreadsCount?.() ?? 1 : 1,
  ms_per_step: r3(med),
  ms_min: r3(ts[0]),
  ms_max: r3(ts[ts.length - 1]),
  peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 102.4) / 10,
  tokens_per_s: Math.round((B * T) / (med / 1e3) * 10) / 10,
  trainable_params: vars.reduce((a, v) => a + v.size, 0),
  total_params: vars.reduce((a, v) => a + v.size, 0),
};
console.log(args.includes('--json') ? JSON.stringify(rec) : Object.entries(rec).map(([k, v]) => `${k}=${v}`).join('  '));
