/**
 * Row and reduction kernels on device arrays: reduce, argmax, sumSquares, softmax, layer/RMS norm, cross-entropy,
 * gather/scatterAdd, and the fused optimizer updates. Semantics as the portable backend's (src/backend/portable),
 * with f32 arithmetic.
 */
import type { AdamWArgs, ReduceOp, RMSpropArgs, SGDArgs } from '../backend.js';
import type { DeviceArg, GpuArray } from './array.js';
import { Params, type GpuContext } from './device.js';
import { PARAMS, buf, workgroupReductions, flatMain, groups256 } from './wgsl.js';

/** A kernel with one 256-thread workgroup per row: `r` the row, `t` the thread; wgSum/wgMax reduce over the group. */
function rowMain(rows: string, body: string): string {
  return `
${workgroupReductions(256)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wid.y * nwg.x + wid.x;
  let t = lid.x;
  if (r >= ${rows}) { return; }
  ${body}
}`;
}

const NEG_INF = 'negInf()';
/** Rows per partial sum of the dgamma/dbeta column reduction. */
const ROWS_PER_CHUNK = 64;

export function reduce(ctx: GpuContext, op: ReduceOp, x: GpuArray, outer: number, n: number, inner: number, out: GpuArray): void {
  const init = op === 'sum' ? '0.0' : op === 'max' ? NEG_INF : 'posInf()';
  const comb = op === 'sum' ? 'acc + v' : op === 'max' ? 'max(acc, v)' : 'min(acc, v)';
  const p = new Params().u32(outer * inner, n, inner, x.offset, out.offset);
  if (inner === 1) {
    const wg = op === 'sum' ? 'wgSum' : op === 'max' ? 'wgMax' : '-wgMax';
    const fin = op === 'min' ? '-acc' : 'acc';
    const code = PARAMS + buf(1, 'x', 'f32') + buf(2, 'o', 'f32', true) + rowMain('pu(0u)', `
  let n = pu(1u); let base = pu(3u) + r * n;
  var acc = ${init};
  for (var j = t; j < n; j = j + 256u) { let v = x[base + j]; acc = ${comb}; }
  let tot = ${wg}(${fin}, t);
  if (t == 0u) { o[pu(4u) + r] = tot; }`);
    ctx.run(code, [{ arr: x }, { arr: out, write: true }], p, outer);
    return;
  }
  const code = PARAMS + buf(1, 'x', 'f32') + buf(2, 'o', 'f32', true) + flatMain('pu(0u)', `
  let n = pu(1u); let inner = pu(2u);
  let oi = i / inner; let ii = i % inner;
  let base = pu(3u) + oi * n * inner + ii;
  var acc = ${init};
  for (var j = 0u; j < n; j = j + 1u) { let v = x[base + j * inner]; acc = ${comb}; }
  o[pu(4u) + i] = acc;`);
  ctx.run(code, [{ arr: x }, { arr: out, write: true }], p, groups256(outer * inner));
}

export function argmax(ctx: GpuContext, x: GpuArray, outer: number, n: number, inner: number, out: GpuArray): void {
  const code = PARAMS + buf(1, 'x', 'f32') + buf(2, 'o', 'i32', true) + flatMain('pu(0u)', `
  let n = pu(1u); let inner = pu(2u);
  let base = pu(3u) + (i / inner) * n * inner + i % inner;
  var best = ${NEG_INF};
  var arg = 0;
  for (var j = 0u; j < n; j = j + 1u) { let v = x[base + j * inner]; if (v > best) { best = v; arg = i32(j); } }
  o[pu(4u) + i] = arg;`);
  ctx.run(code, [{ arr: x }, { arr: out, write: true }], new Params().u32(outer * inner, n, inner, x.offset, out.offset), groups256(outer * inner));
}

