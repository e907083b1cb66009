/**
 * Fused attention on device arrays, as `Backend.attention` / `attentionBackward`. Forward: one workgroup per query
 * row takes the keys in chunks of scores in workgroup memory with a running max and sum (online softmax), so P never
 * reaches global memory and the sequence length is not bounded; stats receive the row's max and 1/sum. Backward in two kernels, FlashAttention-2's split: per query row, P is rebuilt
 * from the stats, dP = dO V^T, delta = rowsum(P * dP), dS = P (dP - delta) scale and dq = dS K; per key row, dk and
 * dv sum over every query (and every query head of the kv head's group) in chunks of 128, without atomics.
 */
import type { AttentionShape } from '../backend.js';
import type { GpuArray } from './array.js';
import { Params, type GpuContext } from './device.js';
import { DTypeError, ShapeError } from '../../errors.js';
import { PARAMS, buf, workgroupReductions } from './wgsl.js';

/** Keys per chunk of a query row's scores in workgroup memory (any number of keys is processed chunk by chunk). */
const CHUNK = 1024;
/** Largest head size: each of the 128 threads keeps two output features. */
const MAX_D = 256;

// p: 0 B, 1 H, 2 Hkv, 3 Tq, 4 Tk, 5 D, 6 Dv, 7 scale(f32), 8 causal, 9 hasMask,
//    10..12 q strides, 13..15 k, 16..18 v, 19..21 out/dout, 22 qOff, 23 kOff, 24 vOff, 25 oOff, 26 maskOff, 27 statsOff,
//    28 dqOff, 29 dkOff, 30 dvOff, 31 deltaOff, 32 hasFirstKey, 33 firstKeyOff
// firstKey (B, Tq; packed rows: each query's document start) is read by the forward and the query-row backward
// kernel; the latter copies it (bits) after delta in the scratch buffer, from which the key-row kernel reads it
// (binding one more buffer there would exceed 10 storage buffers per stage).
const COMMON = /* wgsl */ `
const WG: u32 = 128u;
${workgroupReductions(128)}
fn visible(i: u32) -> u32 {
  let Tk = i32(pu(4u));
  if (pu(8u) == 0u) { return u32(Tk); }
  return u32(clamp(Tk - i32(pu(3u)) + i32(i) + 1, 0, Tk));
}
fn fkAt(b: u32, i: u32) -> u32 { return b * pu(3u) + i; }
fn masked(b: u32, j: u32) -> bool { return pu(9u) == 1u && KM[pu(26u) + b * pu(4u) + j] != 0.0; }
fn qAt(b: u32, h: u32, i: u32) -> u32 { return pu(22u) + b * pu(10u) + h * pu(11u) + i * pu(12u); }
fn kAt(b: u32, h: u32, j: u32) -> u32 { return pu(23u) + b * pu(13u) + h * pu(14u) + j * pu(15u); }
fn vAt(b: u32, h: u32, j: u32) -> u32 { return pu(24u) + b * pu(16u) + h * pu(17u) + j * pu(18u); }
fn oAt(b: u32, h: u32, i: u32) -> u32 { return pu(25u) + b * pu(19u) + h * pu(20u) + i * pu(21u); }
fn score(b: u32, h: u32, hk: u32, i: u32, j: u32) -> f32 {
  let qo = qAt(b, h, i); let ko = kAt(b, hk, j);
  var acc = 0.0;
  for (var d = 0u; d < pu(5u); d = d + 1u) { acc = fma(Q[qo + d], K[ko + d], acc); }
  return acc * pf(7u);
}
`;

const NEG_INF = 'negInf()';

/** The first key query i of batch b may see: max(0, firstKey[b, i]), 0 without firstKey (kernels binding FK). */
const FIRST = /* wgsl */ `
fn first(b: u32, i: u32) -> u32 { if (pu(32u) == 0u) { return 0u; } return u32(max(0, FK[pu(33u) + fkAt(b, i)])); }
`;

const DECL_FWD = PARAMS + buf(1, 'Q', 'f32') + buf(2, 'K', 'f32') + buf(3, 'V', 'f32') + buf(4, 'KM', 'f32') + buf(5, 'O', 'f32', true) +
  buf(6, 'ST', 'f32', true) + buf(7, 'FK', 'i32');

