/**
 * LoRA's layer product in one op: y = x W^T + b + scaling * (xa A^T) B^T, with xa = x or dropout(x).
 *
 * The same products as the composition (a Linear, lora_A, then `addLinear`), in the same order. What it saves is
 * casts under autocast: the composition cast x twice (the base product and lora_A) and the output gradient three
 * times (the base product's two gradients, addLinear's two and, through it, lora_A's), each a full pass over an
 * activation; here x is cast once (when xa is x) and the gradient once. Only the rank-r intermediate and its
 * gradient (rows x r) are cast besides. What the backward pass keeps is what the composition kept.
 */
import { ShapeError, fmtShape } from '../../errors.js';
import { releaseBuffer, uninitF32 } from '../alloc.js';
import { Tensor } from '../tensor.js';
import { isGradEnabled, record } from '../autograd.js';
import { autocastDType } from '../precision.js';
import { reshape } from './movement.js';
import { affine, biasGrad, gemm, prepare, releaseOperands, transposed, checkFloat } from './linalg.js';

export function loraLinear(x: Tensor, W: Tensor, b: Tensor | null, A: Tensor, B: Tensor, scaling: number, xa: Tensor = x): Tensor {
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
  const ox = prepare(flat(x), 1, compute);
  const oxa = xa === x ? ox : prepare(flat(xa), 1, compute);
  const ow = prepare(W, 1, compute), oA = prepare(A, 1, compute), oB = prepare(B, 1, compute);
  const out = affine(ox, ow, b, rows, nOut); // x W^T + b
  const h = gemm(oxa, transposed(oA), 1, uninitF32(rows * r)); // (rows, r)
  const oh = prepare(new Tensor(h, 'f32', [rows, r]), 1, compute);
  if (oh.fresh) releaseBuffer(h); // h was read only by its cast
  gemm(oh, transposed(oB), 1, out, scaling, 1); // += scaling * h B^T
  const y = new Tensor(out, 'f32', [...x.shape.slice(0, -1), nOut]);
  const sep = xa !== x;
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
  return record('loraLinear', inputs, y, (gy, last) => {
    const g = prepare(reshape(gy, [rows, nOut]), 1, compute); // the one cast of the output gradient
    const gb = needGb ? biasGrad(gy, rows, nOut) : null;
    const gW = keep.ox ? new Tensor(gemm(transposed(g), keep.ox, 1, uninitF32(nOut * nIn)), 'f32', [nOut, nIn]) : null;
    const gB = keep.oh ? new Tensor(gemm(transposed(g), keep.oh, 1, uninitF32(nOut * r), scaling), 'f32', [nOut, r]) : null;
    let gx: Float32Array | null = keep.ow ? gemm(g, keep.ow, 1, uninitF32(rows * nIn)) : null;
    let gA: Tensor | null = null, gxa: Float32Array | null = null;
    if (keep.oB) {
      const dh = gemm(g, keep.oB, 1, uninitF32(rows * r), scaling); // dL/dh = scaling * g B, (rows, r)
      const ogh = prepare(new Tensor(dh, 'f32', [rows, r]), 1, compute);
      if (keep.oxa) gA = new Tensor(gemm(transposed(ogh), keep.oxa, 1, uninitF32(r * nIn)), 'f32', [r, nIn]);
      if (keep.oA) {
        if (!sep && gx) gemm(ogh, keep.oA, 1, gx, 1, 1); // x's gradient from both paths, in one buffer
        else if (!sep) gx = gemm(ogh, keep.oA, 1, uninitF32(rows * nIn));
        else gxa = gemm(ogh, keep.oA, 1, uninitF32(rows * nIn));
      }
      releaseOperands([ogh]);
      releaseBuffer(dh);
    }
    releaseOperands([g]);
    if (last) releaseOperands(kept);
    const asX = (d: Float32Array | null) => (d ? new Tensor(d, 'f32', xShape) : null);
    return [asX(gx), ...(sep ? [asX(gxa)] : []), gW, ...(b ? [gb] : []), gA, gB];
  });
}
