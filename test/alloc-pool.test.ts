/**
 * The buffer pool (tensor/alloc.ts): dead buffers are reused by size whatever their dtype, a buffer enters it once,
 * and the copies that products and attention make under bf16 autocast go back to it without changing any result:
 * recycled (dirty) memory in a second identical step gives the same bits, and a graph kept for a second backward
 * pass keeps its copies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { ownsWholeBuffer, poolStats, poolStepBoundary, releaseBuffer, uninitF32, uninitU16 } from '../src/tensor/alloc.js';
import { releaseWithGraph } from '../src/tensor/autograd.js';
import { loraLinear } from '../src/tensor/ops/lora-linear.js';
import { fusedQKVAttention } from '../src/tensor/ops/nn.js';
import { releasable, releaseAfterRead, residualAdd, unaryForBf16Product } from '../src/tensor/ops/elementwise.js';
import { testBackends, withBackend } from './helpers/backends.js';
import { backend, getBackend } from '../src/backend/index.js';
import { addressAlignment } from '../src/backend/native.js';
import { requireNative } from './helpers/ci.js';
import { Block } from '../src/nn/transformer.js';
import { manualSeed } from '../src/nn/init.js';
import { maybeCheckpoint, runLayers } from '../src/nn/checkpoint.js';
import { blockWorkload } from '../src/bench/block.js';

test('pool: a dead buffer serves the next request of its byte size, of either dtype, and enters the pool once', () => {
  const n = 16384 + 37; // a size nothing else asks for
  const u = new Uint16Array(2 * n);
  releaseBuffer(u);
  releaseBuffer(u); // a second release of the same memory is a no-op
  releaseBuffer(new Uint16Array(u.buffer, 0, n)); // and so is a view of it
  const a = uninitF32(n);
  assert.equal(a.buffer, u.buffer, 'the u16 buffer serves an f32 request of the same bytes');
  const b = uninitF32(n);
  assert.notEqual(b.buffer, u.buffer, 'never handed out twice');
  // part of a buffer is never pooled
  const big = new Float32Array(3 * n);
  releaseBuffer(big.subarray(n, 2 * n));
  assert.notEqual(uninitF32(n).buffer, big.buffer);
  const h = uninitU16(2 * n);
  assert.notEqual(h.buffer, u.buffer);
});

test('pool: a request of a size the last step did not ask for takes the smallest free buffer of at least its size, up to twice it, which then counts as a whole buffer of the request\'s size', () => {
  poolStepBoundary(); poolStepBoundary(); // whatever earlier tests left: dropped
  uninitF32(16384 + 59); // a step that asks for another size ends
  poolStepBoundary();
  const n = 16384 + 53, big = uninitF32(3 * n), mid = uninitF32(n + 1000); // sizes nothing else asks for
  releaseBuffer(big);
  releaseBuffer(mid);
  poolStats(true);
  const a = uninitF32(n); // fits mid (and big): the smaller of the two
  assert.equal(a.buffer, mid.buffer);
  assert.equal(a.length, n);
  const t = new Tensor(a, 'f32', [n]);
  assert.ok(ownsWholeBuffer(t), 'the view over the whole request is the whole buffer for the library');
  assert.ok(!ownsWholeBuffer(new Tensor(a.subarray(0, n - 1), 'f32', [n - 1])), 'part of the request is not');
  const b = uninitF32(n);
  assert.notEqual(b.buffer, big.buffer, 'three times the request is more than the slack allows');
  releaseBuffer(a.subarray(1)); // a part: not pooled
  releaseBuffer(a); // the whole request: back under the buffer's own size
  const c = uninitF32(n + 900);
  assert.equal(c.buffer, mid.buffer, 'a larger request than before fits it now');
  assert.equal(poolStats().hits, 2);
  const d = uninitF32(3 * n);
  assert.equal(d.buffer, big.buffer, 'an exact size still fits');
  for (const x of [b, c, d]) releaseBuffer(x);
  poolStepBoundary(); // the step that asked for n ends: the next one is of the same shapes, and lends nothing
  const e = uninitF32(n);
  assert.equal(e.buffer, b.buffer, 'its own size');
  const f = uninitF32(n);
  assert.ok(![mid.buffer, big.buffer].includes(f.buffer), 'another of the same size: fresh, not lent');
});

test('pool: a step boundary keeps the buffers the ended step drew on and drops those that waited unused', () => {
  poolStepBoundary(); poolStepBoundary(); // whatever earlier tests left: unused for a whole period, dropped
  assert.equal(poolStats().buffers, 0, 'an idle period empties the pool');
  const n = 16384 + 41, m = 16384 + 43; // sizes nothing else asks for
  const steady = [uninitF32(n), uninitF32(n), uninitF32(n)];
  const oneOff = uninitF32(m); // an evaluation batch's shape, say
  for (const b of [...steady, oneOff]) releaseBuffer(b);
  poolStepBoundary(); // handed back during the step that ends here: all kept for the next one
  assert.equal(poolStats().buffers, 4);
  // a steady step takes two of the three buffers of its size at once (its peak demand), then hands them back
  const a = uninitF32(n), b = uninitF32(n);
  assert.ok(steady.some((x) => x.buffer === a.buffer) && steady.some((x) => x.buffer === b.buffer));
  releaseBuffer(a); releaseBuffer(b);
  poolStats(true);
  poolStepBoundary(); // the third buffer of n and the one of m waited a whole step unused
  const st = poolStats();
  assert.equal(st.dropped, 2, 'the surplus of n and the one-off size are dropped');
  assert.equal(st.buffers, 2, 'the two that the step drew on are kept');
  assert.equal(st.bytes, 2 * 4 * n);
  assert.notEqual(uninitF32(m).buffer, oneOff.buffer, 'a dropped buffer is never handed out again');
  // the next step draws on both: nothing dropped, the same memory again
  const c = uninitF32(n), d = uninitF32(n);
  assert.deepEqual(new Set([c.buffer, d.buffer]), new Set([a.buffer, b.buffer]));
  releaseBuffer(c); releaseBuffer(d);
  poolStats(true);
  poolStepBoundary();
  assert.equal(poolStats().dropped, 0);
  poolStepBoundary(); poolStepBoundary(); // idle: empty again
  assert.equal(poolStats().buffers, 0);
});

test('pool: a training loop reuses as much as before the boundary drops, and an evaluation\'s buffers serve it or go after one step', () => {
  const m = model(730);
  const step = () => { m.zero(); m.forward().backward(); }; // the backward pass ends with a step boundary
  step(); step();
  poolStats(true);
  step();
  const steady = poolStats(true);
  assert.ok(steady.hits > 0, 'a steady step reuses pooled buffers');
  assert.equal(steady.dropped, 0, 'a steady step uses every buffer it keeps');
  // an evaluation at another batch size leaves buffers of its own sizes; the next steps draw on those that fit
  // their requests (best fit) and drop the rest (sizes no training step uses, whether the copies are bf16 or,
  // without bf16 products, bf16-rounded f32)
  const x = T.randn([3, 97, 128], 731);
  T.noGrad(() => T.autocast('bf16', () => T.linear(x, T.randn([389, 128], 732), null)));
  assert.ok(poolStats().released > 0, 'the evaluation handed its copies back');
  step(); step();
  poolStats(true);
  step();
  const again = poolStats(true);
  assert.equal(again.hits, steady.hits, 'steady steps reuse as much as before');
  assert.equal(again.misses, steady.misses, 'and make as many fresh buffers');
  assert.equal(again.dropped, 0);
  assert.ok(again.bytes <= 2 * steady.bytes, `the pool holds at most twice what it held before the evaluation (${again.bytes} / ${steady.bytes})`);
});

/** A small model that runs every op that hands copies back: linear, matmul, addLinear, loraLinear, fused attention. */
function model(seed: number) {
  const p = {
    x: T.randn([4, 64, 128], seed),
    wqkv: T.randn([384, 128], seed + 1).scale(0.05).requireGrad(),
    wo: T.randn([128, 128], seed + 2).scale(0.05).requireGrad(),
    base: T.randn([256, 128], seed + 3).scale(0.05), // frozen
    A: T.randn([8, 128], seed + 4).scale(0.05).requireGrad(),
    B: T.randn([256, 8], seed + 5).scale(0.05).requireGrad(),
    w2: T.randn([128, 256], seed + 6).scale(0.05).requireGrad(),
    m: T.randn([128, 128], seed + 7).scale(0.05).requireGrad(),
  };
  const forward = (): Tensor => {
    const qkv = T.linear(p.x, p.wqkv, null);
    const att = fusedQKVAttention(qkv, 2, { causal: true });
    const h = T.addLinear(att, att, p.wo, 0.5); // att + 0.5 * att wo^T
    const u = loraLinear(h, p.base, null, p.A, p.B, 2);
    const v = T.linear(u.gelu(), p.w2, null);
    return T.matmul(v, p.m).square().mean();
  };
  const params = [p.wqkv, p.wo, p.A, p.B, p.w2, p.m];
  const grads = () => params.map((t) => Array.from((t.grad as Tensor).f32()));
  const zero = () => { for (const t of params) t.grad = null; };
  return { forward, grads, zero };
}

