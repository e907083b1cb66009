/**
 * Tiled matrix product on device arrays: out = alpha * op(a) @ op(b) + beta * out, batched with element strides
 * (0 broadcasts), as `Backend.matmul`. Each 256-thread workgroup computes a 64x64 output tile from 16-deep K tiles
 * staged in workgroup memory; every thread keeps 4x4 f32 accumulators. f32 operands whose contiguous dimension,
 * offset and batch stride are multiples of 4 are loaded as vec4<f32>; 16-bit operands (bf16, f16) are stored two
 * per word and loaded a word at a time where the contiguous dimension, offset and stride are even (else element by
 * element), widened exactly to f32; an int8 `b` (matmulLowp) is widened and scaled per stored row. A bias (N) is
 * added in the epilogue (out = alpha * op(a) @ op(b) + bias, beta = 0), where the CPU backends fill out first.
 *
 * On a software adapter (SwiftShader: `GpuContext.software`) the `direct` variant is used instead: 64-thread
 * workgroups, each thread 4x4 outputs read straight from the buffers with no workgroup memory and no barrier
 * (SwiftShader runs a barrier as a switch between the workgroup's invocations, which made the tiled kernel several
 * times slower there). Same sums in the same k order, so the same results.
 */
import type { DeviceArg } from './array.js';
import type { GpuArray } from './array.js';
import type { MatmulArgs, MatmulLowpArgs } from '../backend.js';
import { Params, type GpuContext } from './device.js';
import { DTypeError, ShapeError } from '../../errors.js';
import { CONVERT_FN, PARAMS, buf, byte, half } from './wgsl.js';

type Elem = 'f32' | 'bf16' | 'f16' | 'i8';

const TILE = 64;

interface Operand {
  name: 'A' | 'B';
  dtype: Elem;
  /** Stored with k contiguous (A not transposed, B transposed). */
  kContiguous: boolean;
  vec4: boolean;
  /** 16-bit operand loaded a word (two elements) at a time. */
  pairs: boolean;
  scaled: boolean;
}

/** WGSL: the element (b, row r of op(x) along M/N, k) as f32; stored index from (row, k). */
function loader(o: Operand): string {
  const x = o.name;
  // p: 0 M, 1 N, 2 K, 3 aOff, 4 bOff, 5 outOff, 6 strideA, 7 strideB, 8 alpha, 9 beta, 10 scalesOff, 11 hasBias, 12 biasOff
  const rowsDim = x === 'A' ? 'pu(0u)' : 'pu(1u)';
  const off = x === 'A' ? 'pu(3u)' : 'pu(4u)';
  const stride = x === 'A' ? 'pu(6u)' : 'pu(7u)';
  const idx = o.kContiguous ? `r * pu(2u) + k` : `k * ${rowsDim} + r`;
  const storedRow = o.kContiguous ? 'r' : 'k';
  const get = o.dtype === 'f32' ? `${x}[i]`
    : o.dtype === 'bf16' ? `bf16ToF32(${x}Half(i))`
    : o.dtype === 'f16' ? `f16ToF32(${x}Half(i))`
    : `f32(${x}Byte(i))`;
  const scale = o.scaled ? ` * SC[pu(10u) + ${storedRow}]` : '';
  const helper = o.dtype === 'bf16' || o.dtype === 'f16' ? half(x) : o.dtype === 'i8' ? byte(x) : '';
  return helper + `fn ld${x}(b: u32, r: u32, k: u32) -> f32 {
  if (r >= ${rowsDim} || k >= pu(2u)) { return 0.0; }
  let i = ${off} + b * ${stride} + ${idx};
  return ${get}${scale};
}
`;
}

