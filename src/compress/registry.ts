/**
 * Compressors and memories by name. A registered factory builds an instance from a validated spec;
 * registering a name twice throws. Defaults live in COMPRESSION_DEFAULTS, in one place.
 */
import { ConfigError } from '../errors.js';
import { COMPRESSION_METHODS, type CompressionSpec, type Compressor, type Memory } from './types.js';
import { NoneCompressor } from './compressors/none.js';
import { makeFp16 } from './compressors/fp16.js';
import { makeBf16 } from './compressors/bf16.js';
import { TopKCompressor } from './compressors/topk.js';
import { RandomKCompressor } from './compressors/randomk.js';
import { ThresholdCompressor } from './compressors/threshold.js';
import { StdMaskCompressor } from './compressors/std-mask.js';
import { QSGDCompressor } from './compressors/qsgd.js';
import { TernGradCompressor } from './compressors/terngrad.js';
import { OneBitCompressor } from './compressors/onebit.js';
import { PowerSGDCompressor } from './compressors/powersgd.js';
import { NoMemory } from './memory/none.js';
import { ResidualMemory } from './memory/residual.js';
import { DGCMemory } from './memory/dgc.js';

/** A spec with every optional key filled in. */
export type ResolvedSpec = Required<Omit<CompressionSpec, 'errorFeedback'>> & { errorFeedback: 'none' | 'residual' | 'dgc' };

export const COMPRESSION_DEFAULTS = {
  ratio: 0.1, //          topk/randomk: send 10%
  levels: 127, //         qsgd: 1 sign + 7 level bits per element
  bucketSize: 512, //     qsgd: one norm per 512 elements (QSGD paper)
  rank: 4, //             powersgd
  lambda: 1.645, //       std-mask: |g| > 1.645 std keeps ~10% of a normal
  threshold: 1e-3, //     threshold: absolute
  warmupSteps: 0, //      no sparsity warm-up
  momentum: 0.9, //       dgc
  clipNorm: 0, //         dgc: no local clipping
  // topk/randomk/threshold/std-mask: kept values as f16 times a per-tensor power-of-two scale (2 bytes each, relative
  // error <= 2^-11, exact residual with error feedback); 'f32' sends them as is (4 bytes). Top-k 10% of a large
  // tensor: ~3 bytes per kept element (1-byte varint gap + 2-byte value) = ~13x, against ~8x with 'f32'.
  values: 'f16' as 'f32' | 'f16',
} as const;

/** Methods that need error feedback to converge: residual memory unless the spec says otherwise. */
const BIASED_DEFAULT_EF = new Set(['topk', 'threshold', 'std-mask', 'onebit', 'powersgd']);

export type CompressorFactory = (spec: ResolvedSpec) => Compressor;
export type MemoryFactory = (spec: ResolvedSpec) => Memory;

const compressors = new Map<string, CompressorFactory>();
const memories = new Map<string, MemoryFactory>();

export function registerCompressor(name: string, factory: CompressorFactory): void {
  if (compressors.has(name)) throw new ConfigError(`'registerCompressor': a compressor named '${name}' is already registered`);
  compressors.set(name, factory);
}
export function registerMemory(name: string, factory: MemoryFactory): void {
  if (memories.has(name)) throw new ConfigError(`'registerMemory': a memory named '${name}' is already registered`);
  memories.set(name, factory);
}
export function compressorNames(): string[] {
  return [...compressors.keys()];
}

registerCompressor('none', () => new NoneCompressor());
registerCompressor('fp16', makeFp16);
registerCompressor('bf16', makeBf16);
registerCompressor('topk', (s) => new TopKCompressor({ ratio: s.ratio, warmupSteps: s.warmupSteps, values: s.values }));
registerCompressor('randomk', (s) => new RandomKCompressor({ ratio: s.ratio, warmupSteps: s.warmupSteps, values: s.values }));
registerCompressor('threshold', (s) => new ThresholdCompressor(s.threshold, s.values));
registerCompressor('std-mask', (s) => new StdMaskCompressor(s.lambda, s.values));
registerCompressor('qsgd', (s) => new QSGDCompressor(s.levels, s.bucketSize));
registerCompressor('terngrad', () => new TernGradCompressor());
registerCompressor('onebit', () => new OneBitCompressor());
registerCompressor('powersgd', (s) => new PowerSGDCompressor(s.rank));
registerMemory('none', () => new NoMemory());
registerMemory('residual', () => new ResidualMemory());
registerMemory('dgc', (s) => new DGCMemory({ momentum: s.momentum, clipNorm: s.clipNorm }));