for (const b of testBackends()) {
  test(`pool: bf16 steps through recycled copies are bit-identical; retainGraph keeps them (${b.name})`, () => withBackend(b, () => {
    const m = model(700);
    const step = () => {
      m.zero();
      const loss = T.autocast('bf16', m.forward);
      loss.backward();
      return [loss.item(), ...m.grads().flat()];
    };
    const before = poolStats(true);
    const first = step();
    const released = poolStats().released - before.released;
    assert.ok(released > 0, `the step's bf16 copies and dead gradients went back to the pool (${released})`);
    poolStats(true);
    const second = step(); // its buffers come from the pool, holding the first step's values
    assert.ok(poolStats().hits > 0, 'the second step reused pooled memory');
    assert.deepEqual(second, first, 'recycled memory changed a result');
    // a graph kept for a second pass must keep its copies: twice the gradients, exactly
    m.zero();
    const loss = T.autocast('bf16', m.forward);
    loss.backward({ retainGraph: true });
    const once = m.grads();
    // fill the pool with NaN buffers of the copies' sizes: a copy wrongly handed back would be overwritten with them
    for (const n of [32768, 65536, 98304, 131072]) releaseBuffer(new Float32Array(n).fill(Number.NaN));
    for (let i = 0; i < 4; i++) T.noGrad(() => T.autocast('bf16', m.forward)); // takes (and returns) pooled buffers
    loss.backward();
    const twice = m.grads();
    once.forEach((g, i) => assert.deepEqual(twice[i], g.map((v) => 2 * v), `parameter ${i}`));
  }));

  test(`pool: a product without a graph hands its bf16 copies back at once (${b.name})`, () => withBackend(b, () => {
    const x = T.randn([256, 128], 710), w = T.randn([256, 128], 711).requireGrad();
    poolStats(true);
    const y = T.noGrad(() => T.autocast('bf16', () => T.linear(x, w, null)));
    assert.equal(poolStats().released, 2, 'the casts of x and w (64 KiB each)');
    const y2 = T.noGrad(() => T.autocast('bf16', () => T.linear(x, w, null)));
    assert.deepEqual(Array.from(y2.f32()), Array.from(y.f32()));
  }));
}

