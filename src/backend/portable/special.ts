/**
 * Special functions evaluated in float64 for the portable kernels: erf/erfc (|error| < 1e-15 absolute,
 * and erfc keeps its relative accuracy far into the tail) and a sigmoid that never overflows.
 *
 * erf: for |x| < 2.5 the all-positive series erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n (2x^2)^n x / (1*3*...*(2n+1))
 * (no cancellation); beyond, erfc from its continued fraction
 * erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))) evaluated with Lentz's method.
 */

const TWO_OVER_SQRT_PI = 1.1283791670955126; // 2 / sqrt(pi)
const ONE_OVER_SQRT_PI = 0.5641895835477563; // 1 / sqrt(pi)
const SERIES_LIMIT = 2.5;

/** erf(x) by the positive series, for 0 <= x < SERIES_LIMIT. */
function erfSeries(x: number): number {
  const x2 = x * x;
  const twoX2 = 2 * x2;
  let term = x;
  let sum = x;
  for (let n = 0; n < 200; n++) {
    term *= twoX2 / (2 * n + 3);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
}

/** erfc(x) by the continued fraction (modified Lentz), for x >= SERIES_LIMIT. */
function erfcFraction(x: number): number {
  const tiny = 1e-300;
  // f = x + a1/(x + a2/(x + ...)), a_n = n/2.
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 500; n++) {
    const an = n * 0.5;
    d = x + an * d;
    if (d === 0) d = tiny;
    c = x + an / c;
    if (c === 0) c = tiny;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return (ONE_OVER_SQRT_PI * Math.exp(-x * x)) / f;
}

/** The error function in float64. */
export function erf(x: number): number {
  if (x !== x) return NaN;
  const ax = Math.abs(x);
  let r: number;
  if (ax < SERIES_LIMIT) r = erfSeries(ax);
  else if (ax > 6) r = 1; // erfc(6) < 2.2e-17
  else r = 1 - erfcFraction(ax);
  return x < 0 ? -r : r;
}

/** The complementary error function 1 - erf(x), accurate (relatively) for large positive x. */
export function erfc(x: number): number {
  if (x !== x) return NaN;
  if (x < 0) return 2 - erfc(-x);
  if (x < SERIES_LIMIT) return 1 - erfSeries(x);
  if (x > 27) return 0; // underflows
  return erfcFraction(x);
}

/** 1 / (1 + exp(-x)) without overflow for large |x|. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}
