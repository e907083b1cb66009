/**
 * Fused attention, the reference: for each (batch, head), S = scale * Q K^T, masked softmax P, O = P V; gradients
 * dV = P^T dO, dS = P * (dO V^T - rowsum(dO V^T * P)) * scale, dQ = dS K, dK = dS^T Q. Strided (batch, head,
 * position) addressing with a contiguous feature dim. float64 accumulation. P is not kept: the backward pass
 * recomputes each row exactly as the forward pass did (`stats` receives the rows' max and 1/sum, as the native
 * backend's do, but this reference does not need them).
 */
import type { AttentionShape } from '../backend.js';

/** How many keys query i may see before any other mask: all Tk, or up to the causal limit (queries are the last Tq positions). */
export function visibleKeys(s: Pick<AttentionShape, 'causal' | 'Tq' | 'Tk'>, i: number): number {
  return s.causal ? Math.max(0, Math.min(s.Tk, s.Tk - s.Tq + i + 1)) : s.Tk;
}

/** The first key query i of batch b may see (packed rows: its document's start); 0 without firstKey. */
export function firstKeyOf(firstKey: Int32Array | null, s: Pick<AttentionShape, 'Tq'>, b: number, i: number): number {
  return firstKey ? Math.max(0, firstKey[b * s.Tq + i]) : 0;
}

/** Row i of P for (b, h) into `row` (length Tk); returns [max, 1/sum] (both 0 when every key is masked). */
function probsRow(s: AttentionShape, q: Float32Array, k: Float32Array, keyMask: Float32Array | null, firstKey: Int32Array | null,
  b: number, h: number, i: number, row: Float64Array): [number, number] {
  const { H, Hkv, Tk, D, qStrides: qs, kStrides: ks, scale } = s;
  const hk = Math.floor(h / (H / Hkv));
  const qo = b * qs[0] + h * qs[1] + i * qs[2];
  const vis = visibleKeys(s, i), lo = firstKeyOf(firstKey, s, b, i);
  let mx = -Infinity;
  for (let j = 0; j < vis; j++) {
    if (j < lo || (keyMask && keyMask[b * Tk + j] !== 0)) { row[j] = -Infinity; continue; }
    const ko = b * ks[0] + hk * ks[1] + j * ks[2];
    let acc = 0;
    for (let d = 0; d < D; d++) acc += q[qo + d] * k[ko + d];
    row[j] = Math.fround(acc * scale);
    if (row[j] > mx) mx = row[j];
  }
  let sum = 0;
  for (let j = 0; j < Tk; j++) {
    const e = j < vis && mx !== -Infinity && row[j] !== -Infinity ? Math.exp(row[j] - mx) : 0;
    row[j] = e;
    sum += e;
  }
  for (let j = 0; j < Tk; j++) row[j] = sum > 0 ? Math.fround(row[j] / sum) : 0;
  return sum > 0 ? [mx, 1 / sum] : [0, 0];
}

export function attention(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null,
  firstKey: Int32Array | null, out: Float32Array, stats: Float32Array): void {
  const { B, H, Hkv, Tq, Tk, Dv, vStrides: vs, outStrides: os } = s;
  const groups = H / Hkv;
  const row = new Float64Array(Tk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / groups);
      for (let i = 0; i < Tq; i++) {
        const [mx, inv] = probsRow(s, q, k, keyMask, firstKey, b, h, i, row);
        stats[((b * H + h) * Tq + i) * 2] = mx;
        stats[((b * H + h) * Tq + i) * 2 + 1] = inv;
        const vis = visibleKeys(s, i);
        const oo = b * os[0] + h * os[1] + i * os[2];
        for (let d = 0; d < Dv; d++) {
          let acc = 0;
          for (let j = 0; j < vis; j++) acc += row[j] * v[b * vs[0] + hk * vs[1] + j * vs[2] + d];
          out[oo + d] = acc;
        }
      }
    }
  }
}

export function attentionBackward(s: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array,
  keyMask: Float32Array | null, firstKey: Int32Array | null, _stats: Float32Array, dout: Float32Array, dos: [number, number, number], dq: Float32Array,
  dk: Float32Array, dv: Float32Array): void {
  const { B, H, Hkv, Tq, Tk, D, Dv, qStrides: qs, kStrides: ks, vStrides: vs, scale } = s;
  const groups = H / Hkv;
  // dk/dv accumulate over the query heads of a group: zero them first.
  for (let b = 0; b < B; b++) for (let h = 0; h < Hkv; h++) for (let j = 0; j < Tk; j++) {
    dk.fill(0, b * ks[0] + h * ks[1] + j * ks[2], b * ks[0] + h * ks[1] + j * ks[2] + D);
    dv.fill(0, b * vs[0] + h * vs[1] + j * vs[2], b * vs[0] + h * vs[1] + j * vs[2] + Dv);
  }
  const P = new Float64Array(Tk);
  const dS = new Float64Array(Tk);
  const dqRow = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / groups);
      for (let i = 0; i < Tq; i++) {
        probsRow(s, q, k, keyMask, firstKey, b, h, i, P);
        const dOo = b * dos[0] + h * dos[1] + i * dos[2];
        const qo = b * qs[0] + h * qs[1] + i * qs[2];
        let dot = 0;
        for (let j = 0; j < Tk; j++) {
          const vo = b * vs[0] + hk * vs[1] + j * vs[2];
          let acc = 0;
          for (let d = 0; d < Dv; d++) acc += dout[dOo + d] * v[vo + d];
          dS[j] = acc;
          dot += acc * P[j];
        }
        dqRow.fill(0);
        for (let j = 0; j < Tk; j++) {
          const p = P[j];
          const g = p * (dS[j] - dot) * scale;
          const ko = b * ks[0] + hk * ks[1] + j * ks[2];
          const vo = b * vs[0] + hk * vs[1] + j * vs[2];
          for (let d = 0; d < D; d++) {
            dqRow[d] += g * k[ko + d];
            dk[ko + d] += g * q[qo + d];
          }
          for (let d = 0; d < Dv; d++) dv[vo + d] += p * dout[dOo + d];
        }
        for (let d = 0; d < D; d++) dq[qo + d] = dqRow[d];
      }
    }
  }
}
