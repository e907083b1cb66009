// The fused attention kernels alone, f32 (attention) against bf16 products (attentionBf16), forward + backward, on the
// block (B8 H4 T128 hs64), cls (B64 H4 T32 hs64) and gpt2 (B8 H12 T128 hs64) shapes, fused qkv layout; medians of 15
// (node --import tsx scripts/experiments/attention-bf16-bench.ts). KERNEL_TIMER_CPU=1 times process CPU time instead of
// wall time (steadier on a loaded machine; with AUTOGLM_NUM_THREADS=1 the kernels' own cost).
import { createRequire } from 'node:module';
import { getBackend } from '../../src/backend/index.js';
import type { AttentionShape } from '../../src/backend/backend.js';

const be = getBackend('native');
const now = process.env.KERNEL_TIMER_CPU === 'thread' ? (() => { const a = createRequire(import.meta.url)('../../build/Release/autoglm_native.node') as { threadCpuMs(): number }; return () => a.threadCpuMs(); })() : process.env.KERNEL_TIMER_CPU === '1' ? () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; } : () => performance.now();
const med = (f: () => void, n = 15) => {
  for (let i = 0; i < 3; i++) f();
  const t: number[] = [];
  for (let i = 0; i < n; i++) { const t0 = now(); f(); t.push(now() - t0); }
  return t.sort((a, b) => a - b)[n >> 1];
};
for (const [name, B, H, T, D, causal] of [['block', 8, 4, 128, 64, true], ['cls', 64, 4, 32, 64, false], ['gpt2', 8, 12, 128, 64, true]] as const) {
  const C = H * D, st: [number, number, number] = [T * 3 * C, D, 3 * C];
  const base = Float32Array.from({ length: B * T * 3 * C }, () => Math.random() - 0.5);
  const q = base, k = base.subarray(C), v = base.subarray(2 * C);
  const shape: AttentionShape = { B, H, Hkv: H, Tq: T, Tk: T, D, Dv: D, qStrides: st, kStrides: st, vStrides: st, outStrides: [T * C, D, C], scale: 0.125, causal };
  const out = new Float32Array(B * T * C), stats = new Float32Array(B * H * T * 2), dout = Float32Array.from(out, () => Math.random());
  const d = new Float32Array(base.length);
  const ql = new Uint16Array(B * H * T * D), kl = new Uint16Array(ql.length), vl = new Uint16Array(ql.length);
  const f32f = med(() => be.attention(shape, q, k, v, null, null, out, stats));
  const f32b = med(() => be.attentionBackward(shape, q, k, v, null, null, stats, dout, shape.outStrides, d, d.subarray(C), d.subarray(2 * C)));
  const bff = med(() => be.attentionBf16!(shape, q, k, v, null, null, out, stats, ql, kl, vl));
  const bfb = med(() => be.attentionBf16Backward!(shape, ql, kl, vl, null, null, stats, dout, shape.outStrides, d, d.subarray(C), d.subarray(2 * C)));
  console.log(`${name}: f32 fwd ${f32f.toFixed(2)} bwd ${f32b.toFixed(2)} ms | bf16 fwd ${bff.toFixed(2)} bwd ${bfb.toFixed(2)} ms | ratio ${((bff + bfb) / (f32f + f32b)).toFixed(2)}`);
}
