/**
 * LoRA's layer product in one op: y = x W^T + b + scaling * (xa A^T) B^T, with xa = x or dropout(x).
 *
 * The same products as the composition (a Linear, lora_A, then `addLinear`), in the same order. What it saves is
 * casts under autocast: the composition cast x twice (the base product and lora_A) and the output gradient three
 * times (the base product's two gradients, addLinear's two and, through it, lora_A's), each a full pass over an
 * activation; here x is cast once (when xa is x) and the gradient once. Only the rank-r intermediate and its
 * gradient (rows x r) are cast besides. What the backward pass keeps is what the composition kept.
 *
 * Where bf16 products run in hardware (`nativeBf16`) and the base weight is frozen, the rank-r factors ride along
 * the base product as r more columns of its reduction (`appended`): y = [x | s h] [W | B]^T and dx = [g | dh] [W; A].
 * The composition's second product over the whole output (and, backward, over the whole input gradient), each a
 * read and a write of an f32 activation for a rank-8 update, is gone; what is added is r of nIn + r columns to the
 * base product and a copy of the bf16 weight with the factor beside it (nOut x (nIn + r)).
 *
 * Up to rank 16 (`loraRowsMaxRank`) the rank-r products themselves are made in the pass that writes those bf16 rows
 * (the backend's `loraRows`): s h = s x A^T beside x's copy forward; dh = s g B beside g's copy, and B's gradient
 * g^T (s h), backward; A's gradient dh^T x is one pass over x's copy (`loraOuter`). As products of their own these are
 * skinny (one side r wide), and the library kernels run them far under memory bandwidth. An x that is bf16 already
 * (GELU's output under autocast) is copied into the wider rows in that pass.
 *
 * The two wider copies of the frozen weight ([W | B | 0] forward, [W; A; 0] backward) are kept per weight from one step
 * to the next (`wideCopy`): W's part is written when they are made, again after W's storage is written (versions.ts
 * drops them), the factor's r columns or rows at every use, where W was copied whole into fresh buffers twice a step.
 */
import { ShapeError, fmtShape } from '../../errors.js';
import { backend } from '../../backend/index.js';
import { releaseBuffer, uninitF32, uninitU16 } from '../alloc.js';
import { Tensor } from '../tensor.js';
import { isGradEnabled, record } from '../autograd.js';
import { autocastDType } from '../precision.js';
import { castCacheChecked, derivedOf, verifyCopy } from '../versions.js';
import { reshape } from './movement.js';
import { affine, biasGrad, gemm, gemmToBf16, prepare, releaseOperands, takeConsumed, toBf16, toBf16Able, transposed, checkFloat, type LinearOptions, type Operand } from './linalg.js';