const KEYS = ['method', 'ratio', 'levels', 'bucketSize', 'rank', 'lambda', 'threshold', 'errorFeedback', 'warmupSteps', 'momentum', 'clipNorm', 'values'];

function check(ok: boolean, key: string, value: unknown, expected: string): void {
  if (!ok) throw new ConfigError(`gradientCompression: key '${key}' is ${JSON.stringify(value)}; expected ${expected}`);
}

/**
 * Validates a spec and fills in the defaults. `true` = top-k 10% with residual error feedback, `false` = none.
 */
export function resolveSpec(spec: CompressionSpec | boolean): ResolvedSpec {
  if (typeof spec === 'boolean') spec = spec ? { method: 'topk', ratio: 0.1, errorFeedback: true } : { method: 'none' };
  if (typeof spec !== 'object' || spec === null) throw new ConfigError(`gradientCompression is ${JSON.stringify(spec)}; expected true, false or an object with 'method'`);
  for (const k of Object.keys(spec)) check(KEYS.includes(k), k, (spec as unknown as Record<string, unknown>)[k], `a known key (${KEYS.join(', ')})`);
  const known = [...compressors.keys()];
  check(typeof spec.method === 'string' && compressors.has(spec.method), 'method', spec.method, `one of ${known.join(', ')}`);
  const s = { ...COMPRESSION_DEFAULTS, ...Object.fromEntries(Object.entries(spec).filter(([, v]) => v !== undefined)) } as CompressionSpec & typeof COMPRESSION_DEFAULTS;
  check(s.ratio > 0 && s.ratio <= 1, 'ratio', s.ratio, 'a number in (0, 1]');
  check(Number.isInteger(s.levels) && s.levels >= 1 && s.levels <= 32767, 'levels', s.levels, 'an integer in [1, 32767]');
  check(Number.isInteger(s.bucketSize) && s.bucketSize >= 1, 'bucketSize', s.bucketSize, 'a positive integer');
  check(Number.isInteger(s.rank) && s.rank >= 1, 'rank', s.rank, 'a positive integer');
  check(s.lambda > 0 && Number.isFinite(s.lambda), 'lambda', s.lambda, 'a positive number');
  check(s.threshold >= 0 && Number.isFinite(s.threshold), 'threshold', s.threshold, 'a number >= 0');
  check(Number.isInteger(s.warmupSteps) && s.warmupSteps >= 0, 'warmupSteps', s.warmupSteps, 'an integer >= 0');
  check(s.momentum >= 0 && s.momentum < 1, 'momentum', s.momentum, 'a number in [0, 1)');
  check(s.values === 'f32' || s.values === 'f16', 'values', s.values, "'f32' or 'f16'");
  check(s.clipNorm >= 0 && Number.isFinite(s.clipNorm), 'clipNorm', s.clipNorm, 'a number >= 0');
  const ef = s.errorFeedback ?? BIASED_DEFAULT_EF.has(s.method);
  check([true, false, 'residual', 'dgc', 'none'].includes(ef as never), 'errorFeedback', ef, "true, false, 'residual' or 'dgc'");
  return { ...s, errorFeedback: ef === true ? 'residual' : ef === false ? 'none' : (ef as 'none' | 'residual' | 'dgc') } as ResolvedSpec;
}

export function makeCompressor(spec: CompressionSpec | boolean): Compressor {
  const s = resolveSpec(spec);
  return (compressors.get(s.method) as CompressorFactory)(s);
}

export function makeMemory(spec: CompressionSpec | boolean): Memory {
  const s = resolveSpec(spec);
  const f = memories.get(s.errorFeedback);
  if (!f) throw new ConfigError(`gradientCompression: key 'errorFeedback' is '${s.errorFeedback}'; expected one of ${[...memories.keys()].join(', ')}`);
  return f(s);
}

/** The built-in method names (the trainer config's enum). */
export const BUILTIN_METHODS = COMPRESSION_METHODS;