/** sum of squares: per-workgroup partial sums on the device, added in float64 after the read back. */
export async function sumSquares(ctx: GpuContext, x: GpuArray): Promise<number> {
  const parts = Math.max(1, Math.min(1024, Math.ceil(x.length / 4096)));
  const tmp = ctx.alloc('f32', parts);
  const code = PARAMS + buf(1, 'x', 'f32') + buf(2, 'o', 'f32', true) + rowMain('pu(0u)', `
  let n = pu(1u); let parts = pu(0u);
  var acc = 0.0;
  for (var j = r * 256u + t; j < n; j = j + parts * 256u) { let v = x[pu(2u) + j]; acc = acc + v * v; }
  let tot = wgSum(acc, t);
  if (t == 0u) { o[r] = tot; }`);
  ctx.run(code, [{ arr: x }, { arr: tmp, write: true }], new Params().u32(parts, x.length, x.offset), parts);
  const v = await ctx.read(tmp);
  ctx.release(tmp);
  let s = 0;
  for (const e of v) s += e;
  return s;
}

export function softmax(ctx: GpuContext, x: GpuArray, rows: number, cols: number, out: GpuArray, log: boolean): void {
  const write = log ? 'o[ob + c] = x[xb + c] - lse;' : 'o[ob + c] = exp(x[xb + c] - mx) * inv;';
  const code = PARAMS + buf(1, 'x', 'f32') + buf(2, 'o', 'f32', true) + rowMain('pu(0u)', `
  let cols = pu(1u); let xb = pu(2u) + r * cols; let ob = pu(3u) + r * cols;
  var m = ${NEG_INF};
  for (var c = t; c < cols; c = c + 256u) { m = max(m, x[xb + c]); }
  let mx = wgMax(m, t);
  var s = 0.0;
  for (var c = t; c < cols; c = c + 256u) { s = s + exp(x[xb + c] - mx); }
  let sum = wgSum(s, t);
  let lse = mx + log(sum);
  let inv = 1.0 / sum;
  for (var c = t; c < cols; c = c + 256u) { ${write} }`);
  ctx.run(code, [{ arr: x }, { arr: out, write: true }], new Params().u32(rows, cols, x.offset, out.offset), rows);
}

export function softmaxBackward(ctx: GpuContext, y: GpuArray, dy: GpuArray, rows: number, cols: number, dx: GpuArray, log: boolean): void {
  const code = PARAMS + buf(1, 'y', 'f32') + buf(2, 'dy', 'f32') + buf(3, 'dx', 'f32', true) + rowMain('pu(0u)', `
  let cols = pu(1u); let yb = pu(2u) + r * cols; let gb = pu(3u) + r * cols; let ob = pu(4u) + r * cols;
  var s = 0.0;
  for (var c = t; c < cols; c = c + 256u) { s = s + ${log ? 'dy[gb + c]' : 'dy[gb + c] * y[yb + c]'}; }
  let tot = wgSum(s, t);
  for (var c = t; c < cols; c = c + 256u) { dx[ob + c] = ${log ? 'dy[gb + c] - exp(y[yb + c]) * tot' : 'y[yb + c] * (dy[gb + c] - tot)'}; }`);
  ctx.run(code, [{ arr: y }, { arr: dy }, { arr: dx, write: true }], new Params().u32(rows, cols, y.offset, dy.offset, dx.offset), rows);
}

/** Layer norm (centered) or RMS norm forward; `mean` is null for RMS norm. */
export function normForward(ctx: GpuContext, centered: boolean, x: GpuArray, gamma: GpuArray | null, beta: GpuArray | null, rows: number,
  cols: number, eps: number, out: GpuArray, mean: GpuArray | null, rstd: GpuArray): void {
  const g = gamma ?? ctx.dummy(), b = beta ?? ctx.dummy(), mu = mean ?? ctx.dummy(true);
  const affine = `${gamma ? ' * G[pu(5u) + c]' : ''}${beta ? ' + Bt[pu(6u) + c]' : ''}`;
  const code = PARAMS + buf(1, 'x', 'f32') + buf(2, 'G', 'f32') + buf(3, 'Bt', 'f32') + buf(4, 'o', 'f32', true) +
    buf(5, 'M', 'f32', true) + buf(6, 'R', 'f32', true) + rowMain('pu(0u)', `
  let cols = pu(1u); let xb = pu(3u) + r * cols; let ob = pu(4u) + r * cols;
  var mu = 0.0;
  ${centered ? `var s = 0.0;
  for (var c = t; c < cols; c = c + 256u) { s = s + x[xb + c]; }
  mu = wgSum(s, t) / f32(cols);` : ''}
  var v = 0.0;
  for (var c = t; c < cols; c = c + 256u) { let d = x[xb + c] - mu; v = v + d * d; }
  let rs = 1.0 / sqrt(wgSum(v, t) / f32(cols) + pf(2u));
  if (t == 0u) { ${centered ? 'M[pu(7u) + r] = mu; ' : ''}R[pu(8u) + r] = rs; }
  for (var c = t; c < cols; c = c + 256u) { o[ob + c] = (x[xb + c] - mu) * rs${affine}; }`);
  ctx.run(code, [{ arr: x }, { arr: g }, { arr: b }, { arr: out, write: true }, { arr: mu, write: true }, { arr: rstd, write: true }],
    new Params().u32(rows, cols).f32(eps).u32(x.offset, out.offset, g.offset, b.offset, mu.offset, rstd.offset), rows);
}

