import { backend } from '../src/backend/index.js';
const n = 1 << 20;
const f = new Float32Array(n).map(() => Math.random()); const h = new Uint16Array(n); const g = new Float32Array(n);
const b = backend();
for (let r = 0; r < 5; r++) {
  let t = performance.now(); for (let i = 0; i < 50; i++) b.cast(f, 'f32', h, 'bf16'); const a = (performance.now() - t) / 50;
  t = performance.now(); for (let i = 0; i < 50; i++) b.cast(h, 'bf16', g, 'f32'); const c = (performance.now() - t) / 50;
  t = performance.now(); for (let i = 0; i < 50; i++) b.cast(f, 'f32', h, 'f16'); const d = (performance.now() - t) / 50;
  console.log(`f32->bf16 ${a.toFixed(3)} ms  bf16->f32 ${c.toFixed(3)} ms  f32->f16 ${d.toFixed(3)}`);
}