const FORWARD = DECL_FWD + COMMON + FIRST + /* wgsl */ `
var<workgroup> sc: array<f32, ${CHUNK}>;
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x; let h = wid.y; let b = wid.z; let t = lid.x;
  let hk = h / (pu(1u) / pu(2u));
  let vis = visible(i);
  var acc = array<f32, 2>(0.0, 0.0);
  var mRun = ${NEG_INF};
  var lRun = 0.0;
  // keys from the first visible one in chunks of ${CHUNK} with a running max and sum (online softmax): any number of keys
  for (var j0 = first(b, i); j0 < vis; j0 = j0 + ${CHUNK}u) {
    let j1 = min(vis, j0 + ${CHUNK}u);
    var m = ${NEG_INF};
    for (var j = j0 + t; j < j1; j = j + WG) {
      var s = ${NEG_INF};
      if (!masked(b, j)) { s = score(b, h, hk, i, j); }
      sc[j - j0] = s;
      m = max(m, s);
    }
    let mNew = max(mRun, wgMax(m, t));
    let alpha = select(0.0, exp(mRun - mNew), mRun != ${NEG_INF});
    var sum = 0.0;
    for (var j = j0 + t; j < j1; j = j + WG) {
      let e = select(0.0, exp(sc[j - j0] - mNew), mNew != ${NEG_INF} && sc[j - j0] != ${NEG_INF});
      sc[j - j0] = e;
      sum = sum + e;
    }
    lRun = lRun * alpha + wgSum(sum, t);
    for (var u = 0u; u < 2u; u = u + 1u) {
      let d = t + u * WG;
      if (d < pu(6u)) {
        var a = acc[u] * alpha;
        for (var j = j0; j < j1; j = j + 1u) { a = fma(sc[j - j0], V[vAt(b, hk, j) + d], a); }
        acc[u] = a;
      }
    }
    mRun = mNew;
    workgroupBarrier();
  }
  let inv = select(0.0, 1.0 / lRun, lRun > 0.0);
  let oo = oAt(b, h, i);
  for (var u = 0u; u < 2u; u = u + 1u) {
    let d = t + u * WG;
    if (d < pu(6u)) { O[oo + d] = acc[u] * inv; }
  }
  if (t == 0u) {
    let so = pu(27u) + ((b * pu(1u) + h) * pu(3u) + i) * 2u;
    ST[so] = select(0.0, mRun, lRun > 0.0);
    ST[so + 1u] = inv;
  }
}`;

const DECL_BWD = PARAMS + buf(1, 'Q', 'f32') + buf(2, 'K', 'f32') + buf(3, 'V', 'f32') + buf(4, 'KM', 'f32') + buf(5, 'ST', 'f32') +
  buf(6, 'DO', 'f32');