for (const b of testBackends()) {
  test(`residualAdd: the sum takes the sublayer output's buffer only where nothing reads it, same bits as add (${b.name})`, () => withBackend(b, () => {
    const run = (inPlace: boolean) => {
      const x = T.randn([2, 8, 16], 720).requireGrad(), w = T.randn([16, 16], 721).requireGrad(), v = T.randn([2, 8, 16], 722);
      const sub = T.linear(x, w, null);
      const y = inPlace ? residualAdd(x, sub) : T.add(x, sub);
      if (inPlace) assert.equal(y.storage, sub.storage, 'a linear output is taken over');
      y.mul(v).sum().backward();
      return [...y.f32(), ...(x.grad as Tensor).f32(), ...(w.grad as Tensor).f32()];
    };
    assert.deepEqual(run(true), run(false));
    // not taken: a leaf, an op whose backward reads its output (exp), another shape (broadcast), no graph
    const x = T.randn([4, 16], 723).requireGrad();
    const leaf = T.randn([4, 16], 724).requireGrad();
    const e = x.exp();
    const row = T.linear(T.randn([1, 16], 725), T.randn([16, 16], 726).requireGrad(), null);
    const plain = T.linear(x.detach(), T.randn([16, 16], 727), null);
    for (const y of [leaf, e, row, plain]) {
      const before = Array.from(y.f32());
      const s = residualAdd(x, y);
      assert.notEqual(s.storage, y.storage);
      assert.deepEqual(Array.from(y.f32()), before, 'left as it was');
      assert.deepEqual(Array.from(s.f32()), Array.from(T.add(x, y).f32()));
    }
  }));
}

