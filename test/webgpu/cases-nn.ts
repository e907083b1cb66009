/** Kernel cases: softmax, norms, cross-entropy, embeddings, optimizers, matmul, attention. */
import type { AttentionShape } from '../../src/backend/backend.js';
import type { Case } from './cases-elementwise.js';

function contiguous(B: number, H: number, T: number, D: number): [number, number, number] {
  return [H * T * D, T * D, D];
}

export const nnCases: Case[] = [
  {
    name: 'limits are clear errors (attention head size over 256, a buffer over the binding limit)',
    run(t, P, G) {
      const s: AttentionShape = { B: 1, H: 1, Hkv: 1, Tq: 1, Tk: 3, D: 300, Dv: 300, scale: 1, causal: false,
        qStrides: [300, 300, 300], kStrides: [900, 900, 300], vStrides: [900, 900, 300], outStrides: [300, 300, 300] };
      const a = G.alloc('f32', 900);
      let msg = '';
      try { G.attention(s, a, a, a, null, null, G.alloc('f32', 4), G.alloc('f32', 2)); } catch (e) { msg = `${(e as Error).name}: ${(e as Error).message}`; }
      if (!/ShapeError: .*head sizes up to 256; got D = 300/.test(msg)) throw new Error(`attention D = 300: expected a ShapeError; got '${msg}'`);
      msg = '';
      const s4 = { ...s, Tq: 2, D: 4, Dv: 4 };
      try { G.attention(s4, a, a, a, null, G.alloc('i32', 1), G.alloc('f32', 8), G.alloc('f32', 4)); } catch (e) { msg = `${(e as Error).name}: ${(e as Error).message}`; }
      if (!/ShapeError: .*firstKey has 1 elements; expected B \* Tq = 2/.test(msg)) throw new Error(`a short firstKey: expected a ShapeError; got '${msg}'`);
      msg = '';
      const mm = { batch: 1, M: 2, N: 3, K: 2, transA: false, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 0, dtype: 'f32' as const };
      try { G.matmul({ ...mm, a, b: a, out: G.alloc('f32', 6), bias: G.alloc('f32', 2) }); } catch (e) { msg = `${(e as Error).name}: ${(e as Error).message}`; }
      if (!/ShapeError: .*bias has 2 elements; expected N = 3/.test(msg)) throw new Error(`a short bias: expected a ShapeError; got '${msg}'`);
      const max = G.ctx.device.limits.maxStorageBufferBindingSize;
      msg = '';
      try { G.alloc('f32', max / 4 + 1); } catch (e) { msg = (e as Error).message; }
      if (!msg.includes('storage binding limit')) throw new Error(`an alloc over the limit: expected a clear error; got '${msg}'`);
    },
  },
  {
    name: 'buffer pool: a released buffer comes back zero-filled to the next alloc of its size class',
    async run(t, P, G) {
      const a = G.upload(new Float32Array(1000).fill(3), 'f32');
      const before = G.ctx.pooledBytes();
      G.ctx.release(a);
      if (G.ctx.pooledBytes() !== before + a.buffer.size) throw new Error(`pool: ${G.ctx.pooledBytes()} bytes after release; expected ${before + a.buffer.size}`);
      const b = G.alloc('f32', 900);
      if (b.buffer !== a.buffer) throw new Error('pool: the released buffer was not reused');
      const got = await G.read(b);
      if (got.some((v) => v !== 0)) throw new Error('pool: a reused buffer is not zero-filled');
    },
  },
  {
    name: 'softmax and log-softmax, forward and backward',
    run(t, P, G) {
      const rows = 9, cols = 300;
      const x = t.f32(rows * cols, -8, 8), dy = t.f32(rows * cols);
      for (const log of [false, true]) {
        const y = t.out(rows * cols), dx = t.out(rows * cols);
        P.softmax(x.c, rows, cols, y.c, log); G.softmax(x.g, rows, cols, y.g, log);
        P.softmaxBackward(y.c, dy.c, rows, cols, dx.c, log); G.softmaxBackward(y.g, dy.g, rows, cols, dx.g, log);
        t.check(`y log=${log}`, y, 1e-5, 1e-7);
        t.check(`dx log=${log}`, dx, 1e-4, 1e-6);
      }
    },
  },
  {
    name: 'layer norm and RMS norm, forward and the three backward forms',
    run(t, P, G) {
      const rows = 150, cols = 333; // 150 rows: three chunks of the dgamma/dbeta reduction
      const x = t.f32(rows * cols, -3, 5), gamma = t.f32(cols, 0.5, 1.5), beta = t.f32(cols), dy = t.f32(rows * cols);
      for (const affine of [true, false]) {
        const g = affine ? gamma : null, b = affine ? beta : null;
        const y = t.out(rows * cols), mean = t.out(rows), rstd = t.out(rows);
        P.layerNorm(x.c, g?.c ?? null, b?.c ?? null, rows, cols, 1e-5, y.c, mean.c, rstd.c);
        G.layerNorm(x.g, g?.g ?? null, b?.g ?? null, rows, cols, 1e-5, y.g, mean.g, rstd.g);
        t.check(`layerNorm y affine=${affine}`, y, 1e-5, 1e-5);
        t.check(`layerNorm mean affine=${affine}`, mean, 1e-5, 1e-6);
        t.check(`layerNorm rstd affine=${affine}`, rstd, 1e-5, 1e-6);
        const dx = t.out(rows * cols), dg = t.out(cols, 'f32', t.rand(cols)), db = t.out(cols, 'f32', t.rand(cols));
        P.layerNormBackward(dy.c, x.c, g?.c ?? null, mean.c, rstd.c, rows, cols, dx.c, affine ? dg.c : null, affine ? db.c : null);
        G.layerNormBackward(dy.g, x.g, g?.g ?? null, mean.g, rstd.g, rows, cols, dx.g, affine ? dg.g : null, affine ? db.g : null);
        t.check(`layerNormBackward dx affine=${affine}`, dx, 1e-4, 1e-5);
        t.check(`layerNormBackward dgamma (accumulated) affine=${affine}`, dg, 1e-4, 1e-5);
        t.check(`layerNormBackward dbeta (accumulated) affine=${affine}`, db, 1e-4, 1e-5);
      }
      const y = t.out(rows * cols), mean = t.out(rows), rstd = t.out(rows);
      P.layerNorm(x.c, gamma.c, beta.c, rows, cols, 1e-5, y.c, mean.c, rstd.c);
      G.layerNorm(x.g, gamma.g, beta.g, rows, cols, 1e-5, y.g, mean.g, rstd.g);
      const dx = t.out(rows * cols), dg = t.out(cols), db = t.out(cols);
      P.layerNormBackwardFromOutput(dy.c, y.c, gamma.c, beta.c, rstd.c, rows, cols, dx.c, dg.c, db.c);
      G.layerNormBackwardFromOutput(dy.g, y.g, gamma.g, beta.g, rstd.g, rows, cols, dx.g, dg.g, db.g);
      t.check('layerNormBackwardFromOutput dx', dx, 1e-4, 1e-5);
      t.check('layerNormBackwardFromOutput dgamma', dg, 1e-4, 1e-5);
      t.check('layerNormBackwardFromOutput dbeta', db, 1e-4, 1e-5);
      const ry = t.out(rows * cols), rr = t.out(rows);
      P.rmsNorm(x.c, gamma.c, rows, cols, 1e-6, ry.c, rr.c); G.rmsNorm(x.g, gamma.g, rows, cols, 1e-6, ry.g, rr.g);
      t.check('rmsNorm y', ry, 1e-5, 1e-6);
      t.check('rmsNorm rstd', rr, 1e-5, 1e-6);
      const rdx = t.out(rows * cols), rdg = t.out(cols), odx = t.out(rows * cols), odg = t.out(cols);
      P.rmsNormBackward(dy.c, x.c, gamma.c, rr.c, rows, cols, rdx.c, rdg.c); G.rmsNormBackward(dy.g, x.g, gamma.g, rr.g, rows, cols, rdx.g, rdg.g);
      P.rmsNormBackwardFromOutput(dy.c, ry.c, gamma.c, rr.c, rows, cols, odx.c, odg.c);
      G.rmsNormBackwardFromOutput(dy.g, ry.g, gamma.g, rr.g, rows, cols, odx.g, odg.g);
      t.check('rmsNormBackward dx', rdx, 1e-4, 1e-5);
      t.check('rmsNormBackward dgamma', rdg, 1e-4, 1e-5);
      t.check('rmsNormBackwardFromOutput dx', odx, 1e-4, 1e-5);
      t.check('rmsNormBackwardFromOutput dgamma', odg, 1e-4, 1e-5);
    },
  },
  {
    name: 'cross-entropy with label smoothing and ignored rows, forward and backward',
    run(t, P, G) {
      const rows = 12, cols = 37;
      const logits = t.f32(rows * cols, -5, 5);
      const tg = t.int(rows, cols);
      tg[3] = -100; tg[8] = -100;
      const targets = t.in(tg, 'i32'), dloss = t.f32(rows, 0.1, 1);
      for (const ls of [0, 0.1]) {
        const loss = t.out(rows), logp = t.out(rows * cols), dl = t.out(rows * cols);
        P.crossEntropy(logits.c, targets.c, rows, cols, -100, ls, loss.c, logp.c);
        G.crossEntropy(logits.g, targets.g, rows, cols, -100, ls, loss.g, logp.g);
        P.crossEntropyBackward(logp.c, targets.c, rows, cols, -100, ls, dloss.c, dl.c);
        G.crossEntropyBackward(logp.g, targets.g, rows, cols, -100, ls, dloss.g, dl.g);
        t.check(`loss ls=${ls}`, loss, 1e-5, 1e-6);
        t.check(`logp ls=${ls}`, logp, 1e-5, 1e-6);
        t.check(`dlogits ls=${ls}`, dl, 1e-4, 1e-6);
      }
      // dlogits aliasing logp (allowed by the interface)
      const loss = t.out(rows), logp = t.out(rows * cols);
      P.crossEntropy(logits.c, targets.c, rows, cols, -100, 0, loss.c, logp.c);
      G.crossEntropy(logits.g, targets.g, rows, cols, -100, 0, loss.g, logp.g);
      P.crossEntropyBackward(logp.c, targets.c, rows, cols, -100, 0, dloss.c, logp.c);
      G.crossEntropyBackward(logp.g, targets.g, rows, cols, -100, 0, dloss.g, logp.g);
      t.check('dlogits in place of logp', logp, 1e-4, 1e-6);
    },
  },
  {
    name: 'gather and scatterAdd (repeated indices)',
    run(t, P, G) {
      const vocab = 20, cols = 24, n = 50;
      const table = t.f32(vocab * cols), idx = t.in(t.int(n, vocab), 'i32'), out = t.out(n * cols);
      P.gather(table.c, idx.c, cols, out.c); G.gather(table.g, idx.g, cols, out.g);
      t.check('gather', out, 0, 0);
      const src = t.f32(n * cols), dt = t.out(vocab * cols, 'f32', t.rand(vocab * cols));
      P.scatterAdd(src.c, idx.c, cols, dt.c); G.scatterAdd(src.g, idx.g, cols, dt.g);
      t.check('scatterAdd', dt, 1e-6, 1e-6);
    },
  },
  {
    name: 'AdamW and SGD (momentum, Nesterov, weight decay), three steps',
    run(t, P, G) {
      const n = 1001;
      const p = t.f32(n), m = t.out(n), v = t.out(n);
      for (let step = 1; step <= 3; step++) {
        const g = t.f32(n);
        const args = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step, gradScale: 0.5 };
        P.adamw({ param: p.c, grad: g.c, m: m.c, v: v.c, ...args });
        G.adamw({ param: p.g, grad: g.g, m: m.g, v: v.g, ...args });
      }
      t.check('adamw param', p, 1e-5, 1e-6);
      t.check('adamw m', m, 1e-5, 1e-7);
      t.check('adamw v', v, 1e-5, 1e-9);
      for (const nesterov of [false, true]) {
        const q = t.f32(n), b = t.out(n);
        for (let step = 1; step <= 3; step++) {
          const g = t.f32(n);
          const args = { lr: 0.1, momentum: 0.9, dampening: 0, nesterov, weightDecay: 1e-3, firstStep: step === 1, gradScale: 1 };
          P.sgd({ param: q.c, grad: g.c, buf: b.c, ...args });
          G.sgd({ param: q.g, grad: g.g, buf: b.g, ...args });
        }
        t.check(`sgd param nesterov=${nesterov}`, q, 1e-5, 1e-6);
        t.check(`sgd buf nesterov=${nesterov}`, b, 1e-5, 1e-6);
      }
    },
  },
  {
    name: 'matmul f32: transposes, batch broadcast, alpha/beta, vec4 and scalar loads',
    run(t, P, G) {
      const shapes: [number, number, number, number][] = [[1, 70, 37, 45], [2, 64, 128, 64], [3, 17, 9, 5], [2, 1, 33, 8]];
      for (const [batch, M, N, K] of shapes) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const a = t.f32(batch * M * K + 3), b = t.f32(K * N + 1);
            const out = t.out(batch * M * N, 'f32', t.rand(batch * M * N));
            const args = { batch, M, N, K, transA, transB, strideA: M * K, strideB: 0, alpha: 0.75, beta: transA ? 1 : 0 };
            // a at offset 3 (not a multiple of 4: the scalar path) when transB, else at 0
            const ao = transB ? 3 : 0;
            P.matmul({ ...args, a: a.c.subarray(ao), b: b.c.subarray(1), out: out.c, dtype: 'f32' });
            G.matmul({ ...args, a: a.g.subarray(ao), b: b.g.subarray(1), out: out.g, dtype: 'f32' });
            t.check(`${batch}x${M}x${N}x${K} tA=${transA} tB=${transB}`, out, 1e-4, 1e-5);
          }
        }
      }
    },
  },
  {
    name: 'matmul with a bias (a Linear\'s, added in the epilogue; the portable backend fills out first)',
    run(t, P, G) {
      // batched, at offsets (the bias a view at element 5), f32 transposed and not, and a bf16 product
      for (const [batch, M, N, K, transA, transB] of [[2, 33, 40, 29, false, true], [1, 64, 128, 64, false, false], [3, 5, 7, 9, true, false]] as const) {
        const a = t.f32(batch * M * K + 3), b = t.f32(K * N + 1), bias = t.f32(N + 5);
        const out = t.out(batch * M * N, 'f32', t.rand(batch * M * N));
        const args = { batch, M, N, K, transA, transB, strideA: M * K, strideB: 0, alpha: 0.5, beta: 0 };
        P.matmul({ ...args, a: a.c.subarray(3), b: b.c.subarray(1), out: out.c, dtype: 'f32', bias: bias.c.subarray(5) });
        G.matmul({ ...args, a: a.g.subarray(3), b: b.g.subarray(1), out: out.g, dtype: 'f32', bias: bias.g.subarray(5) });
        t.check(`bias ${batch}x${M}x${N}x${K} tA=${transA} tB=${transB}`, out, 1e-4, 1e-5);
      }
      const M = 34, N = 70, K = 30;
      const toBits = (x: Float32Array): Uint16Array => { const o = new Uint16Array(x.length); P.cast(x, 'f32', o, 'bf16'); return o; };
      const a = t.in(toBits(t.rand(M * K)), 'bf16'), b = t.in(toBits(t.rand(K * N)), 'bf16'), bias = t.f32(N), out = t.out(M * N);
      const args = { batch: 1, M, N, K, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0 };
      P.matmul({ ...args, a: a.c, b: b.c, out: out.c, dtype: 'bf16', bias: bias.c });
      G.matmul({ ...args, a: a.g, b: b.g, out: out.g, dtype: 'bf16', bias: bias.g });
      t.check('bias bf16 34x70x30 tB', out, 1e-4, 1e-5);
    },
  },
  {
    name: 'matmul bf16 and f16 operands (f32 accumulation), matmulLowp bf16 and int8',
    run(t, P, G) {
      const toBits = (x: Float32Array, dt: 'bf16' | 'f16'): Uint16Array => { const o = new Uint16Array(x.length); P.cast(x, 'f32', o, dt); return o; };
      // odd K and M: element loads; even: loads of two elements per word. Every pipeline variant once (each costs a
      // shader compilation, seconds under SwiftShader): bf16 in every orientation with pairs, both dtypes with singles.
      const combos: [number[], 'bf16' | 'f16', boolean, boolean][] = [
        [[33, 40, 29], 'bf16', false, true], [[33, 40, 29], 'f16', true, false],
        [[34, 70, 30], 'bf16', false, true], [[34, 70, 30], 'bf16', true, false], [[34, 70, 30], 'bf16', false, false],
        [[34, 70, 30], 'bf16', true, true], [[34, 70, 30], 'f16', false, true],
      ];
      for (const [[M, N, K], dt, transA, transB] of combos) {
        const a32 = t.rand(M * K), b32 = t.rand(K * N);
        const a = t.in(toBits(a32, dt), dt), b = t.in(toBits(b32, dt), dt), out = t.out(M * N);
        const args = { batch: 1, M, N, K, transA, transB, strideA: 0, strideB: 0, alpha: 1, beta: 0 };
        // reference: the portable f32 product of the widened values (the portable matmul takes f32 and bf16 only)
        const aw = new Float32Array(M * K), bw = new Float32Array(K * N);
        P.cast(a.c, dt, aw, 'f32'); P.cast(b.c, dt, bw, 'f32');
        P.matmul({ ...args, a: aw, b: bw, out: out.c, dtype: 'f32' });
        G.matmul({ ...args, a: a.g, b: b.g, out: out.g, dtype: dt });
        t.check(`${dt} ${M}x${N}x${K} tA=${transA} tB=${transB}`, out, 1e-4, 1e-5);
      }
      const M = 33, N = 40, K = 29;
      const b32 = t.rand(K * N);
      const x = t.f32(M * K), wb = t.in(toBits(b32, 'bf16'), 'bf16'), o1 = t.out(M * N);
      const base = { batch: 1, M, N, K, transA: false, transB: false, strideA: 0, alpha: 1, beta: 0 };
      P.matmulLowp({ ...base, a: x.c, b: wb.c, out: o1.c, bDtype: 'bf16', scales: null });
      G.matmulLowp({ ...base, a: x.g, b: wb.g, out: o1.g, bDtype: 'bf16', scales: null });
      t.check('lowp bf16', o1, 1e-4, 1e-5);
      const w8 = t.in(Int8Array.from(t.int(N * K, 255), (v) => v - 127), 'i8'), sc = t.f32(N, 0.001, 0.02), o2 = t.out(M * N);
      const tb = { ...base, transB: true };
      P.matmulLowp({ ...tb, a: x.c, b: w8.c, out: o2.c, bDtype: 'i8', scales: sc.c });
      G.matmulLowp({ ...tb, a: x.g, b: w8.g, out: o2.g, bDtype: 'i8', scales: sc.g });
      t.check('lowp int8 with row scales', o2, 1e-4, 1e-5);
    },
  },
  ...([
    ['plain', { B: 2, H: 2, Hkv: 2, Tq: 9, Tk: 9, D: 16, Dv: 16, causal: false, mask: false, firstKey: null }],
    ['causal, grouped-query, key mask', { B: 2, H: 4, Hkv: 2, Tq: 7, Tk: 7, D: 8, Dv: 12, causal: true, mask: true, firstKey: null }],
    ['causal, Tq < Tk, 130 keys (two chunks of queries for dk/dv)', { B: 1, H: 2, Hkv: 1, Tq: 5, Tk: 130, D: 8, Dv: 8, causal: true, mask: false, firstKey: null }],
    ['2500 keys (three chunks of scores), key mask, Dv = 200', { B: 1, H: 1, Hkv: 1, Tq: 3, Tk: 2500, D: 4, Dv: 200, causal: false, mask: true, firstKey: null }],
    // packed rows: each query sees its document from its start (firstKey) up to itself; row 1 holds three documents,
    // row 0 two (a negative start reads as 0); with a key mask and grouped-query heads
    ['packed rows (firstKey), causal, grouped-query, key mask', { B: 2, H: 4, Hkv: 2, Tq: 11, Tk: 11, D: 8, Dv: 12, causal: true, mask: true,
      firstKey: [0, 0, 0, 0, 0, 0, -3, 6, 6, 6, 6, 0, 0, 0, 3, 3, 3, 3, 7, 7, 7, 7] }],
    // a first key in the second chunk of scores (1024 keys each), one at 0 and one past the last key (every key
    // hidden: a zero output and zero gradients)
    ['firstKey in the second chunk of 1100 keys, one query with every key hidden', { B: 1, H: 2, Hkv: 1, Tq: 3, Tk: 1100, D: 4, Dv: 8,
      causal: false, mask: false, firstKey: [1050, 0, 1100] }],
  ] as const).map(([label, c]): Case => ({
    name: `attention forward and backward (${label})`,
    run(t, P, G) {
      const { B, H, Hkv, Tq, Tk, D, Dv } = c;
      const s: AttentionShape = {
        B, H, Hkv, Tq, Tk, D, Dv, scale: 1 / Math.sqrt(D), causal: c.causal,
        qStrides: contiguous(B, H, Tq, D), kStrides: contiguous(B, Hkv, Tk, D), vStrides: contiguous(B, Hkv, Tk, Dv),
        // out as (B, T, H, Dv): the layout attention writes for the output projection
        outStrides: [Tq * H * Dv, Dv, H * Dv],
      };
      const q = t.f32(B * H * Tq * D), k = t.f32(B * Hkv * Tk * D), v = t.f32(B * Hkv * Tk * Dv);
      const km = new Float32Array(B * Tk);
      if (c.mask) { km[1] = 1; km[Tk + 2] = 1; km[Tk + 3] = 1; }
      const mask = c.mask ? t.in(km) : null;
      const fk = c.firstKey ? t.in(Int32Array.from(c.firstKey), 'i32') : null;
      const out = t.out(B * H * Tq * Dv), stats = t.out(B * H * Tq * 2);
      P.attention(s, q.c, k.c, v.c, mask?.c ?? null, fk?.c ?? null, out.c, stats.c);
      G.attention(s, q.g, k.g, v.g, mask?.g ?? null, fk?.g ?? null, out.g, stats.g);
      t.check('out', out, 1e-4, 1e-5);
      const dout = t.f32(B * H * Tq * Dv), dq = t.out(q.c.length), dk = t.out(k.c.length), dv = t.out(v.c.length);
      P.attentionBackward(s, q.c, k.c, v.c, mask?.c ?? null, fk?.c ?? null, stats.c, dout.c, s.outStrides, dq.c, dk.c, dv.c);
      G.attentionBackward(s, q.g, k.g, v.g, mask?.g ?? null, fk?.g ?? null, stats.g, dout.g, s.outStrides, dq.g, dk.g, dv.g);
      t.check('dq', dq, 1e-4, 1e-5);
      t.check('dk', dk, 1e-4, 1e-5);
      t.check('dv', dv, 1e-4, 1e-5);
      // dk and dv in one buffer (the tensor layer's fused qkv gradient): one writable binding for both
      const both = G.alloc('f32', k.c.length + v.c.length);
      G.attentionBackward(s, q.g, k.g, v.g, mask?.g ?? null, fk?.g ?? null, stats.g, dout.g, s.outStrides, dq.g, both.subarray(0, k.c.length),
        both.subarray(k.c.length));
      t.check('dk and dv in one buffer: dk', { c: dk.c, g: both.subarray(0, k.c.length), dtype: 'f32' }, 1e-4, 1e-5);
      t.check('dk and dv in one buffer: dv', { c: dv.c, g: both.subarray(k.c.length), dtype: 'f32' }, 1e-4, 1e-5);
    },
  })),
];
