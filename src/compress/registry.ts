/**
 * Compressors and memories by name. A registered factory builds an instance from a validated spec;
 * registering a name twice throws. Defaults live in COMPRESSION_DEFAULTS, in one place.
 */
import { z } from 'zod';
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
export type ResolvedSpec = Required<Omit<CompressionSpec, 'errorFeedback'>> & { errorFeedback: 'none' | 'residual' | 'dgc' | (string & {}) };

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

/**
 * The one schema of a compression config: `resolveSpec` validates with it, and the trainer's `gradientCompression`
 * key is this schema (src/train/config.ts imports it), so every key a compressor or memory reads is reachable from a
 * run and nothing is listed twice. Method and errorFeedback names are checked against the registries when parsed,
 * so a registered compressor or memory is accepted everywhere at once.
 */
export const compressionSpecObjectSchema = z.object({
  method: z.string().refine((m) => compressors.has(m), () => ({ message: `expected one of ${[...compressors.keys()].join(', ')}` }))
    .describe('A built-in method (none, fp16, bf16, topk, randomk, threshold, std-mask, qsgd, terngrad, onebit, powersgd) or a registered compressor.'),
  ratio: z.number().gt(0).max(1).optional().describe(`topk/randomk: fraction of elements sent (default ${COMPRESSION_DEFAULTS.ratio}).`),
  levels: z.number().int().min(1).max(32767).optional().describe(`qsgd: quantization levels s (default ${COMPRESSION_DEFAULTS.levels}; 7 = 4-bit).`),
  bucketSize: z.number().int().positive().optional().describe(`qsgd: elements sharing one norm (default ${COMPRESSION_DEFAULTS.bucketSize}).`),
  rank: z.number().int().positive().optional().describe(`powersgd: rank of the factors (default ${COMPRESSION_DEFAULTS.rank}).`),
  lambda: z.number().positive().finite().optional().describe(`std-mask: keep |g| > lambda * std(g) (default ${COMPRESSION_DEFAULTS.lambda}).`),
  threshold: z.number().min(0).finite().optional().describe(`threshold: keep |g| > threshold (default ${COMPRESSION_DEFAULTS.threshold}).`),
  errorFeedback: z.union([z.boolean(), z.string().refine((m) => memories.has(m), () => ({ message: `expected true, false or one of ${[...memories.keys()].map((k) => `'${k}'`).join(', ')}` }))])
    .optional().describe("true/'residual': residual error feedback; 'dgc': DGC momentum correction; false/'none'. Default: residual for topk, threshold, std-mask, onebit, powersgd."),
  warmupSteps: z.number().int().nonnegative().optional().describe('topk/randomk: exponential sparsity warm-up over this many steps (default 0).'),
  momentum: z.number().min(0).lt(1).optional().describe(`dgc: momentum factor (default ${COMPRESSION_DEFAULTS.momentum}).`),
  clipNorm: z.number().min(0).finite().optional().describe('dgc: local L2 clipping per tensor; 0 = off (default).'),
  values: z.enum(['f32', 'f16']).optional().describe("topk/randomk/threshold/std-mask: dtype of the sent values (default 'f16')."),
}).strict();

/** A method's name alone (`--gradient-compression topk`): that method with its defaults. */
const compressionMethodSchema = z.string()
  .refine((m) => compressors.has(m), () => ({ message: `expected true, false, a method name (${[...compressors.keys()].join(', ')}) or an object with 'method'` }))
  .transform((method) => ({ method }));

/** `true` = top-k 10% with residual error feedback, `false` = none, a method's name, or a spec object. */
export const compressionSpecSchema = z.union([z.boolean(), compressionMethodSchema, compressionSpecObjectSchema]);

function specError(spec: unknown, issue: z.ZodIssue): ConfigError {
  if (issue.code === 'unrecognized_keys') {
    return new ConfigError(`gradientCompression: key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')} ` +
      `unknown; expected a known key (${Object.keys(compressionSpecObjectSchema.shape).join(', ')})`);
  }
  const key = issue.path.join('.');
  const value = (spec as Record<string, unknown>)[issue.path[0] as string];
  return new ConfigError(`gradientCompression: key '${key}' is ${JSON.stringify(value)}; ${issue.message.replace(/^(?!expected)/, 'expected: ')}`);
}

/**
 * Validates a spec and fills in the defaults. `true` = top-k 10% with residual error feedback, `false` = none, a name = that method.
 */
export function resolveSpec(spec: CompressionSpec | boolean | string): ResolvedSpec {
  if (typeof spec === 'boolean') spec = spec ? { method: 'topk', ratio: 0.1, errorFeedback: true } : { method: 'none' };
  if (typeof spec === 'string') spec = { method: spec };
  if (typeof spec !== 'object' || spec === null) throw new ConfigError(`gradientCompression is ${JSON.stringify(spec)}; expected true, false, a method name or an object with 'method'`);
  const r = compressionSpecObjectSchema.safeParse(spec);
  if (!r.success) {
    // the deepest issue of a union (errorFeedback) names what was expected
    let issue = r.error.issues[0]!;
    if (issue.code === 'invalid_union') issue = issue.unionErrors.flatMap((e) => e.issues).find((i) => i.code !== 'invalid_type') ?? issue;
    throw specError(spec, issue);
  }
  const s = { ...COMPRESSION_DEFAULTS, ...Object.fromEntries(Object.entries(r.data).filter(([, v]) => v !== undefined)) } as CompressionSpec & typeof COMPRESSION_DEFAULTS;
  const ef = s.errorFeedback ?? BIASED_DEFAULT_EF.has(s.method);
  return { ...s, errorFeedback: ef === true ? 'residual' : ef === false ? 'none' : ef } as ResolvedSpec;
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