for (const b of testBackends()) {
  test(`activation with consume: the gradient is written over its input on the last pass only, same bits (${b.name})`, () => withBackend(b, () => {
    for (const compute of ['f32', 'bf16'] as const) {
      const run = (consume: boolean, retain: boolean) => {
        const x = T.randn([64, 256], 730).requireGrad(), w = T.randn([256, 256], 731).scale(0.1).requireGrad();
        const v = T.randn([64, 256], 732);
        let h!: Tensor;
        const loss = T.autocast(compute, () => {
          h = T.linear(x, w, null);
          const a = compute === 'bf16' ? unaryForBf16Product('gelu', h, { consume }) : T.unary('gelu', h, { consume });
          return T.linear(a, w, null).mul(v).sum();
        });
        const hBefore = Array.from(h.f32());
        if (retain) loss.backward({ retainGraph: true });
        loss.backward();
        const hAfter = Array.from(h.f32());
        return { grads: [...(x.grad as Tensor).f32(), ...(w.grad as Tensor).f32()], kept: hAfter.every((u, i) => Object.is(u, hBefore[i])) };
      };
      const ref = run(false, false), con = run(true, false);
      assert.deepEqual(con.grads, ref.grads, `${compute}: same gradients`);
      assert.ok(ref.kept, `${compute}: without consume the input is left alone`);
      if (compute === 'bf16' && backend().unaryBf16Grad) {
        // the backward pass keeps f'(h) in bf16, not h: h's buffer goes back to the pool in the forward pass
        const h = T.linear(T.randn([64, 256], 733).requireGrad(), T.randn([256, 256], 734), null);
        poolStats(true);
        const a = T.autocast('bf16', () => unaryForBf16Product('gelu', h, { consume: true }));
        assert.equal(a.dtype, 'bf16');
        assert.equal(poolStats().released, 1, 'bf16: with consume the input went back to the pool at once');
      } else {
        assert.ok(!con.kept, `${compute}: with consume the last pass wrote the gradient over the input`);
      }
      const twice = run(true, true), twiceRef = run(false, true);
      assert.deepEqual(twice.grads, twiceRef.grads, `${compute}: a retained graph keeps the input for its second pass`);
    }
  }));
}