export function loraLinear(x: Tensor, W: Tensor, b: Tensor | null, A: Tensor, B: Tensor, scaling: number, xa: Tensor = x,
  opts: LinearOptions = {}): Tensor {
  checkFloat(x, 'loraLinear', 'x');
  checkFloat(W, 'loraLinear', 'weight');
  const [nOut, nIn] = W.shape, r = A.shape[0];
  const bad = (arg: string, t: Tensor, want: string) => new ShapeError(`Argument '${arg}' passed to 'loraLinear' has shape ${fmtShape(t.shape)}; expected ${want}`);
  if (W.ndim !== 2) throw bad('weight', W, '[out, in]');
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== nIn) throw bad('x', x, `[.., ${nIn}]`);
  if (xa !== x && (xa.size !== x.size || xa.shape[xa.ndim - 1] !== nIn)) throw bad('xa', xa, fmtShape(x.shape));
  if (b && (b.ndim !== 1 || b.shape[0] !== nOut)) throw bad('bias', b, `[${nOut}]`);
  if (A.ndim !== 2 || A.shape[1] !== nIn) throw bad('A', A, `[r, ${nIn}]`);
  if (B.ndim !== 2 || B.shape[0] !== nOut || B.shape[1] !== r) throw bad('B', B, `[${nOut}, ${r}]`);
  const compute = autocastDType();
  const rows = x.size / nIn;
  const flat = (t: Tensor) => (t.ndim === 2 ? t : reshape(t, [rows, nIn]));
  const sep = xa !== x;
  const ow = prepare(W, 1, compute), oA = prepare(A, 1, compute), oB = prepare(B, 1, compute);
  const fused = appendable(compute, sep, W, ow, oA, oB);
  let ox: Operand, oxa: Operand, oh: Operand, hScale: number, out: Float32Array | Uint16Array;
  const be = backend();
  const inPass = fused && rowKernel(r); // s h made in the pass that casts x (loraRows), not by a product of its own
  if (fused && x.isContiguous && (x.dtype === 'f32' || (x.dtype === 'bf16' && inPass))) {
    // x's bf16 copy with r columns beside it holding s h = s x A^T (and zeros to a whole cache line, where loraRows writes it)
    const L = inPass ? paddedWidth(nIn + r) : nIn + r;
    const xc = uninitU16(rows * L);
    ox = oxa = { buf: xc, dtype: 'bf16', rows, cols: L, trans: false, batchStride: rows * L, fresh: true };
    let hb: Uint16Array;
    if (inPass) {
      hb = uninitU16(rows * r);
      be.loraRows!(x.dense() as Float32Array | Uint16Array, rows, nIn, xc, oA.buf as Uint16Array, r, scaling, hb, null, null, L);
    } else {
      be.castRowsBf16!(x.f32(), rows, nIn, xc, L);
      const h = gemm(ox, transposed(withZeroColumns(oA, L)), 1, uninitF32(rows * r), scaling); // A padded with zero columns
      hb = toBf16(h);
      releaseBuffer(h);
      be.stridedCopy(hb, [rows, r], [r, 1], xc.subarray(nIn), [L, 1]);
    }
    oh = { buf: hb, dtype: 'bf16', rows, cols: r, trans: false, batchStride: rows * r, fresh: true };
    hScale = 1;
    const wb = sideBySide(W, ow, oB, L); // [W | B | 0], (nOut, L): kept for the next step where W is a parameter
    // [x | s h] [W | B]^T + b, in bf16 where the caller's readers take it (LinearOptions.bf16Output)
    out = opts.bf16Output && toBf16Able(ox, wb) ? gemmToBf16(ox, transposed(wb), 1, 1, b ? b.f32() : null) : affine(ox, wb, b, rows, nOut);
    if (wb.fresh) releaseBuffer(wb.buf as Uint16Array);
    takeConsumed(x, ox, opts); // the products read x's copy
  } else {
    ox = prepare(flat(x), 1, compute);
    oxa = sep ? prepare(flat(xa), 1, compute) : ox;
    out = affine(ox, ow, b, rows, nOut); // x W^T + b
    const h = gemm(oxa, transposed(oA), 1, uninitF32(rows * r)); // (rows, r)
    oh = prepare(new Tensor(h, 'f32', [rows, r]), 1, compute);
    if (oh.fresh) releaseBuffer(h); // h was read only by its cast
    hScale = scaling;
    gemm(oh, transposed(oB), 1, out, scaling, 1); // += scaling * h B^T
    if (!sep) takeConsumed(x, ox, opts);
  }
  const y = new Tensor(out, out instanceof Uint16Array ? 'bf16' : 'f32', [...x.shape.slice(0, -1), nOut]);
  const inputs = [x, ...(sep ? [xa] : []), W, ...(b ? [b] : []), A, B];
  const all = [ox, oxa, ow, oA, oB, oh];
  if (!isGradEnabled() || !inputs.some((t) => t.requiresGrad)) {
    releaseOperands(all);
    return y;
  }
  const needGx = x.requiresGrad, needGxa = xa.requiresGrad, needGw = W.requiresGrad, needGb = !!b && b.requiresGrad;
  const needGA = A.requiresGrad, needGB = B.requiresGrad, needGh = needGA || needGxa;
  // kept for the backward pass: only what some gradient reads; the other copies go back to the pool now
  const keep = { ox: needGw ? ox : null, oxa: needGA ? oxa : null, ow: needGx ? ow : null, oA: needGxa ? oA : null, oB: needGh ? oB : null, oh: needGB ? oh : null };
  const kept = [keep.ox, keep.oxa, keep.ow, keep.oA, keep.oB, keep.oh];
  releaseOperands(all, kept);
  const xShape = [...x.shape];
  const xBf16 = x.dtype === 'bf16' && compute === 'bf16'; // x's gradient in bf16 where the product writes it (see linear)
  // the output gradient with dh beside it when x's gradient takes both paths in one product
  const appendGrad = fused && !!keep.ow && !!keep.oA && !!keep.oB;
  return record('loraLinear', inputs, y, (gy, last) => {
    const gb = needGb ? biasGrad(gy, rows, nOut) : null;
    const g2 = reshape(gy, [rows, nOut]);
    const M = appendGrad && rowKernel(r) ? paddedWidth(nOut + r) : nOut + r;
    let g: Operand;
    // made in the pass that casts g (loraRows): dh = s g B beside g, and B's gradient g^T (s h)
    let ogh: Operand | null = null, gBIn: Float32Array | null = null;
    // a bf16 gradient (of a bf16 output) is copied into the wider rows by loraRows as an f32 one is cast
    if (appendGrad && g2.isContiguous && (g2.dtype === 'f32' || (g2.dtype === 'bf16' && rowKernel(r)))) {
      const gc = uninitU16(rows * M);
      g = { buf: gc, dtype: 'bf16', rows, cols: M, trans: false, batchStride: rows * M, fresh: true };
      if (rowKernel(r)) {
        const dhb = uninitU16(rows * r), Bt = transposedBf16(keep.oB!);
        const H = keep.oh && keep.oh.dtype === 'bf16' ? keep.oh : null;
        gBIn = H ? uninitF32(nOut * r) : null;
        be.loraRows!(g2.dense() as Float32Array | Uint16Array, rows, nOut, gc, Bt, r, scaling, dhb, H ? (H.buf as Uint16Array) : null, gBIn, M);
        if (gBIn && hScale !== 1) be.axpby(hScale, gBIn, 0, gBIn, gBIn);
        ogh = { buf: dhb, dtype: 'bf16', rows, cols: r, trans: false, batchStride: rows * r, fresh: true };
      } else {
        be.castRowsBf16!(g2.f32(), rows, nOut, gc, M);
      }
    } else {
      g = prepare(g2, 1, compute); // the one cast of the output gradient
    }
    const wide = g.cols > nOut; // g's r columns past nOut: zeros now, dh once it is known (or dh already)
    const gW = keep.ox ? new Tensor(gemm(transposed(g), keep.ox, 1, uninitF32(nOut * nIn)), 'f32', [nOut, nIn]) : null;
    // (s h) or h beside or under g: rows of the result past nOut are discarded
    const gB = gBIn ? new Tensor(gBIn, 'f32', [nOut, r])
      : keep.oh ? new Tensor(firstRows(gemm(transposed(g), keep.oh, 1, uninitF32(g.cols * r), hScale), nOut * r), 'f32', [nOut, r]) : null;
    let gx: Float32Array | Uint16Array | null = keep.ow && !wide ? gemm(g, keep.ow, 1, uninitF32(rows * nIn)) : null;
    let gA: Tensor | null = null, gxa: Float32Array | null = null;
    if (keep.oB) {
      let dh: Float32Array | null = null;
      if (!ogh) {
        const oBg = wide ? withZeroRows(keep.oB, M) : keep.oB;
        dh = gemm(g, oBg, 1, uninitF32(rows * r), scaling); // dL/dh = scaling * g B, (rows, r)
        ogh = prepare(new Tensor(dh, 'f32', [rows, r]), 1, compute);
        if (wide) backend().stridedCopy(ogh.buf, [rows, r], [r, 1], (g.buf as Uint16Array).subarray(nOut), [M, 1]);
      }
      if (keep.oxa) {
        const oxa = keep.oxa;
        let gAbuf: Float32Array;
        if (rowKernel(r) && be.loraOuter && oxa.dtype === 'bf16' && ogh.dtype === 'bf16' && !oxa.trans && !ogh.trans) {
          gAbuf = new Float32Array(r * nIn); // dh^T x in one pass over x's copy (a skinny product: M = r)
          be.loraOuter(oxa.buf as Uint16Array, rows, nIn, oxa.cols, ogh.buf as Uint16Array, r, gAbuf);
        } else {
          gAbuf = leftColumns(gemm(transposed(ogh), oxa, 1, uninitF32(r * oxa.cols)), r, oxa.cols, nIn);
        }
        gA = new Tensor(gAbuf, 'f32', [r, nIn]);
      }
      if (wide) {
        // [g | dh | 0] [W; A; 0]: x's gradient from both paths in one product
        const wa = stacked(W, keep.ow!, keep.oA!, M); // kept for the next step where W is a parameter
        gx = xBf16 && toBf16Able(g, wa) ? gemmToBf16(g, wa, 1) : gemm(g, wa, 1, uninitF32(rows * nIn));
        if (wa.fresh) releaseBuffer(wa.buf as Uint16Array);
      } else if (keep.oA) {
        if (!sep && gx) gemm(ogh, keep.oA, 1, gx as Float32Array, 1, 1); // x's gradient from both paths, in one buffer
        else if (!sep) gx = gemm(ogh, keep.oA, 1, uninitF32(rows * nIn));
        else gxa = gemm(ogh, keep.oA, 1, uninitF32(rows * nIn));
      }
      if (dh) releaseBuffer(dh);
    }
    if (ogh) releaseOperands([ogh]);
    releaseOperands([g]);
    if (last) releaseOperands(kept);
    const asX = (d: Float32Array | Uint16Array | null) => (d ? new Tensor(d, d instanceof Uint16Array ? 'bf16' : 'f32', xShape) : null);
    return [asX(gx), ...(sep ? [asX(gxa)] : []), gW, ...(b ? [gb] : []), gA, gB];
  });
}