export interface NormBackwardArgs {
  centered: boolean;
  /** 'input': xhat from x, mean, rstd; 'output': xhat = (y - beta) / gamma. */
  from: 'input' | 'output';
  dy: GpuArray;
  /** x (from input) or y (from output). */
  src: GpuArray;
  gamma: GpuArray | null;
  beta: GpuArray | null;
  mean: GpuArray | null;
  rstd: GpuArray;
  rows: number;
  cols: number;
  dx: GpuArray;
  dgamma: GpuArray | null;
  dbeta: GpuArray | null;
}

/** Gradients of layer norm / RMS norm: dx per row, then dgamma/dbeta per column (accumulated). */
export function normBackward(ctx: GpuContext, a: NormBackwardArgs): void {
  const d = ctx.dummy();
  const binds = [a.dy, a.src, a.gamma ?? d, a.beta ?? d, a.mean ?? d, a.rstd].map((arr) => ({ arr }));
  const decl = PARAMS + buf(1, 'dy', 'f32') + buf(2, 'S', 'f32') + buf(3, 'G', 'f32') + buf(4, 'Bt', 'f32') + buf(5, 'M', 'f32') + buf(6, 'R', 'f32');
  // p: rows, cols, offsets dy, src, gamma, beta, mean, rstd, out1, out2
  const xhat = a.from === 'input'
    ? (a.centered ? '(S[pu(3u) + r * cols + c] - M[pu(6u) + r]) * R[pu(7u) + r]' : 'S[pu(3u) + r * cols + c] * R[pu(7u) + r]')
    : `(S[pu(3u) + r * cols + c]${a.beta ? ' - Bt[pu(5u) + c]' : ''}) / G[pu(4u) + c]`;
  const gdy = `dy[pu(2u) + r * cols + c]${a.gamma ? ' * G[pu(4u) + c]' : ''}`;
  const p = (o1: GpuArray, o2: GpuArray): Params => new Params().u32(a.rows, a.cols, a.dy.offset, a.src.offset, (a.gamma ?? d).offset,
    (a.beta ?? d).offset, (a.mean ?? d).offset, a.rstd.offset, o1.offset, o2.offset);
  const fx = `fn xh(r: u32, c: u32, cols: u32) -> f32 { return ${xhat}; }\nfn gd(r: u32, c: u32, cols: u32) -> f32 { return ${gdy}; }\n`;
  const rowCode = decl + buf(7, 'dx', 'f32', true) + fx + rowMain('pu(0u)', `
  let cols = pu(1u);
  var sg = 0.0; var sgx = 0.0;
  for (var c = t; c < cols; c = c + 256u) { let g = gd(r, c, cols); sg = sg + g; sgx = sgx + g * xh(r, c, cols); }
  let mg = ${a.centered ? 'wgSum(sg, t) / f32(cols)' : '0.0'};
  let mgx = wgSum(sgx, t) / f32(cols);
  let rs = R[pu(7u) + r];
  for (var c = t; c < cols; c = c + 256u) { dx[pu(8u) + r * cols + c] = rs * (gd(r, c, cols) - mg - xh(r, c, cols) * mgx); }`);
  ctx.run(rowCode, [...binds, { arr: a.dx, write: true }], p(a.dx, a.dx), a.rows);
  if (!a.dgamma && !a.dbeta) return;
  // dgamma/dbeta: partial column sums over chunks of ROWS_PER_CHUNK rows (parallel over columns x chunks), then one
  // pass per column adds the chunks in order (deterministic) into the accumulated gradients
  const chunks = Math.ceil(a.rows / ROWS_PER_CHUNK);
  const pg = ctx.alloc('f32', chunks * a.cols), pb = ctx.alloc('f32', chunks * a.cols);
  const partCode = decl + buf(7, 'PG', 'f32', true) + buf(8, 'PB', 'f32', true) + fx + `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let cols = pu(1u); let c = wid.x * 256u + lid.x; let chunk = wid.y;
  if (c >= cols) { return; }
  var g = 0.0; var b = 0.0;
  let r1 = min(pu(0u), (chunk + 1u) * ${ROWS_PER_CHUNK}u);
  for (var r = chunk * ${ROWS_PER_CHUNK}u; r < r1; r = r + 1u) { let v = dy[pu(2u) + r * cols + c]; g = g + v * xh(r, c, cols); b = b + v; }
  PG[chunk * cols + c] = g;
  PB[chunk * cols + c] = b;
}`;
  ctx.run(partCode, [...binds, { arr: pg, write: true }, { arr: pb, write: true }], p(pg, pb), [Math.ceil(a.cols / 256), chunks, 1]);
  const dg = a.dgamma ?? ctx.dummy(true), db = a.dbeta ?? ctx.dummy(true);
  const sumCode = PARAMS + buf(1, 'PG', 'f32') + buf(2, 'PB', 'f32') + buf(3, 'dG', 'f32', true) + buf(4, 'dB', 'f32', true) +
    flatMain('pu(0u)', `
  let cols = pu(0u);
  var g = 0.0; var b = 0.0;
  for (var k = 0u; k < pu(1u); k = k + 1u) { g = g + PG[k * cols + i]; b = b + PB[k * cols + i]; }
  ${a.dgamma ? 'dG[pu(2u) + i] = dG[pu(2u) + i] + g;' : ''}
  ${a.dbeta ? 'dB[pu(3u) + i] = dB[pu(3u) + i] + b;' : ''}`);
  ctx.run(sumCode, [{ arr: pg }, { arr: pb }, { arr: dg, write: true }, { arr: db, write: true }],
    new Params().u32(a.cols, chunks, dg.offset, db.offset), groups256(a.cols));
  ctx.release(pg);
  ctx.release(pb);
}