for (const b of testBackends()) {
  test(`fused qkv attention with consume: qkv's buffer goes back once read for the last time, same bits (${b.name})`, () => withBackend(b, () => {
    // T = 32 runs the f32 kernel (qkv read in the backward pass), T = 64 under bf16 the bf16 one (read in the forward pass)
    for (const [Tn, compute] of [[32, 'f32'], [32, 'bf16'], [64, 'bf16']] as const) {
      const run = (consume: boolean, retain: boolean) => {
        const x = T.randn([2, Tn, 128], 740).requireGrad(), w = T.randn([384, 128], 741).scale(0.05).requireGrad();
        const v = T.randn([2, Tn, 128], 742);
        const loss = T.autocast(compute, () => fusedQKVAttention(T.linear(x, w, null), 4, { causal: true, consume }).mul(v).sum());
        // pooled buffers of qkv's size, dirtied: a qkv buffer handed back too early would be overwritten with NaN
        const dirty = [0, 1, 2].map(() => uninitF32(2 * Tn * 384).fill(Number.NaN));
        for (const d of dirty) releaseBuffer(d);
        if (retain) loss.backward({ retainGraph: true });
        loss.backward();
        return [...(x.grad as Tensor).f32(), ...(w.grad as Tensor).f32()];
      };
      assert.deepEqual(run(true, false), run(false, false), `T ${Tn} ${compute}`);
      assert.deepEqual(run(true, true), run(false, true), `T ${Tn} ${compute}, graph retained`);
    }
  }));
}

test('releasable: through views to a producer whose backward never reads its output, alone in its buffer', () => {
  const x = T.randn([2, 16, 96], 740).requireGrad(), w = T.randn([96, 96], 741).requireGrad();
  const qkv = T.linear(x, T.randn([288, 96], 742).requireGrad(), null);
  assert.ok(releasable(fusedQKVAttention(qkv, 2)), 'merged heads: reshape / permute views of the attention output');
  assert.ok(releasable(T.linear(x, w, null).gelu()), 'an activation that keeps its input');
  assert.ok(releasable(T.linear(x, w, null)), 'a product');
  assert.ok(!releasable(x), 'a leaf');
  assert.ok(!releasable(T.layerNorm(x, null, null)), 'a norm (its backward may read its output)');
  assert.ok(!releasable(T.linear(x, w, null).exp()), 'exp (its backward reads its output)');
  assert.ok(!releasable(T.slice(T.linear(x, w, null), 2, 0, 48)), 'part of a buffer');
  assert.ok(!releasable(T.noGrad(() => T.linear(x, w, null))), 'no graph: who made it is unknown');
});

for (const b of testBackends()) {
  test(`consume: linear and loraLinear hand x's buffer to the pool once read for the last time, same bits (${b.name})`, () => withBackend(b, () => {
    for (const compute of ['f32', 'bf16'] as const) {
      for (const kind of ['linear', 'linear-frozen', 'lora'] as const) {
        const run = (consume: boolean, retain: boolean) => {
          const released = poolStats().released;
          const x = T.randn([8, 40, 96], 750).requireGrad(), w1 = T.randn([130, 96], 751).scale(0.1).requireGrad();
          const w2 = T.randn([96, 130], 752).scale(0.1).requireGrad(kind === 'linear');
          const A = T.randn([8, 130], 753).scale(0.1).requireGrad(), B = T.randn([96, 8], 754).scale(0.1).requireGrad();
          let a!: Tensor;
          const loss = T.autocast(compute, () => {
            a = unaryForBf16Product('gelu', T.linear(x, w1, null)); // (8, 40, 130): a size nothing else has
            const y = kind === 'lora' ? loraLinear(a, w2, null, A, B, 2, a, { consume }) : T.linear(a, w2, null, { consume });
            return y.square().mean();
          });
          if (retain) loss.backward({ retainGraph: true });
          loss.backward();
          // a's buffer went back (and may serve a later request at once: best fit) where it was consumed
          const mark = poolStats().released - released;
          const grads = [x, w1, ...(kind === 'linear' ? [w2] : []), ...(kind === 'lora' ? [A, B] : [])].map((t) => Array.from((t.grad as Tensor).f32()));
          return { grads, loss: loss.item(), released: mark };
        };
        const tag = `${compute} ${kind}`;
        const plain = run(false, false), own = run(true, false), kept = run(true, true);
        assert.equal(own.released, plain.released + 1, `${tag}: with consume the activation goes back to the pool, without it not`);
        assert.equal(own.loss, plain.loss, tag);
        assert.deepEqual(own.grads, plain.grads, `${tag}: the same gradients`);
        assert.deepEqual(kept.grads, plain.grads.map((g) => g.map((v) => 2 * v)), `${tag}: a retained graph keeps x for its second pass`);
      }
    }
  }));
}

