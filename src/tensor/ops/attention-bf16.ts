/**
 * The fused attention kernel's views, and its bf16 form: under bf16 autocast on a backend that multiplies bf16 in
 * hardware (`nativeBf16`), attention's products run in bf16 as PyTorch's autocast runs them (softmax and its
 * statistics stay f32; P is rounded to bf16 before its product with V): on AMX tiles from 16 tokens on, whatever the
 * masks, elsewhere where the masks leave most scores to compute (bf16AttentionBackend). The backward pass keeps q, k, v
 * packed in bf16 (half the bytes of the f32 projection it keeps otherwise) and writes the gradients where the f32
 * kernel does. On the tiles, with bf16 product outputs, the fused qkv op also makes its output and the projection's
 * gradient in bf16 (attentionBf16), as PyTorch's autocast makes a bf16 product's, and reads the projection itself in
 * bf16 where its Linear wrote it so (nn.ts fusedQKVReadsBf16).
 */
import { backend } from '../../backend/index.js';
import type { AttentionShape, Backend } from '../../backend/backend.js';
import { releaseBuffer, uninitF32, uninitU16 } from '../alloc.js';
import { Tensor } from '../tensor.js';
import { record } from '../autograd.js';
import { autocastDType } from '../precision.js';
import { contiguous } from './movement.js';
import { firstKeyOf, visibleKeys } from '../../backend/portable/attention.js';

export type Strides3 = [number, number, number];

/** A bf16 (B, H, T, D) view as the tiles read it (a bf16 output's gradient, a bf16 projection): as attnView, its bf16 bits. */
function attnViewBf16(t: Tensor): { buf: Uint16Array; st: Strides3 } {
  const v = t.strides[3] !== 1 && t.shape[3] !== 1 ? contiguous(t) : t;
  const buf = (v.offset ? (v.storage as Uint16Array).subarray(v.offset) : v.storage) as Uint16Array;
  return { buf, st: [v.strides[0], v.strides[1], v.strides[2]] };
}

/** A (B, H, T, D) view as the kernel reads it: buffer from the view's offset and (b, h, t) strides. */
export function attnView(t: Tensor): { t: Tensor; buf: Float32Array; st: Strides3 } {
  let v = t.dtype === 'f32' ? t : t.to('f32');
  if (v.strides[3] !== 1 && v.shape[3] !== 1) v = contiguous(v);
  const buf = (v.offset ? (v.storage as Float32Array).subarray(v.offset) : v.storage) as Float32Array;
  return { t: v, buf, st: [v.strides[0], v.strides[1], v.strides[2]] };
}

type Bf16Backend = Backend & Required<Pick<Backend, 'attentionBf16' | 'attentionBf16Backward'>>;

/**
 * Shorter sequences stay on the f32 kernel: per (batch, head) their products are too small for the batched bf16 ones
 * to pay (measured on Zen 4 with AVX512-BF16 against the f32 kernel of the time: 0.98-1.30 at T = 32; on an Intel
 * Emerald Rapids with AMX, 2 threads, against today's f32 kernel: 1.18 at T = 32 without a mask, the cls workloads'
 * attention; without a mask 0.70 at T = 64, 0.84 at T = 128 with 12 heads, 0.73 at T = 256). At T >= 64 the masks
 * decide (BF16_ATTENTION_MIN_SHARE).
 */
export const BF16_ATTENTION_MIN_T = 64;

/**
 * On AMX tiles (Backend.attentionBf16Tiles: native/attention_amx.cc, head by head, only the keys each block of 32
 * queries sees) the bf16 kernel beats the f32 kernel at every shape measured, masked or not: on an Intel Emerald Rapids,
 * 2 threads, forward + backward, tiles / f32 kernel: 0.71 at B8 H12 T128 causal (GPT-2 small's), 0.65 at B8 H4 T128
 * causal (the block workload's), 0.71 at B64 H4 T32 (the cls workloads'), 0.64 at B16 H4 T64. Below 16 tokens a block of
 * 32 would be mostly padding: the f32 kernel.
 */
export const BF16_TILES_MIN_T = 16;

/**
 * Without tiles, the bf16 kernel runs only where the masks leave more than this share of the Tq x Tk scores; elsewhere attention stays
 * on the f32 kernel under bf16 autocast too. The bf16 kernel computes every score, as its batched products take whole
 * squares, and the softmax's exponentials for all of them; the f32 kernel computes only the blocks the masks leave
 * (causal triangle, other documents' keys, padding). Measured on an Intel Emerald Rapids with AMX (oneDNN isa
 * avx512_core_amx, 2 threads, `scripts/bench-attention.ts --bf16`, forward + backward, bf16 kernel / f32 kernel):
 * without a mask 0.63-0.84 at T = 64-1024; causal, which leaves just over half, 1.06 at T = 1024, 1.15 at T = 128
 * with 4 heads, 0.99 with GPT-2's 12, 1.22 at T = 64; with padded keys too 1.49; packed rows 1.45-5.7. Interpolated
 * between the causal and the unmasked times, the two kernels break even at 0.56-0.82 of the scores, by shape. So a
 * causal mask keeps the f32 kernel, and with it every workload here (the bf16 kernel takes unmasked or lightly padded
 * rows of 64 tokens and more). (On Zen 4 the bf16 kernel had beaten the f32 kernel of the time at T = 128 causal,
 * before that kernel learnt to skip the masked blocks.)
 */