export function gather(ctx: GpuContext, table: GpuArray, idx: GpuArray, cols: number, out: GpuArray): void {
  const n = idx.length * cols;
  const code = PARAMS + buf(1, 'T', 'f32') + buf(2, 'I', 'i32') + buf(3, 'o', 'f32', true) + flatMain('pu(0u)', `
  let cols = pu(1u); let row = u32(I[pu(3u) + i / cols]);
  o[pu(4u) + i] = T[pu(2u) + row * cols + i % cols];`);
  ctx.run(code, [{ arr: table }, { arr: idx }, { arr: out, write: true }], new Params().u32(n, cols, table.offset, idx.offset, out.offset), groups256(n));
}

export function scatterAdd(ctx: GpuContext, src: GpuArray, idx: GpuArray, cols: number, dtable: GpuArray): void {
  // one invocation per column, rows in index order: deterministic, and no float atomics needed
  const code = PARAMS + buf(1, 'S', 'f32') + buf(2, 'I', 'i32') + buf(3, 'o', 'f32', true) + flatMain('pu(0u)', `
  let cols = pu(0u);
  for (var k = 0u; k < pu(1u); k = k + 1u) {
    let d = pu(4u) + u32(I[pu(3u) + k]) * cols + i;
    o[d] = o[d] + S[pu(2u) + k * cols + i];
  }`);
  ctx.run(code, [{ arr: src }, { arr: idx }, { arr: dtable, write: true }],
    new Params().u32(cols, idx.length, src.offset, idx.offset, dtable.offset), groups256(cols));
}