/**
 * Whether the factors can ride along the base product (see the file's comment): bf16 products in hardware with a
 * row-cast kernel, one input (no LoRA dropout), a frozen base weight, and the three matrices as dense bf16.
 */
function appendable(compute: string, sep: boolean, W: Tensor, ow: Operand, oA: Operand, oB: Operand): boolean {
  const be = backend();
  return compute === 'bf16' && !!be.nativeBf16 && !!be.castRowsBf16 && !be.device && !sep && !W.requiresGrad &&
    [ow, oA, oB].every((o) => o.dtype === 'bf16' && !o.trans);
}

/** Whether the backend's loraRows kernel takes rank r. */
function rowKernel(r: number): boolean {
  const be = backend();
  return !!be.loraRows && r <= (be.loraRowsMaxRank ?? 0);
}

/** A dense bf16 (rows, cols) operand transposed into a fresh (cols, rows) bf16 matrix. */
function transposedBf16(o: Operand): Uint16Array {
  const t = new Uint16Array(o.rows * o.cols);
  backend().stridedCopy(o.buf, [o.cols, o.rows], [1, o.cols], t);
  return t;
}

/** A dense bf16 operand widened with zero columns to `to` columns: A's share of a product whose left side has r more. */
function withZeroColumns(o: Operand, to: number): Operand {
  const p = new Uint16Array(o.rows * to);
  backend().stridedCopy(o.buf, [o.rows, o.cols], [o.cols, 1], p, [to, 1]);
  return { buf: p, dtype: 'bf16', rows: o.rows, cols: to, trans: false, batchStride: o.rows * to };
}