export const BF16_ATTENTION_MIN_SHARE = 0.6;

/** The masks' shape: how many of the B x Tq x Tk scores they leave visible (the f32 kernel's rule, attention.h). */
export interface AttentionMasks { B: number; causal: boolean; keyMask: Float32Array | null; firstKey: Int32Array | null }

/**
 * The share of the B x Tq x Tk scores that the masks leave: keys up to the causal limit, from the first key on, not
 * masked (the reference kernel's rule, backend/portable/attention.ts).
 */
export function visibleShare(m: AttentionMasks, Tq: number, Tk: number): number {
  const { B, causal, keyMask, firstKey } = m;
  const s = { causal, Tq, Tk };
  let seen = 0;
  const masked = new Int32Array(Tk + 1); // masked keys before j, for one batch row
  for (let b = 0; b < B; b++) {
    if (keyMask) for (let j = 0; j < Tk; j++) masked[j + 1] = masked[j] + (keyMask[b * Tk + j] !== 0 ? 1 : 0);
    for (let i = 0; i < Tq; i++) {
      const hi = visibleKeys(s, i), lo = Math.min(hi, firstKeyOf(firstKey, s, b, i));
      seen += hi - lo - (keyMask ? masked[hi] - masked[lo] : 0);
    }
  }
  return seen / (B * Tq * Tk);
}

/** Where attention runs in bf16: the backend, and whether its AMX tiles take the shape. */
export interface Bf16Attention { be: Bf16Backend; tiles: boolean }

/**
 * The backend (and whether on its tiles), when attention of q (B, H, Tq, ..) over k (B, Hkv, Tk, ..) under these masks
 * runs in bf16 now; else null.
 */
export function bf16AttentionBackend(H: number, Hkv: number, Tq: number, Tk: number, masks: AttentionMasks, D: number,
  Dv: number): Bf16Attention | null {
  const be = bf16Backend(H, Hkv);
  if (!be) return null;
  if (onBf16Tiles(be, Tq, Tk, D, Dv)) return { be, tiles: true };
  if (Tq < BF16_ATTENTION_MIN_T || Tk < BF16_ATTENTION_MIN_T) return null;
  return visibleShare(masks, Tq, Tk) > BF16_ATTENTION_MIN_SHARE ? { be, tiles: false } : null;
}
/** The backend when attention with H query heads over Hkv kv heads may run in bf16 now (before sizes and masks). */
function bf16Backend(H: number, Hkv: number): Bf16Backend | null {
  const be = backend();
  return autocastDType() === 'bf16' && H === Hkv && be.nativeBf16 && be.attentionBf16 && be.attentionBf16Backward ? be as Bf16Backend : null;
}
function onBf16Tiles(be: Backend, Tq: number, Tk: number, D: number, Dv: number): boolean {
  return Tq >= BF16_TILES_MIN_T && Tk >= BF16_TILES_MIN_T && !!be.attentionBf16Tiles?.(Tq, Tk, D, Dv);
}
/**
 * Whether attention of these sizes (H = Hkv heads of D features) runs in bf16 on AMX tiles now: the masks do not
 * decide there (bf16AttentionBackend).
 */
export function bf16AttentionTiles(H: number, Tq: number, Tk: number, D: number, Dv: number): boolean {
  const be = bf16Backend(H, H);
  return !!be && onBf16Tiles(be, Tq, Tk, D, Dv);
}

/** What the fused qkv path passes: the tensor q, k, v are views of, and how to record on it. */
export interface FusedQKV {
  base: Tensor;
  /** base's buffer is this op's alone (fusedQKVAttention's `consume`): it goes back to the pool once read for the last time. */
  own?: boolean;
  record: (y: Tensor, bw: (gy: Tensor, last?: boolean) => Tensor) => Tensor;
}

/**
 * The bf16 kernel over q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv) views; the output is laid out (B, Tq, H, Dv),
 * returned as a (B, H, Tq, Dv) view, as attentionKernel (nn.ts) does. Its closures hold the bf16 copies, the
 * statistics and the masks, never q, k, v.
 */