export function crossEntropy(ctx: GpuContext, logits: GpuArray, targets: GpuArray, rows: number, cols: number, ignoreIndex: number,
  ls: number, loss: GpuArray, logp: GpuArray): void {
  const code = PARAMS + buf(1, 'x', 'f32') + buf(2, 'T', 'i32') + buf(3, 'L', 'f32', true) + buf(4, 'o', 'f32', true) + rowMain('pu(0u)', `
  let cols = pu(1u); let xb = pu(4u) + r * cols; let ob = pu(7u) + r * cols; let ls = pf(3u);
  var m = ${NEG_INF};
  for (var c = t; c < cols; c = c + 256u) { m = max(m, x[xb + c]); }
  let mx = wgMax(m, t);
  var s = 0.0;
  for (var c = t; c < cols; c = c + 256u) { s = s + exp(x[xb + c] - mx); }
  let lse = mx + log(wgSum(s, t));
  var sl = 0.0;
  for (var c = t; c < cols; c = c + 256u) { let v = x[xb + c] - lse; o[ob + c] = v; sl = sl + v; }
  let tot = wgSum(sl, t);
  if (t == 0u) {
    let tg = T[pu(5u) + r];
    if (tg == pi(2u)) { L[pu(6u) + r] = 0.0; }
    else { L[pu(6u) + r] = -(1.0 - ls) * (x[xb + u32(tg)] - lse) - (ls / f32(cols)) * tot; }
  }`);
  ctx.run(code, [{ arr: logits }, { arr: targets }, { arr: loss, write: true }, { arr: logp, write: true }],
    new Params().u32(rows, cols).i32(ignoreIndex).f32(ls).u32(logits.offset, targets.offset, loss.offset, logp.offset), rows);
}

export function crossEntropyBackward(ctx: GpuContext, logp: GpuArray, targets: GpuArray, rows: number, cols: number, ignoreIndex: number,
  ls: number, dloss: GpuArray, dlogits: GpuArray): void {
  const code = PARAMS + buf(1, 'P', 'f32') + buf(2, 'T', 'i32') + buf(3, 'dL', 'f32') + buf(4, 'o', 'f32', true) + flatMain('pu(0u)', `
  let cols = pu(1u); let r = i / cols; let c = i % cols; let ls = pf(3u);
  let tg = T[pu(5u) + r];
  if (tg == pi(2u)) { o[pu(7u) + i] = 0.0; return; }
  let off = ls / f32(cols);
  let hot = select(0.0, 1.0 - ls, u32(tg) == c);
  o[pu(7u) + i] = dL[pu(6u) + r] * (exp(P[pu(4u) + i]) - off - hot);`);
  ctx.run(code, [{ arr: logp }, { arr: targets }, { arr: dloss }, { arr: dlogits, write: true }],
    new Params().u32(rows * cols, cols).i32(ignoreIndex).f32(ls).u32(logp.offset, targets.offset, dloss.offset, dlogits.offset),
    groups256(rows * cols));
}

/** The optional step gate of the optimizer kernels (gate.ts): the binding after the others, its offset at parameter word `w`. */
function gateCode(gate: GpuArray | undefined, binding: number, w: number): { decl: string; open: string; mult: string } {
  if (!gate) return { decl: '', open: '', mult: '1.0' };
  return { decl: buf(binding, 'Gt', 'f32'), open: `if (Gt[pu(${w}u) + 1u] == 0.0) { return; }`, mult: `Gt[pu(${w}u)]` };
}

export function adamw(ctx: GpuContext, a: DeviceArg<AdamWArgs>): void {
  const bc1 = 1 - Math.pow(a.beta1, a.step);
  const bc2 = 1 - Math.pow(a.beta2, a.step);
  const gt = gateCode(a.gate, 5, 15);
  const code = PARAMS + buf(1, 'P', 'f32', true) + buf(2, 'G', 'f32') + buf(3, 'M', 'f32', true) + buf(4, 'V', 'f32', true) + gt.decl + flatMain('pu(0u)', `
  ${gt.open}
  let lr = pf(5u); let b1 = pf(6u); let b2 = pf(7u); let eps = pf(8u); let decay = pf(9u); let bc1 = pf(10u); let bc2 = pf(11u);
  let g = G[pu(2u) + i] * pf(12u) * ${gt.mult};
  var p = P[pu(1u) + i];
  p = p - decay * p;
  let m = b1 * M[pu(3u) + i] + pf(13u) * g;
  let v = b2 * V[pu(4u) + i] + pf(14u) * g * g;
  M[pu(3u) + i] = m;
  V[pu(4u) + i] = v;
  P[pu(1u) + i] = p - (lr * (m / bc1)) / (sqrt(v / bc2) + eps);`);
  ctx.run(code, [{ arr: a.param, write: true }, { arr: a.grad }, { arr: a.m, write: true }, { arr: a.v, write: true }, ...(a.gate ? [{ arr: a.gate }] : [])],
    new Params().u32(a.param.length, a.param.offset, a.grad.offset, a.m.offset, a.v.offset)
      .f32(a.lr, a.beta1, a.beta2, a.eps, a.lr * a.weightDecay, bc1, bc2, a.gradScale, 1 - a.beta1, 1 - a.beta2).u32(a.gate?.offset ?? 0),
    groups256(a.param.length));
}