/** Per query row: delta = rowsum(P * dP) (first pass over the keys), then dq = dS K in chunks (second pass). */
const BACKWARD_Q = DECL_BWD + buf(7, 'DQ', 'f32', true) + buf(8, 'DL', 'u32', true) + buf(9, 'FK', 'i32') + COMMON + FIRST + /* wgsl */ `
var<workgroup> sc: array<f32, ${CHUNK}>;
fn prob(b: u32, h: u32, hk: u32, i: u32, j: u32, mx: f32, inv: f32) -> f32 {
  if (masked(b, j)) { return 0.0; }
  return exp(score(b, h, hk, i, j) - mx) * inv;
}
fn dprob(oo: u32, vo: u32) -> f32 {
  var dp = 0.0;
  for (var d = 0u; d < pu(6u); d = d + 1u) { dp = fma(DO[oo + d], V[vo + d], dp); }
  return dp;
}
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x; let h = wid.y; let b = wid.z; let t = lid.x;
  let hk = h / (pu(1u) / pu(2u));
  let vis = visible(i);
  let lo = first(b, i);
  let row = (b * pu(1u) + h) * pu(3u) + i;
  let mx = ST[pu(27u) + row * 2u]; let inv = ST[pu(27u) + row * 2u + 1u];
  let oo = oAt(b, h, i);
  var part = 0.0;
  for (var j = lo + t; j < vis; j = j + WG) { part = part + prob(b, h, hk, i, j, mx, inv) * dprob(oo, vAt(b, hk, j)); }
  let delta = wgSum(part, t);
  var acc = array<f32, 2>(0.0, 0.0);
  for (var j0 = lo; j0 < vis; j0 = j0 + ${CHUNK}u) {
    let j1 = min(vis, j0 + ${CHUNK}u);
    for (var j = j0 + t; j < j1; j = j + WG) {
      sc[j - j0] = prob(b, h, hk, i, j, mx, inv) * (dprob(oo, vAt(b, hk, j)) - delta) * pf(7u);
    }
    workgroupBarrier();
    for (var u = 0u; u < 2u; u = u + 1u) {
      let d = t + u * WG;
      if (d < pu(5u)) {
        var a = acc[u];
        for (var j = j0; j < j1; j = j + 1u) { a = fma(sc[j - j0], K[kAt(b, hk, j) + d], a); }
        acc[u] = a;
      }
    }
    workgroupBarrier();
  }
  for (var u = 0u; u < 2u; u = u + 1u) {
    let d = t + u * WG;
    if (d < pu(5u)) { DQ[pu(28u) + b * pu(10u) + h * pu(11u) + i * pu(12u) + d] = acc[u]; }
  }
  if (t == 0u) {
    DL[pu(31u) + row] = bitcast<u32>(delta);
    // the first visible key, for the key-row kernel (after the B * H * Tq deltas)
    if (h == 0u) { DL[pu(31u) + pu(0u) * pu(1u) * pu(3u) + fkAt(b, i)] = lo; }
  }
}`;

/** Per key row of a kv head: dk and dv over every query of every query head in its group. */
const BACKWARD_KV = DECL_BWD + buf(7, 'DL', 'u32') + buf(8, 'DK', 'f32', true) + buf(9, 'DV', 'f32', true) + COMMON + /* wgsl */ `
var<workgroup> pc: array<f32, 128>;
var<workgroup> gc: array<f32, 128>;
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x; let hk = wid.y; let b = wid.z; let t = lid.x;
  let G = pu(1u) / pu(2u);
  let Tq = pu(3u);
  let km = masked(b, j);
  var ak = array<f32, 2>(0.0, 0.0);
  var av = array<f32, 2>(0.0, 0.0);
  for (var h = hk * G; h < (hk + 1u) * G; h = h + 1u) {
    for (var i0 = 0u; i0 < Tq; i0 = i0 + WG) {
      let i = i0 + t;
      var pj = 0.0; var ds = 0.0;
      if (i < Tq && j < visible(i) && !km && j >= DL[pu(31u) + pu(0u) * pu(1u) * Tq + fkAt(b, i)]) {
        let row = (b * pu(1u) + h) * Tq + i;
        pj = exp(score(b, h, hk, i, j) - ST[pu(27u) + row * 2u]) * ST[pu(27u) + row * 2u + 1u];
        let oo = oAt(b, h, i); let vo = vAt(b, hk, j);
        var dp = 0.0;
        for (var d = 0u; d < pu(6u); d = d + 1u) { dp = fma(DO[oo + d], V[vo + d], dp); }
        ds = pj * (dp - bitcast<f32>(DL[pu(31u) + row])) * pf(7u);
      }
      pc[t] = pj; gc[t] = ds;
      workgroupBarrier();
      let n = min(WG, Tq - i0);
      for (var u = 0u; u < 2u; u = u + 1u) {
        let d = t + u * WG;
        for (var s = 0u; s < n; s = s + 1u) {
          if (d < pu(5u)) { ak[u] = fma(gc[s], Q[qAt(b, h, i0 + s) + d], ak[u]); }
          if (d < pu(6u)) { av[u] = fma(pc[s], DO[oAt(b, h, i0 + s) + d], av[u]); }
        }
      }
      workgroupBarrier();
    }
  }
  for (var u = 0u; u < 2u; u = u + 1u) {
    let d = t + u * WG;
    if (d < pu(5u)) { DK[pu(29u) + b * pu(13u) + hk * pu(14u) + j * pu(15u) + d] = ak[u]; }
    if (d < pu(6u)) { DV[pu(30u) + b * pu(16u) + hk * pu(17u) + j * pu(18u) + d] = av[u]; }
  }
}`;