test('releaseAfterRead: the stream between two sublayers goes back in the forward pass where no reader keeps it; same bits', () => {
  const D = 128, shape = [6, 44, D]; // (6, 44, 128): a size nothing else has
  const run = (release: boolean, gammaOf: () => Tensor) => {
    const x = T.randn(shape, 770).requireGrad(), w = T.randn([D, D], 771).scale(0.1).requireGrad();
    const v = T.randn([D, D], 772).scale(0.1).requireGrad();
    const gamma = gammaOf().requireGrad(), beta = T.randn([D], 774).scale(0.1).requireGrad();
    const h = residualAdd(x, T.linear(x, w, null));
    const n = T.layerNorm(h, gamma, beta);
    const out = residualAdd(h, T.linear(n, v, null));
    let did = false;
    if (release) {
      did = releaseAfterRead(h, [n, out]);
      // the next request of its size gets h's buffer, and writes over it
      const got = uninitF32(h.size);
      if (did) assert.ok(got.buffer === h.storage.buffer, 'h was the pooled buffer handed out next');
      got.fill(Number.NaN);
    }
    out.square().mean().backward();
    return { did, grads: [x, w, v, gamma, beta].map((t) => Array.from((t.grad as Tensor).f32())) };
  };
  const ones = () => T.randn([D], 773).scale(0.1).add(1); // an invertible gamma: the norm keeps its output
  const plain = run(false, ones), rel = run(true, ones);
  assert.equal(rel.did, true, 'released: the norm keeps its output, the sum nothing');
  assert.deepEqual(rel.grads, plain.grads, 'the same gradients bit for bit');
  // a gamma with a zero: the norm keeps its input for the backward pass, so h stays
  const zero = () => { const g = T.randn([D], 775).add(1).f32().slice(); g[3] = 0; return T.tensor(g); };
  const kept = run(true, zero), keptPlain = run(false, zero);
  assert.equal(kept.did, false, 'the norm holds h');
  assert.deepEqual(kept.grads, keptPlain.grads);
  // a reader that keeps its input (a Linear whose weight learns reads h again for its gradient): h stays
  const x = T.randn(shape, 776).requireGrad(), w = T.randn([D, D], 777).requireGrad();
  const h = residualAdd(x, T.linear(x, w, null));
  assert.equal(releaseAfterRead(h, [T.linear(h, w, null)]), false);
  // no graph: nothing can read it again
  const hn = T.noGrad(() => T.randn(shape, 778).add(T.randn(shape, 779)));
  assert.equal(releaseAfterRead(hn, [T.noGrad(() => T.layerNorm(hn, null, null))]), true);
  // already marked to go back with the graph: not handed back a second time
  const hw = residualAdd(x, T.linear(x, w, null));
  releaseWithGraph(hw);
  assert.equal(releaseAfterRead(hw, []), false);
  // made by an op whose backward pass reads its output (exp): kept
  const e = T.randn(shape, 780).requireGrad().exp();
  assert.equal(releaseAfterRead(e, []), false, 'exp reads its output in backward');
});

