import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { loadUSELite } from './src/models/use-lite/index.js';
import { loadDataset } from './src/data/index.js';
const d = loadDataset({ dataset: 'custom_intent_v2' });
const all = [...d.train, ...d.validation, ...d.test];
const cache = '/tmp/emb-' + all.length + '-' + all.map(x => x.text).join('').length + '.bin';
let X: Float32Array;
if (existsSync(cache)) X = new Float32Array(readFileSync(cache).buffer.slice(0));
else { X = loadUSELite().embed(all.map((x) => x.text), { batchSize: 64 }).f32(); writeFileSync(cache, Buffer.from(X.buffer)); }
const D = 512, C = d.labels.length;
const y = all.map((x) => d.labels.indexOf(x.label));
const ntr = d.train.length, nva = d.validation.length;
const W = new Float64Array(C * D), b = new Float64Array(C);
const mW = new Float64Array(C * D), vW = new Float64Array(C * D);
const lr = 0.01, l2 = Number(process.env.L2 ?? 1e-4);
const logits = (i: number) => { const z = new Float64Array(C); for (let c = 0; c < C; c++) { let s = b[c]!; for (let k = 0; k < D; k++) s += W[c * D + k]! * X[i * D + k]!; z[c] = s; } return z; };
const acc = (lo: number, hi: number) => { let ok = 0; for (let i = lo; i < hi; i++) { const z = logits(i); let bi = 0; for (let c = 1; c < C; c++) if (z[c]! > z[bi]!) bi = c; if (bi === y[i]) ok++; } return ok / (hi - lo); };
for (let ep = 1; ep <= 400; ep++) {
  const gW = new Float64Array(C * D), gb = new Float64Array(C);
  for (let i = 0; i < ntr; i++) {
    const z = logits(i); const m = Math.max(...z); let sum = 0; for (let c = 0; c < C; c++) { z[c] = Math.exp(z[c]! - m); sum += z[c]!; }
    for (let c = 0; c < C; c++) { const g = z[c]! / sum - (c === y[i] ? 1 : 0); gb[c]! += g; for (let k = 0; k < D; k++) gW[c * D + k]! += g * X[i * D + k]!; }
  }
  for (let j = 0; j < W.length; j++) { const g = gW[j]! / ntr + l2 * W[j]!; mW[j] = 0.9 * mW[j]! + 0.1 * g; vW[j] = 0.999 * vW[j]! + 0.001 * g * g; W[j]! -= lr * (mW[j]! / (1 - 0.9 ** ep)) / (Math.sqrt(vW[j]! / (1 - 0.999 ** ep)) + 1e-8); }
  for (let c = 0; c < C; c++) b[c]! -= 0.1 * gb[c]! / ntr;
  if (ep % 100 === 0) console.log(ep, 'train', acc(0, ntr).toFixed(3), 'val', acc(ntr, ntr + nva).toFixed(3), 'test', acc(ntr + nva, all.length).toFixed(3));
}
// confusions on test
const conf = new Map<string, number>();
for (let i = ntr + nva; i < all.length; i++) { const z = logits(i); let bi = 0; for (let c = 1; c < C; c++) if (z[c]! > z[bi]!) bi = c; if (bi !== y[i]) { const k = d.labels[y[i]!] + ' -> ' + d.labels[bi]; conf.set(k, (conf.get(k) ?? 0) + 1); } }
console.log([...conf].sort((a, b) => b[1] - a[1]).slice(0, 15));