/**
 * BACKWARD_KV for dk and dv in one buffer (a fused qkv projection's gradient: the tensor layer writes dq, dk and dv
 * into slices of one array). WebGPU forbids two writable bindings of one buffer, so dv is addressed through dk's
 * binding at its own element offset.
 */
const BACKWARD_KV_SHARED = BACKWARD_KV.replace(buf(9, 'DV', 'f32', true), '').replaceAll('DV[', 'DK[');

function check(s: AttentionShape): void {
  if (s.D > MAX_D || s.Dv > MAX_D) throw new ShapeError(`attention on WebGPU supports head sizes up to ${MAX_D}; got D = ${s.D}, Dv = ${s.Dv}`);
  if (s.H % s.Hkv !== 0) throw new ShapeError(`attention: H = ${s.H} is not a multiple of Hkv = ${s.Hkv}`);
}

function params(s: AttentionShape, oStrides: [number, number, number], offs: number[]): Params {
  return new Params().u32(s.B, s.H, s.Hkv, s.Tq, s.Tk, s.D, s.Dv).f32(s.scale).u32(s.causal ? 1 : 0, offs[0])
    .u32(...s.qStrides, ...s.kStrides, ...s.vStrides, ...oStrides).u32(...offs.slice(1));
}

function checkFirstKey(s: AttentionShape, firstKey: GpuArray | null): void {
  if (!firstKey) return;
  if (firstKey.dtype !== 'i32') throw new DTypeError(`attention: firstKey must be i32; got ${firstKey.dtype}`);
  if (firstKey.length < s.B * s.Tq) throw new ShapeError(`attention: firstKey has ${firstKey.length} elements; expected B * Tq = ${s.B * s.Tq}`);
}

export function attention(ctx: GpuContext, s: AttentionShape, q: GpuArray, k: GpuArray, v: GpuArray, keyMask: GpuArray | null,
  firstKey: GpuArray | null, out: GpuArray, stats: GpuArray): void {
  check(s);
  checkFirstKey(s, firstKey);
  const km = keyMask ?? ctx.dummy();
  const fk = firstKey ?? ctx.dummy();
  const p = params(s, s.outStrides, [keyMask ? 1 : 0, q.offset, k.offset, v.offset, out.offset, km.offset, stats.offset, 0, 0, 0, 0])
    .u32(firstKey ? 1 : 0, fk.offset);
  ctx.run(FORWARD, [{ arr: q }, { arr: k }, { arr: v }, { arr: km }, { arr: out, write: true }, { arr: stats, write: true }, { arr: fk }],
    p, [s.Tq, s.H, s.B]);
}

export function attentionBackward(ctx: GpuContext, s: AttentionShape, q: GpuArray, k: GpuArray, v: GpuArray, keyMask: GpuArray | null,
  firstKey: GpuArray | null, stats: GpuArray, dout: GpuArray, doutStrides: [number, number, number], dq: GpuArray, dk: GpuArray,
  dv: GpuArray): void {
  check(s);
  checkFirstKey(s, firstKey);
  const km = keyMask ?? ctx.dummy();
  const fk = firstKey ?? ctx.dummy();
  // delta (B, H, Tq), then each query's first visible key (B, Tq), as u32 words
  const delta = ctx.alloc('f32', s.B * s.H * s.Tq + s.B * s.Tq);
  const p = params(s, doutStrides, [keyMask ? 1 : 0, q.offset, k.offset, v.offset, dout.offset, km.offset, stats.offset, dq.offset,
    dk.offset, dv.offset, delta.offset]).u32(firstKey ? 1 : 0, fk.offset);
  const ins = [q, k, v, km, stats, dout].map((arr) => ({ arr }));
  ctx.run(BACKWARD_Q, [...ins, { arr: dq, write: true }, { arr: delta, write: true }, { arr: fk }], p, [s.Tq, s.H, s.B]);
  if (dk.buffer === dv.buffer) ctx.run(BACKWARD_KV_SHARED, [...ins, { arr: delta }, { arr: dk, write: true }], p, [s.Tk, s.Hkv, s.B]);
  else ctx.run(BACKWARD_KV, [...ins, { arr: delta }, { arr: dk, write: true }, { arr: dv, write: true }], p, [s.Tk, s.Hkv, s.B]);
  ctx.release(delta);
}
