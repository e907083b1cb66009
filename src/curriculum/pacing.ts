/**
 * Pacing functions: how much of the data (the easiest fraction, under the current difficulty ranking) a
 * curriculum may draw from at training progress t in [0, 1]. Pure functions `(t) => fraction`, built from
 * { startFraction, fullAt, stages }:
 *
 *   u = min(1, t / fullAt)                          progress towards "all data is in"
 *   linear       s + (1 - s) * u
 *   sqrt         s + (1 - s) * sqrt(u)              (the seed's (epoch / total)^0.5, generalised)
 *   exponential  s * (1 / s)^u                      (geometric growth: doubles in equal steps of u)
 *   step         s + (1 - s) * floor(u * K) / K     (K = stages discrete stages, then 1 at fullAt)
 *
 * All start at s (t = 0), are non-decreasing, and reach 1 at t = fullAt.
 */
import { ConfigError } from '../errors.js';
import { Registry } from './registry.js';

export type Pacing = (progress: number) => number;

export interface PacingOptions {
  /** Fraction of the data available at t = 0, in (0, 1]. */
  startFraction: number;
  /** Fraction of training at which all data is in, in (0, 1]. */
  fullAt: number;
  /** 'step' only: the number of stages before fullAt. */
  stages?: number;
}

export type PacingFactory = (opts: PacingOptions) => Pacing;

export const PACINGS = new Registry<PacingFactory>('pacing function');

/** Validates the options, clamps t to [0, 1], and maps it through `shape(u, s)` with u = min(1, t / fullAt). */
function pacing(name: string, shape: (u: number, s: number, opts: PacingOptions) => number): PacingFactory {
  return (opts) => {
    const { startFraction: s, fullAt } = opts;
    if (!(s > 0 && s <= 1)) throw new ConfigError(`'pacing ${name}': option 'startFraction' is ${s}; expected a number in (0, 1]`);
    if (!(fullAt > 0 && fullAt <= 1)) throw new ConfigError(`'pacing ${name}': option 'fullAt' is ${fullAt}; expected a number in (0, 1]`);
    return (t) => {
      const u = Math.min(1, Math.max(0, t) / fullAt);
      return u >= 1 ? 1 : Math.min(1, Math.max(s, shape(u, s, opts)));
    };
  };
}

PACINGS.register('linear', pacing('linear', (u, s) => s + (1 - s) * u));
PACINGS.register('sqrt', pacing('sqrt', (u, s) => s + (1 - s) * Math.sqrt(u)));
PACINGS.register('exponential', pacing('exponential', (u, s) => s * (1 / s) ** u));
PACINGS.register('step', (opts) => {
  const K = opts.stages ?? 4;
  if (!Number.isInteger(K) || K < 1) throw new ConfigError(`'pacing step': option 'stages' is ${opts.stages}; expected an integer >= 1`);
  return pacing('step', (u, s) => s + ((1 - s) * Math.floor(u * K)) / K)(opts);
});

/** The pacing function `name` built with `opts`. */
export function makePacing(name: string, opts: PacingOptions): Pacing {
  return PACINGS.get(name)(opts);
}
