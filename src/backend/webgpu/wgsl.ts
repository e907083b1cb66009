/**
 * WGSL shared by the kernels: the parameter buffer, flat invocation indices, packed 16-/8-bit element access and
 * the exact conversions of the portable backend (src/backend/portable/cast.ts), erf, sigmoid and the counter-based
 * hash of src/backend/rng.ts.
 */

/** Binding 0 (parameter words) and accessors: pu(i) u32, pi(i) i32, pf(i) f32. */
export const PARAMS = /* wgsl */ `
@group(0) @binding(0) var<storage, read> p: array<u32>;
fn pu(i: u32) -> u32 { return p[i]; }
fn pi(i: u32) -> i32 { return bitcast<i32>(p[i]); }
fn pf(i: u32) -> f32 { return bitcast<f32>(p[i]); }
// through a var: a constant bitcast to inf/NaN is a WGSL compile error
fn negInf() -> f32 { var b = 0xff800000u; return bitcast<f32>(b); }
fn posInf() -> f32 { var b = 0x7f800000u; return bitcast<f32>(b); }
fn nanF() -> f32 { var b = 0x7fc00000u; return bitcast<f32>(b); }
fn isNan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
`;

/** A storage binding declaration. */
export function buf(binding: number, name: string, type: 'f32' | 'i32' | 'u32' | 'vec4<f32>', write = false): string {
  return `@group(0) @binding(${binding}) var<storage, ${write ? 'read_write' : 'read'}> ${name}: array<${type}>;\n`;
}

/** The flat index of an invocation of a 1-D dispatch of `WG`-wide workgroups (folded into y above 65535 groups). */
export const FLAT = /* wgsl */ `
fn flatIndex(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 { return (wid.y * nwg.x + wid.x) * WG + lid.x; }
`;

/** Entry point of a flat elementwise kernel: `i` is the element, `n` the count (statement before the body). */
export function flatMain(n: string, body: string): string {
  return `
const WG: u32 = 256u;
${FLAT}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(wid, lid, nwg);
  if (i >= ${n}) { return; }
  ${body}
}`;
}

/** Workgroups for `n` threads of 256. */
export const groups256 = (n: number): number => Math.ceil(n / 256);

/** bf16/f16 bits <-> f32, exactly as the portable backend (round to nearest even, NaN quieted, subnormals kept). */
export const CONVERT_FN = {
  bf16ToF32: /* wgsl */ `
fn bf16ToF32(h: u32) -> f32 { return bitcast<f32>(h << 16u); }
`,
  f32ToBf16: /* wgsl */ `
fn f32ToBf16(f: f32) -> u32 {
  let x = bitcast<u32>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) { return ((x >> 16u) & 0x8000u) | 0x7fc0u; }
  let lsb = (x >> 16u) & 1u;
  return ((x + 0x7fffu + lsb) >> 16u) & 0xffffu;
}
`,
  f16ToF32: /* wgsl */ `
fn f16ToF32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  var m = h & 0x3ffu;
  if (e == 0x1fu) {
    if (m == 0u) { return bitcast<f32>(sign | 0x7f800000u); }
    return bitcast<f32>(sign | 0x7f800000u | 0x400000u | (m << 13u));
  }
  if (e == 0u) {
    if (m == 0u) { return bitcast<f32>(sign); }
    var ex = 113u;
    loop { if ((m & 0x400u) != 0u) { break; } m = m << 1u; ex = ex - 1u; }
    return bitcast<f32>(sign | (ex << 23u) | ((m & 0x3ffu) << 13u));
  }
  return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}
`,
  f32ToF16: /* wgsl */ `
fn f32ToF16(f: f32) -> u32 {
  let x = bitcast<u32>(f);
  let sign = (x >> 16u) & 0x8000u;
  let ex = i32((x >> 23u) & 0xffu);
  let mant = x & 0x7fffffu;
  if (ex == 0xff) {
    if (mant == 0u) { return sign | 0x7c00u; }
    return sign | 0x7e00u | (mant >> 13u);
  }
  let e = ex - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    let m = mant | 0x800000u;
    let shift = u32(14 - e);
    var h = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (h & 1u) != 0u)) { h = h + 1u; }
    return sign | h;
  }
  var h = (u32(e) << 10u) | (mant >> 13u);
  let rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) { h = h + 1u; }
  return sign | h;
}
`,
};

/** Every conversion (kernels that need only one include just it: SwiftShader compiles what it is given). */
export const CONVERT = Object.values(CONVERT_FN).join('');

/** Element `i` (in elements, offset included) of a packed 16-bit array `a` as raw bits. */
export function half(a: string): string {
  return `fn ${a}Half(i: u32) -> u32 { return (${a}[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu; }\n`;
}

/** Element `i` of a packed 8-bit array `a` as a signed value. */
export function byte(a: string): string {
  return `fn ${a}Byte(i: u32) -> i32 { return (bitcast<i32>(${a}[i >> 2u] << ((3u - (i & 3u)) * 8u))) >> 24u; }\n`;
}