export function attentionBf16(lowp: Bf16Attention, q: Tensor, k: Tensor, v: Tensor, keyMask: Float32Array | null, firstKey: Int32Array | null,
  causal: boolean, scale: number, fused: FusedQKV | null): Tensor {
  const [B, H, Tq, D] = q.shape;
  const Tk = k.shape[2], Dv = v.shape[3];
  // the tiles read bf16 q, k, v as they are (a projection written in bf16: fusedQKVReadsBf16)
  const in16 = lowp.tiles && q.dtype === 'bf16' && k.dtype === 'bf16' && v.dtype === 'bf16';
  const view = in16 ? attnViewBf16 : attnView;
  const Q = view(q), K = view(k), V = view(v);
  // On the tiles, with bf16 product outputs, the fused op's output (read by the projection alone: fusedQKVAttention's
  // callers) is made in bf16, as PyTorch's autocast makes attention's, and its gradient, the projection's bf16 input
  // gradient, is read as it is; and the projection's gradient (read by its Linear's backward products) is bf16 too
  const be = lowp.be, tiles = lowp.tiles && !!be.matmulToBf16;
  const bf16Out = !!fused && tiles;
  const out = bf16Out ? uninitU16(B * Tq * H * Dv) : uninitF32(B * Tq * H * Dv);
  const stats = new Float32Array(B * H * Tq * 2);
  const ql = uninitU16(B * H * Tq * D), kl = uninitU16(B * H * Tk * D), vl = uninitU16(B * H * Tk * Dv);
  const outStrides: Strides3 = [Tq * H * Dv, Dv, H * Dv];
  const shape: AttentionShape = { B, H, Hkv: H, Tq, Tk, D, Dv, qStrides: Q.st, kStrides: K.st, vStrides: V.st, outStrides, scale, causal };
  be.attentionBf16(shape, Q.buf, K.buf, V.buf, keyMask, firstKey, out, stats, ql, kl, vl);
  // the backward pass reads the packed copies: q, k, v themselves were read for the last time
  if (fused?.own) releaseBuffer(fused.base.storage as Float32Array | Uint16Array);
  const y = new Tensor(out, bf16Out ? 'bf16' : 'f32', [B, H, Tq, Dv], [...outStrides, 1]);
  // gradients written at the given strides for q, k, v; on the graph's last pass the packed copies (this op's own)
  // go back to the pool once read
  const grads = <A extends Float32Array | Uint16Array>(gy: Tensor, last: boolean | undefined, st: Strides3[], dq: A, dk: A, dv: A) => {
    const G = tiles && gy.dtype === 'bf16' ? attnViewBf16(gy) : attnView(gy);
    be.attentionBf16Backward({ ...shape, qStrides: st[0], kStrides: st[1], vStrides: st[2] }, ql, kl, vl, keyMask, firstKey, stats, G.buf, G.st, dq, dk, dv);
    if (last) for (const b of [ql, kl, vl]) releaseBuffer(b);
  };
  if (fused) {
    // q, k, v are views of base (contiguous): all three gradients go into one buffer shaped like it. Its reader is the
    // projection's backward products: where the tiles run and the backend writes bf16 outputs, in bf16 (the
    // gradient PyTorch's autocast gives a bf16 projection; no cast pass before those products, half the bytes)
    const { base } = fused;
    const baseShape = [...base.shape], baseSize = base.size, st = [Q.st, K.st, V.st];
    const offs = [q.offset - base.offset, k.offset - base.offset, v.offset - base.offset];
    const covers = q.size + k.size + v.size === baseSize;
    // (only where base is a Linear's own output, whose backward takes a bf16 gy as it is: an f32 leaf, or a view op,
    // gets the f32 gradient its dtype says)
    const byProduct = base.node?.op === 'linear' || base.node?.op === 'loraLinear';
    const bf16Grad = byProduct && tiles;
    return fused.record(y, (gy, last) => {
      // where q, k, v do not cover base, the elements between them get zeros
      const d = bf16Grad ? (covers ? uninitU16(baseSize) : new Uint16Array(baseSize)) : (covers ? uninitF32(baseSize) : new Float32Array(baseSize));
      grads(gy, last, st, d.subarray(offs[0]), d.subarray(offs[1]), d.subarray(offs[2]));
      return new Tensor(d, bf16Grad ? 'bf16' : 'f32', baseShape);
    });
  }
  return record('attention', [q, k, v], y, (gy, last) => {
    // (B, T, H, D) layouts, returned as (B, H, T, D) views
    const dq = uninitF32(B * Tq * H * D), dk = uninitF32(B * Tk * H * D), dv = uninitF32(B * Tk * H * Dv);
    grads(gy, last, [[Tq * H * D, D, H * D], [Tk * H * D, D, H * D], [Tk * H * Dv, Dv, H * Dv]], dq, dk, dv);
    const lay = (buf: Float32Array, T: number, Dd: number) => new Tensor(buf, 'f32', [B, H, T, Dd], [T * H * Dd, Dd, H * Dd, 1]);
    return [lay(dq, Tq, D), lay(dk, Tk, D), lay(dv, Tk, Dv)];
  });
}
