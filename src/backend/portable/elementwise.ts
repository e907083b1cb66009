/**
 * Unary ops and their gradients, and the contiguous linear combinations (axpby, affine). Every value is evaluated
 * in float64 and rounded to float32 on store. One loop per op: no per-element closure or switch.
 */
import type { UnaryOp } from '../backend.js';
import { erfc, sigmoid } from './special.js';

const SQRT1_2 = Math.SQRT1_2; // 1/sqrt(2)
const INV_SQRT_2PI = 0.3989422804014327; // 1/sqrt(2*pi)
const GELU_TANH_C = 0.7978845608028654; // sqrt(2/pi)
const GELU_TANH_K = 0.044715;

/** gelu(x) = 0.5 * x * (1 + erf(x/sqrt2)) = 0.5 * x * erfc(-x/sqrt2) (the erfc form keeps the left tail exact). */
export function gelu(x: number): number {
  return 0.5 * x * erfc(-x * SQRT1_2);
}

export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_TANH_C * (x + GELU_TANH_K * x * x * x)));
}

export function unary(op: UnaryOp, x: Float32Array, out: Float32Array): void {
  const n = x.length;
  switch (op) {
    case 'neg': for (let i = 0; i < n; i++) out[i] = -x[i]; return;
    case 'exp': for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]); return;
    case 'log': for (let i = 0; i < n; i++) out[i] = Math.log(x[i]); return;
    case 'sqrt': for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]); return;
    case 'rsqrt': for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(x[i]); return;
    case 'tanh': for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]); return;
    case 'sigmoid': for (let i = 0; i < n; i++) out[i] = sigmoid(x[i]); return;
    case 'relu': for (let i = 0; i < n; i++) { const v = x[i]; out[i] = v > 0 ? v : v !== v ? v : 0; } return;
    case 'gelu': for (let i = 0; i < n; i++) out[i] = gelu(x[i]); return;
    case 'gelu_tanh': for (let i = 0; i < n; i++) out[i] = geluTanh(x[i]); return;
    case 'silu': for (let i = 0; i < n; i++) { const v = x[i]; out[i] = v * sigmoid(v); } return;
    case 'abs': for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]); return;
    case 'square': for (let i = 0; i < n; i++) { const v = x[i]; out[i] = v * v; } return;
    case 'reciprocal': for (let i = 0; i < n; i++) out[i] = 1 / x[i]; return;
    case 'sign': for (let i = 0; i < n; i++) { const v = x[i]; out[i] = v > 0 ? 1 : v < 0 ? -1 : v; } return; // keeps +-0 and NaN
    default: throw new Error(`unary: unknown op '${op as string}'`);
  }
}

/** dx = dy * f'(x). Derivatives are taken from x in float64 (y is not needed by this implementation). */
export function unaryBackward(op: UnaryOp, x: Float32Array, y: Float32Array, dy: Float32Array, dx: Float32Array): void {
  const n = x.length;
  switch (op) {
    case 'neg': for (let i = 0; i < n; i++) dx[i] = -dy[i]; return;
    // exp, sqrt, rsqrt, reciprocal: from the output, as the native kernels (the op keeps y, not x, for them)
    case 'exp': for (let i = 0; i < n; i++) dx[i] = dy[i] * y[i]; return;
    case 'log': for (let i = 0; i < n; i++) dx[i] = dy[i] / x[i]; return;
    case 'sqrt': for (let i = 0; i < n; i++) dx[i] = (dy[i] * 0.5) / y[i]; return;
    case 'rsqrt': for (let i = 0; i < n; i++) { const v = y[i]; dx[i] = dy[i] * -0.5 * v * v * v; } return;
    case 'tanh': for (let i = 0; i < n; i++) { const t = Math.tanh(x[i]); dx[i] = dy[i] * (1 - t * t); } return;
    case 'sigmoid': for (let i = 0; i < n; i++) { const s = sigmoid(x[i]); dx[i] = dy[i] * s * (1 - s); } return;
    case 'relu': for (let i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : 0; return;
    case 'gelu':
      for (let i = 0; i < n; i++) {
        const v = x[i];
        dx[i] = dy[i] * (0.5 * erfc(-v * SQRT1_2) + v * INV_SQRT_2PI * Math.exp(-0.5 * v * v));
      }
      return;
    case 'gelu_tanh':
      for (let i = 0; i < n; i++) {
        const v = x[i];
        const t = Math.tanh(GELU_TANH_C * (v + GELU_TANH_K * v * v * v));
        const du = GELU_TANH_C * (1 + 3 * GELU_TANH_K * v * v);
        dx[i] = dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du);
      }
      return;
    case 'silu':
      for (let i = 0; i < n; i++) { const v = x[i]; const s = sigmoid(v); dx[i] = dy[i] * s * (1 + v * (1 - s)); }
      return;
    case 'abs': for (let i = 0; i < n; i++) { const v = x[i]; dx[i] = v > 0 ? dy[i] : v < 0 ? -dy[i] : 0; } return;
    case 'square': for (let i = 0; i < n; i++) dx[i] = 2 * x[i] * dy[i]; return;
    case 'reciprocal': for (let i = 0; i < n; i++) { const v = y[i]; dx[i] = -dy[i] * v * v; } return;
    case 'sign': dx.fill(0); return;
    default: throw new Error(`unaryBackward: unknown op '${op as string}'`);
  }
}

/** out = alpha * x + beta * y (out may alias x or y). */
export function axpby(alpha: number, x: Float32Array, beta: number, y: Float32Array, out: Float32Array): void {
  const n = out.length;
  for (let i = 0; i < n; i++) out[i] = alpha * x[i] + beta * y[i];
}

/** out = x * scale + shift (out may alias x). */
export function affine(x: Float32Array, scale: number, shift: number, out: Float32Array): void {
  const n = out.length;
  for (let i = 0; i < n; i++) out[i] = x[i] * scale + shift;
}