test('releaseWithGraph: the buffer goes back at the end of the pass that frees its maker, not on a retained pass; same bits', () => {
  const run = (release: boolean, retain: boolean) => {
    const x = T.randn([6, 44, 128], 760).requireGrad(), w = T.randn([128, 128], 761).scale(0.1).requireGrad();
    const v = T.randn([128, 128], 762).scale(0.1).requireGrad();
    const h = residualAdd(x, T.linear(x, w, null)); // (6, 44, 128): a size nothing else has
    if (release) releaseWithGraph(h);
    const out = residualAdd(h, T.linear(T.layerNorm(h, null, null), v, null));
    const loss = out.square().mean();
    const hb = h.storage.buffer;
    const inPool = () => {
      const got = Array.from({ length: 6 }, () => uninitF32(h.size));
      const found = got.some((g) => g.buffer === hb);
      for (const g of got) if (g.buffer !== hb) releaseBuffer(g);
      return found;
    };
    let afterRetained = false;
    if (retain) { loss.backward({ retainGraph: true }); afterRetained = inPool(); }
    loss.backward();
    return { afterRetained, afterLast: inPool(), grads: [x, w, v].map((t) => Array.from((t.grad as Tensor).f32())) };
  };
  const plain = run(false, false), own = run(true, false), kept = run(true, true), plainKept = run(false, true);
  assert.equal(plain.afterLast, false);
  assert.equal(own.afterLast, true, 'released once the graph is freed');
  assert.equal(kept.afterRetained, false, 'kept through a retained pass');
  assert.equal(kept.afterLast, true);
  assert.deepEqual(own.grads, plain.grads);
  assert.deepEqual(kept.grads, plainKept.grads, 'two passes, the second after the retained one');
  // no graph: nothing to do
  const y = T.noGrad(() => T.linear(T.randn([4, 128], 763), T.randn([128, 128], 764), null));
  releaseWithGraph(y);
});

for (const b of testBackends()) {
  test(`ownGy: activations that write their gradient over gy give the bits of a retained graph's pass, gy shared or not (${b.name})`, () => withBackend(b, () => {
    for (const compute of ['f32', 'bf16'] as const) {
      const run = (retain: boolean) => {
        const x = T.randn([64, 256], 740).requireGrad(), w = T.randn([256, 256], 741).scale(0.1).requireGrad();
        const v = T.randn([64, 256], 742);
        const loss = T.autocast(compute, () => {
          const h1 = T.linear(x, w, null), h2 = T.linear(x.mul(0.5), w, null);
          // one gy (add's) reaches both activations; the second to run finds it its alone
          const a = T.unary('gelu', h1).add(T.unary('silu', h2));
          const c = compute === 'bf16' ? unaryForBf16Product('gelu', T.linear(a, w, null)) : T.unary('gelu', T.linear(a, w, null));
          return T.linear(c, w, null).mul(v).sum();
        });
        loss.backward(retain ? { retainGraph: true } : {});
        return [...(x.grad as Tensor).f32(), ...(w.grad as Tensor).f32()];
      };
      assert.deepEqual(run(false), run(true), `${compute}: the same gradients with the graph freed as retained`);
    }
  }));
}

test('runLayers: the residual stream between layers goes back to the pool once the graph is freed, checkpointed or not; same bits', () => {
  for (const ckpt of [false, true]) {
    const run = (stack: boolean) => {
      manualSeed(7);
      const layers = [0, 1, 2].map(() => new Block({ dim: 64, heads: 2, mlpDim: 128, causal: true }));
      const x = T.randn([3, 97, 64], 770).requireGrad(); // (3, 97, 64): a size nothing else has, over the pool's 64 KiB
      const outs: Tensor[] = [];
      const fn = (l: Block, h: Tensor) => { const y = l.forward(h); outs.push(y); return y; };
      let y = x;
      if (stack) y = runLayers(layers, ckpt, fn, x);
      else for (const l of layers) y = maybeCheckpoint(ckpt, l, (h) => fn(l, h), y);
      const between = outs.slice(0, -1).map((t) => t.storage.buffer);
      y.square().mean().backward();
      const got = Array.from({ length: 8 }, () => uninitF32(x.size));
      const back = between.filter((b) => got.some((g) => g.buffer === b)).length;
      for (const g of got) releaseBuffer(g);
      const grads = [x, ...layers.flatMap((l) => l.parameters())].map((t) => Array.from((t.grad as Tensor).f32()));
      return { back, last: outs[outs.length - 1].storage.buffer, grads, y: Array.from(y.f32()) };
    };
    const plain = run(false), stacked = run(true);
    assert.equal(plain.back, 0, `checkpointing ${ckpt}: a plain loop leaves them to the collector`);
    assert.equal(stacked.back, 2, `checkpointing ${ckpt}: both streams between the three layers are back`);
    assert.deepEqual(stacked.y, plain.y);
    assert.deepEqual(stacked.grads, plain.grads);
  }
});