/** A dense bf16 operand with zero rows under it up to `to` rows: B's share of a product whose left side has r more columns. */
function withZeroRows(o: Operand, to: number): Operand {
  const p = new Uint16Array(to * o.cols);
  p.set((o.buf as Uint16Array).subarray(0, o.rows * o.cols));
  return { buf: p, dtype: 'bf16', rows: to, cols: o.cols, trans: false, batchStride: to * o.cols };
}

/**
 * The row width of an activation's bf16 copy with the factor's r columns beside it, in whole cache lines (32 bf16
 * values): each row then starts on a line, as the buffer does (tensor/alloc), where nIn + r (264 for 256 + 8) put
 * three rows in four across lines. oneDNN's AMX product over such rows took 1.5-1.7 ms against 1.9-2.0 at 2048 x 264
 * x 1024 (dense K 288 against 264; the zero columns cost nothing, AMX takes K in blocks of 32).
 */
function paddedWidth(w: number): number {
  return Math.ceil(w / 32) * 32;
}

/**
 * A wider bf16 copy of the frozen weight W (`elems` values, W's part written by `writeW` into a zeroed buffer, rows
 * of `ld`), kept under `kind` beside the weight cache's copies (versions.ts derivedOf: markModified drops it, as on a
 * merge or a load) and compared under the stale-copy check; `fresh` (handed back after use) where W is not a
 * parameter's memory, whose writers need not say so.
 */