/** erf (Abramowitz-Stegun 7.1.26 is too coarse: this is the W. J. Cody-style rational of erff, |err| ~ 1e-7). */
export const MATH = /* wgsl */ `
fn erf_(x: f32) -> f32 {
  let a = abs(x);
  var r: f32;
  if (a < 0.84375) {
    let z = x * x;
    let pp = 1.28379167e-01 + z * (-3.25042108e-01 + z * (-2.84817495e-02 + z * (-5.77027029e-03 + z * -2.37630166e-05)));
    let qq = 1.0 + z * (3.97917223e-01 + z * (6.50222499e-02 + z * (5.08130628e-03 + z * (1.32494738e-04 + z * -3.96022827e-06))));
    return x + x * (pp / qq);
  }
  if (a < 1.25) {
    let s = a - 1.0;
    let P = -2.36211856e-03 + s * (4.14856118e-01 + s * (-3.72207474e-01 + s * (3.18346620e-01 + s * (-1.10894694e-01 + s * (3.54783043e-02 + s * -2.16637559e-03)))));
    let Q = 1.0 + s * (1.06420880e-01 + s * (5.40397917e-01 + s * (7.18286544e-02 + s * (1.26171219e-01 + s * (1.36370839e-02 + s * 1.19844998e-02)))));
    r = 8.45062911e-01 + P / Q;
    return select(-r, r, x >= 0.0);
  }
  if (a >= 6.0) { return select(-1.0, 1.0, x >= 0.0); }
  return select(-1.0, 1.0, x >= 0.0) * (1.0 - erfcTail(a));
}
// erfc(a) for a >= 1.25 (fdlibm erfcf's rational approximations)
fn erfcTail(a: f32) -> f32 {
  let s = 1.0 / (a * a);
  var R: f32; var S: f32;
  if (a < 2.857143) {
    R = -9.86494403e-03 + s * (-6.93858051e-01 + s * (-1.05586262e+01 + s * (-6.23753324e+01 + s * (-1.62396669e+02 + s * (-1.84605093e+02 + s * (-8.12874355e+01 + s * -9.81432934e+00))))));
    S = 1.0 + s * (1.96512716e+01 + s * (1.37657754e+02 + s * (4.34565877e+02 + s * (6.45387271e+02 + s * (4.29008140e+02 + s * (1.08635005e+02 + s * (6.57024977e+00 + s * -6.04244152e-02)))))));
  } else {
    R = -9.86494292e-03 + s * (-7.99283237e-01 + s * (-1.77579549e+01 + s * (-1.60636384e+02 + s * (-6.37566443e+02 + s * (-1.02509513e+03 + s * -4.83519191e+02)))));
    S = 1.0 + s * (3.03380607e+01 + s * (3.25792512e+02 + s * (1.53672958e+03 + s * (3.19985821e+03 + s * (2.55305040e+03 + s * (4.74528541e+02 + s * -2.24409524e+01))))));
  }
  let z = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
  return exp(-z * z - 0.5625) * exp((z - a) * (z + a) + R / S) / a;
}
// erfc(x) keeping relative accuracy in the right tail
fn erfc_(x: f32) -> f32 {
  if (x < 1.25) { return 1.0 - erf_(x); }
  if (x > 10.0) { return 0.0; }
  return erfcTail(x);
}
fn sigmoid_(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}
fn tanh_(x: f32) -> f32 {
  // tanh via exp of a negative argument (never overflows); tanh() of some implementations returns NaN for |x| > 88
  let e = exp(-2.0 * abs(x));
  let t = (1.0 - e) / (1.0 + e);
  return select(-t, t, x >= 0.0);
}
fn mix32(x0: u32) -> u32 {
  var x = x0;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  x = x ^ (x >> 16u);
  return x;
}
`;

/**
 * Strided index: the offset of flat element `i` of `shape` under `strides`, with shape at p[base..base+nd) and the
 * strides of K operands after it (p[base + nd*(k+1) + d]).
 */
export const STRIDED = /* wgsl */ `
fn stridedOffset(i: u32, nd: u32, base: u32, k: u32) -> i32 {
  var rem = i;
  var off = 0;
  for (var d = i32(nd) - 1; d >= 0; d = d - 1) {
    let n = pu(base + u32(d));
    let c = rem % n;
    rem = rem / n;
    off = off + i32(c) * pi(base + nd * (k + 1u) + u32(d));
  }
  return off;
}
`;

/**
 * WGSL `wgSum` / `wgMax` over a workgroup of `size` threads (a power of two), through `red`, a workgroup array.
 * Each call opens with a barrier as well as closing with one. The closing one alone is enough by WGSL's rules, but
 * Chromium 156's WebGPU on Mesa 22.3's llvmpipe (GL through ANGLE, an AVX2 Zen 3) gave a layer norm's variance from a
 * wrong mean with it alone: some threads read the first call's `red[0]` after thread 0 had written the second call's
 * partial there, as if the read had been moved past the closing barrier. The opening barrier keeps every thread's
 * use of one result ahead of the next call's writes (test/browser-llvmpipe.test.ts; all 404 kernel checks there).
 */
export function workgroupReductions(size: number): string {
  const reduce = (name: string, combine: string): string => `fn ${name}(v: f32, t: u32) -> f32 {
  workgroupBarrier();
  red[t] = v;
  workgroupBarrier();
  for (var s = ${size / 2}u; s > 0u; s = s >> 1u) { if (t < s) { red[t] = ${combine}; } workgroupBarrier(); }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
  return `var<workgroup> red: array<f32, ${size}>;
${reduce('wgSum', 'red[t] + red[t + s]')}
${reduce('wgMax', 'max(red[t], red[t + s])')}`;
}