test('native: fresh tensor buffers are cache-line aligned and freed as soon as the collector finds them dead', { skip: requireNative() }, () => {
  withBackend(getBackend('native'), () => {
    poolStepBoundary(); poolStepBoundary(); // the pool emptied, so the requests are fresh (not pooled) buffers
    for (const n of [16384 + 101, 250_001, 3_000_017]) {
      const f = uninitF32(n), h = uninitU16(2 * n + 6);
      assert.ok(addressAlignment(f) >= 64, `f32 buffer of ${n}: ${addressAlignment(f)}-byte aligned`);
      assert.ok(addressAlignment(h) >= 64, `u16 buffer of ${2 * n + 6}: ${addressAlignment(h)}-byte aligned`);
      f.fill(1.5);
      assert.equal(f[n - 1], 1.5);
      assert.equal(f.byteOffset, 0);
      assert.equal(f.buffer.byteLength, n * 4);
    }
    assert.throws(() => (backend() as unknown as { freshBuffer(b: number): ArrayBuffer }).freshBuffer(-1), /allocAligned: byte length/);
    // 3 GB in 48 MB buffers in one synchronous loop (no turn of the event loop, as in a training step): the memory
    // comes back as the collector frees each buffer, not later (an N-API finalizer would wait for the event loop)
    const rss0 = process.memoryUsage().rss;
    let sum = 0;
    for (let i = 0; i < 64; i++) {
      const x = uninitF32(12_000_000 + 7);
      x[0] = i;
      x[x.length - 1] = 1;
      sum += x[0] + x[x.length - 1];
    }
    assert.equal(sum, 64 * 63 / 2 + 64);
    const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
    assert.ok(grown < 1024, `RSS grew ${grown.toFixed(0)} MB over 3 GB of dead buffers`);
  });
});

for (const b of testBackends()) {
  test(`pool: a norm whose input takes no gradient hands that gradient's buffer back; a steady block step takes no fresh buffer (${b.name})`, () => withBackend(b, () => {
    for (const norm of ['layerNorm', 'rmsNorm'] as const) {
      const x = T.randn([64, 256], 740); // 64 KiB: pooled
      const g = T.randn([256], 741).scale(0.1).add(1).requireGrad();
      const y = norm === 'layerNorm' ? T.layerNorm(x, g, null, 1e-5) : T.rmsNorm(x, g, 1e-5);
      const before = poolStats().released;
      y.square().sum().backward();
      assert.ok(poolStats().released > before, `${norm}: the input's unneeded gradient went back to the pool`);
      assert.equal(x.grad, null);
      assert.ok(g.grad, `${norm}: gamma has its gradient`);
    }
    for (const compute of ['f32', 'bf16'] as const) {
      const w = blockWorkload(1e-3, { batch: 2 });
      for (let i = 0; i < 3; i++) w.step(compute);
      poolStats(true);
      w.step(compute);
      assert.equal(poolStats().misses, 0, `${compute}: every buffer of a steady block step comes from the pool`);
    }
  }));
}