export function sgd(ctx: GpuContext, a: DeviceArg<SGDArgs>): void {
  const buf3 = a.momentum !== 0 ? a.buf : ctx.dummy(true);
  const gt = gateCode(a.gate, 4, 12);
  const code = PARAMS + buf(1, 'P', 'f32', true) + buf(2, 'G', 'f32') + buf(3, 'B', 'f32', true) + gt.decl + flatMain('pu(0u)', `
  ${gt.open}
  let lr = pf(4u); let mom = pf(5u); let damp = pf(6u); let wd = pf(7u); let first = pu(8u); let nest = pu(9u);
  let p = P[pu(1u) + i];
  var g = G[pu(2u) + i] * pf(10u) * ${gt.mult};
  if (wd != 0.0) { g = g + wd * p; }
  if (mom != 0.0) {
    let b = select(mom * B[pu(3u) + i] + pf(11u) * g, g, first == 1u);
    B[pu(3u) + i] = b;
    g = select(b, g + mom * b, nest == 1u);
  }
  P[pu(1u) + i] = p - lr * g;`);
  ctx.run(code, [{ arr: a.param, write: true }, { arr: a.grad }, { arr: buf3, write: true }, ...(a.gate ? [{ arr: a.gate }] : [])],
    new Params().u32(a.param.length, a.param.offset, a.grad.offset, buf3.offset).f32(a.lr, a.momentum, a.dampening, a.weightDecay)
      .u32(a.firstStep ? 1 : 0, a.nesterov ? 1 : 0).f32(a.gradScale, 1 - a.dampening).u32(a.gate?.offset ?? 0), groups256(a.param.length));
}

/** RMSprop (PyTorch semantics, centered = false; src/optim/rmsprop.ts), fused: one pass over the parameter. */
export function rmsprop(ctx: GpuContext, a: DeviceArg<RMSpropArgs>): void {
  const buf4 = a.momentum > 0 ? a.buf : ctx.dummy(true);
  const gt = gateCode(a.gate, 5, 11);
  const code = PARAMS + buf(1, 'P', 'f32', true) + buf(2, 'G', 'f32') + buf(3, 'V', 'f32', true) + buf(4, 'B', 'f32', true) + gt.decl + flatMain('pu(0u)', `
  ${gt.open}
  let lr = pf(5u); let alpha = pf(6u); let eps = pf(7u); let mom = pf(8u); let wd = pf(9u);
  let w = P[pu(1u) + i];
  let g = G[pu(2u) + i] * pf(10u) * ${gt.mult} + wd * w;
  let v = alpha * V[pu(3u) + i] + (1.0 - alpha) * g * g;
  V[pu(3u) + i] = v;
  let upd = g / (sqrt(v) + eps);
  if (mom > 0.0) {
    let b = mom * B[pu(4u) + i] + upd;
    B[pu(4u) + i] = b;
    P[pu(1u) + i] = w - lr * b;
  } else {
    P[pu(1u) + i] = w - lr * upd;
  }`);
  ctx.run(code, [{ arr: a.param, write: true }, { arr: a.grad }, { arr: a.v, write: true }, { arr: buf4, write: true }, ...(a.gate ? [{ arr: a.gate }] : [])],
    new Params().u32(a.param.length, a.param.offset, a.grad.offset, a.v.offset, buf4.offset).f32(a.lr, a.alpha, a.eps, a.momentum, a.weightDecay, a.gradScale)
      .u32(a.gate?.offset ?? 0), groups256(a.param.length));
}