/** WGSL: fills `${X}s[k][row]` (16 x 64) for the tile at (r0, k0). */
function tileLoad(o: Operand): string {
  const x = o.name;
  const rowsDim = x === 'A' ? 'pu(0u)' : 'pu(1u)';
  const off = x === 'A' ? 'pu(3u)' : 'pu(4u)';
  const stride = x === 'A' ? 'pu(6u)' : 'pu(7u)';
  if (o.vec4) {
    if (o.kContiguous) {
      return `{
    let kk = (tid % 4u) * 4u; let rr = tid / 4u;
    var v = vec4<f32>(0.0);
    if (r0 + rr < ${rowsDim} && k0 + kk < pu(2u)) { v = ${x}4[(${off} + b * ${stride} + (r0 + rr) * pu(2u) + k0 + kk) / 4u]; }
    ${x}s[kk][rr] = v.x; ${x}s[kk + 1u][rr] = v.y; ${x}s[kk + 2u][rr] = v.z; ${x}s[kk + 3u][rr] = v.w;
  }`;
    }
    return `{
    let rr = (tid % 16u) * 4u; let kk = tid / 16u;
    var v = vec4<f32>(0.0);
    if (r0 + rr < ${rowsDim} && k0 + kk < pu(2u)) { v = ${x}4[(${off} + b * ${stride} + (k0 + kk) * ${rowsDim} + r0 + rr) / 4u]; }
    ${x}s[kk][rr] = v.x; ${x}s[kk][rr + 1u] = v.y; ${x}s[kk][rr + 2u] = v.z; ${x}s[kk][rr + 3u] = v.w;
  }`;
  }
  if (o.pairs) {
    const conv = o.dtype === 'bf16' ? 'bf16ToF32' : 'f16ToF32';
    const sc = (row: string): string => (o.scaled ? ` * SC[pu(10u) + ${row}]` : '');
    if (o.kContiguous) {
      return `for (var l = 0u; l < 2u; l = l + 1u) {
    let e = tid + l * 256u; let kk = (e % 8u) * 2u; let rr = e / 8u;
    var w = 0u;
    if (r0 + rr < ${rowsDim} && k0 + kk < pu(2u)) { w = ${x}[(${off} + b * ${stride} + (r0 + rr) * pu(2u) + k0 + kk) / 2u]; }
    ${x}s[kk][rr] = ${conv}(w & 0xffffu)${sc('(r0 + rr)')}; ${x}s[kk + 1u][rr] = ${conv}(w >> 16u)${sc('(r0 + rr)')};
  }`;
    }
    return `for (var l = 0u; l < 2u; l = l + 1u) {
    let e = tid + l * 256u; let rr = (e % 32u) * 2u; let kk = e / 32u;
    var w = 0u;
    if (r0 + rr < ${rowsDim} && k0 + kk < pu(2u)) { w = ${x}[(${off} + b * ${stride} + (k0 + kk) * ${rowsDim} + r0 + rr) / 2u]; }
    ${x}s[kk][rr] = ${conv}(w & 0xffffu)${sc('(k0 + kk)')}; ${x}s[kk][rr + 1u] = ${conv}(w >> 16u)${sc('(k0 + kk)')};
  }`;
  }
  // scalar: consecutive invocations walk the contiguous dimension
  const split = o.kContiguous ? 'let kk = e % 16u; let rr = e / 16u;' : 'let rr = e % 64u; let kk = e / 64u;';
  return `for (var l = 0u; l < 4u; l = l + 1u) {
    let e = tid + l * 256u; ${split}
    ${x}s[kk][rr] = ld${x}(b, r0 + rr, k0 + kk);
  }`;
}

function source(a: Operand, b: Operand): string {
  const decl = (o: Operand, binding: number): string =>
    o.vec4 ? buf(binding, `${o.name}4`, 'vec4<f32>') : buf(binding, o.name, o.dtype === 'f32' ? 'f32' : 'u32');
  const conv = [...new Set([a.dtype, b.dtype])].map((t) => (t === 'bf16' ? CONVERT_FN.bf16ToF32 : t === 'f16' ? CONVERT_FN.f16ToF32 : '')).join('');
  return PARAMS + conv + decl(a, 1) + decl(b, 2) + buf(3, 'O', 'f32', true) + buf(4, 'SC', 'f32') + buf(5, 'BI', 'f32') +
    (a.vec4 || a.pairs ? '' : loader(a)) + (b.vec4 || b.pairs ? '' : loader(b)) + `
var<workgroup> As: array<array<f32, ${TILE}>, 16>;
var<workgroup> Bs: array<array<f32, ${TILE}>, 16>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.z;
  let tid = lid.y * 16u + lid.x;
  let m0 = wid.y * ${TILE}u;
  let n0 = wid.x * ${TILE}u;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < pu(2u); k0 = k0 + 16u) {
    { let r0 = m0; ${tileLoad(a)} }
    { let r0 = n0; ${tileLoad(b)} }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk = kk + 1u) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i = i + 1u) { av[i] = As[kk][lid.y + 16u * i]; bv[i] = Bs[kk][lid.x + 16u * i]; }
      for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) { acc[i][j] = fma(av[i], bv[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  let M = pu(0u); let N = pu(1u);
${storeAccumulators('m0 + lid.y + 16u * i', 'n0 + lid.x + 16u * j')}
}`;
}

/**
 * The store of a thread's 4x4 accumulators, shared by both matmul kernels: out = alpha * acc + beta * out + bias.
 * `row` and `col` are WGSL expressions of the loop indices i and j; M, N, b and acc are in scope.
 */
function storeAccumulators(row: string, col: string): string {
  return `  let alpha = pf(8u); let beta = pf(9u);
  for (var i = 0u; i < 4u; i = i + 1u) {
    let m = ${row};
    if (m >= M) { continue; }
    for (var j = 0u; j < 4u; j = j + 1u) {
      let n = ${col};
      if (n >= N) { continue; }
      let o = pu(5u) + (b * M + m) * N + n;
      var v = alpha * acc[i][j];
      if (beta != 0.0) { v = v + beta * O[o]; }
      if (pu(11u) != 0u) { v = v + BI[pu(12u) + n]; }
      O[o] = v;
    }
  }`;
}