function wideCopy(W: Tensor, ow: Operand, kind: string, elems: number, ld: number, writeW: (dst: Uint16Array) => void): { buf: Uint16Array; fresh: boolean } {
  let made = false;
  const make = () => {
    const b = new Uint16Array(elems); // zeros past (or under) the factor's share, for good
    writeW(b);
    made = true;
    return b;
  };
  const kept = derivedOf(W, kind, make);
  if (!kept) return { buf: make(), fresh: true };
  if (!made && castCacheChecked()) {
    const part = new Uint16Array(ow.rows * ow.cols); // W's part of the kept copy, against W's bf16 copy now
    backend().stridedCopy(kept, [ow.rows, ow.cols], [ld, 1], part);
    verifyCopy(part, ow.buf as Uint16Array, `kept ${kind}`);
  }
  return { buf: kept, fresh: false };
}

/** [W | B | 0]: each row of the bf16 base weight (nOut, nIn), the row of B (nOut, r), then zeros, as one (nOut, L) operand. */
function sideBySide(W: Tensor, ow: Operand, oB: Operand, L: number): Operand {
  const nOut = ow.rows, nIn = ow.cols, r = oB.cols, be = backend();
  const { buf, fresh } = wideCopy(W, ow, `LoRA [W | B] ${L}`, nOut * L, L, (d) => be.stridedCopy(ow.buf, [nOut, nIn], [nIn, 1], d, [L, 1]));
  be.stridedCopy(oB.buf, [nOut, r], [r, 1], buf.subarray(nIn), [L, 1]);
  return { buf, dtype: 'bf16', rows: nOut, cols: L, trans: false, batchStride: nOut * L, fresh };
}

/** [W; A; 0]: the bf16 base weight (nOut, nIn) with A's r rows and then zero rows under it, as one (rows, nIn) operand. */
function stacked(W: Tensor, ow: Operand, oA: Operand, rows: number): Operand {
  const n = ow.rows * ow.cols;
  const { buf, fresh } = wideCopy(W, ow, `LoRA [W; A] ${rows}`, rows * ow.cols, ow.cols, (d) => d.set((ow.buf as Uint16Array).subarray(0, n)));
  buf.set((oA.buf as Uint16Array).subarray(0, oA.rows * oA.cols), n);
  return { buf, dtype: 'bf16', rows, cols: ow.cols, trans: false, batchStride: rows * ow.cols, fresh };
}

/** The first n elements of a product's output as a buffer of its own (the rows that belong to the gradient). */
function firstRows(f: Float32Array, n: number): Float32Array {
  if (f.length === n) return f;
  const out = f.slice(0, n);
  releaseBuffer(f);
  return out;
}

/** The first `keep` columns of an f32 (rows, cols) matrix, dense. */
function leftColumns(f: Float32Array, rows: number, cols: number, keep: number): Float32Array {
  if (cols === keep) return f;
  const out = new Float32Array(rows * keep);
  backend().stridedCopy(f, [rows, keep], [cols, 1], out);
  releaseBuffer(f);
  return out;
}