/** The barrier-free variant (software adapters): a workgroup of 8x8 threads covers 32x32 outputs, 4x4 a thread. */
const DIRECT = 32;
function directSource(a: Operand, b: Operand): string {
  const conv = [...new Set([a.dtype, b.dtype])].map((t) => (t === 'bf16' ? CONVERT_FN.bf16ToF32 : t === 'f16' ? CONVERT_FN.f16ToF32 : '')).join('');
  const decl = (o: Operand, binding: number): string => buf(binding, o.name, o.dtype === 'f32' ? 'f32' : 'u32');
  return PARAMS + conv + decl(a, 1) + decl(b, 2) + buf(3, 'O', 'f32', true) + buf(4, 'SC', 'f32') + buf(5, 'BI', 'f32') +
    loader(a) + loader(b) + `
@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.z;
  let m0 = wid.y * ${DIRECT}u + lid.y * 4u;
  let n0 = wid.x * ${DIRECT}u + lid.x * 4u;
  let M = pu(0u); let N = pu(1u);
  if (m0 >= M || n0 >= N) { return; }
  var acc: array<array<f32, 4>, 4>;
  for (var k = 0u; k < pu(2u); k = k + 1u) {
    var av: array<f32, 4>;
    var bv: array<f32, 4>;
    for (var i = 0u; i < 4u; i = i + 1u) { av[i] = ldA(b, m0 + i, k); bv[i] = ldB(b, n0 + i, k); }
    for (var i = 0u; i < 4u; i = i + 1u) {
      for (var j = 0u; j < 4u; j = j + 1u) { acc[i][j] = fma(av[i], bv[j], acc[i][j]); }
    }
  }
${storeAccumulators('m0 + i', 'n0 + j')}
}`;
}

/** One product as the kernels take it: MatmulArgs' shape fields, with device operands and their element types. */
type Call = Pick<MatmulArgs, 'batch' | 'M' | 'N' | 'K' | 'transA' | 'transB' | 'strideA' | 'strideB' | 'alpha' | 'beta'> & {
  a: GpuArray;
  b: GpuArray;
  out: GpuArray;
  aType: Elem;
  bType: Elem;
  scales: GpuArray | null;
  bias?: GpuArray | null;
};

function launch(ctx: GpuContext, c: Call): void {
  const a: Operand = { name: 'A', dtype: c.aType, kContiguous: !c.transA, vec4: false, pairs: false, scaled: false };
  const b: Operand = { name: 'B', dtype: c.bType, kContiguous: c.transB, vec4: false, pairs: false, scaled: c.scales !== null };
  const aligned = (off: number, stride: number, contiguous: number): boolean => off % 4 === 0 && stride % 4 === 0 && contiguous % 4 === 0;
  a.vec4 = a.dtype === 'f32' && aligned(c.a.offset, c.strideA, a.kContiguous ? c.K : c.M);
  b.vec4 = b.dtype === 'f32' && !b.scaled && aligned(c.b.offset, c.strideB, b.kContiguous ? c.K : c.N);
  const even = (off: number, stride: number, contiguous: number): boolean => off % 2 === 0 && stride % 2 === 0 && contiguous % 2 === 0;
  const half = (t: Elem): boolean => t === 'bf16' || t === 'f16';
  a.pairs = half(a.dtype) && even(c.a.offset, c.strideA, a.kContiguous ? c.K : c.M);
  b.pairs = half(b.dtype) && even(c.b.offset, c.strideB, b.kContiguous ? c.K : c.N);
  const sc = c.scales ?? ctx.dummy();
  if (c.bias) {
    if (c.beta !== 0) throw new Error(`matmul: a bias needs beta = 0; got beta ${c.beta}`);
    if (c.bias.dtype !== 'f32') throw new DTypeError(`matmul: the bias must be f32; got ${c.bias.dtype}`);
    if (c.bias.length < c.N) throw new ShapeError(`matmul: the bias has ${c.bias.length} elements; expected N = ${c.N}`);
  }
  const bias = c.bias ?? ctx.dummy();
  const p = new Params().u32(c.M, c.N, c.K, c.a.offset, c.b.offset, c.out.offset, c.strideA, c.strideB).f32(c.alpha, c.beta)
    .u32(sc.offset, c.bias ? 1 : 0, bias.offset);
  const binds = [{ arr: c.a }, { arr: c.b }, { arr: c.out, write: true }, { arr: sc }, { arr: bias }];
  if (ctx.matmulVariant === 'direct') {
    ctx.run(directSource(a, b), binds, p, [Math.ceil(c.N / DIRECT), Math.ceil(c.M / DIRECT), c.batch]);
  } else {
    ctx.run(source(a, b), binds, p, [Math.ceil(c.N / TILE), Math.ceil(c.M / TILE), c.batch]);
  }
}

export function matmul(ctx: GpuContext, args: Omit<DeviceArg<MatmulArgs>, 'dtype'> & { dtype: 'f32' | 'bf16' | 'f16' }): void {
  launch(ctx, { ...args, aType: args.dtype, bType: args.dtype, scales: null });
}

export function matmulLowp(ctx: GpuContext, args: DeviceArg<MatmulLowpArgs>): void {
  if (args.bDtype === 'nf4') throw new Error('matmulLowp: NF4 weights are not multiplied on the GPU');
  launch(ctx, { ...args, aType: 'f32', bType: args.bDtype, scales: args.bDtype === 'i8' ? args.scales : null, strideB: 0 });
}
