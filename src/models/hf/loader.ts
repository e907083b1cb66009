/**
 * Loading a Hugging Face model: from a local directory (config.json, model.safetensors or a sharded
 * model.safetensors.index.json, tokenizer.json) or by Hub id ('org/name') into the Hub's cache folder.
 *
 * The model is first built as a skeleton whose large weights are placeholders (no memory, no random init),
 * then each checkpoint tensor takes its parameter's place: f32 by default (trainable), or, with
 * `dtype: 'keep'`, F16/BF16 tensors stay 16-bit (frozen storage, half the memory). Every key is checked:
 * a missing tensor or a wrong shape is a CheckpointError naming the file, the key and the expected shape.
 */
import { existsSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspectSafetensors, readSafetensors, type SafetensorsHeader, type TensorInfo } from '../safetensors.js';
import { LoadQuantizer, type LoadQuantization, type QuantizeReport } from '../../peft/quant.js';
import { CheckpointError, ConfigError, fmtShape } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import { sameShape } from '../../tensor/shape.js';
import { HFConfig, taskOfArchitecture, type HFTask } from './config.js';
import { familyOf, type HFFamily, type HFModel, type Pooling } from './family.js';
import { isPlaceholder, setParameter, withDeferredInit } from './layers.js';
import { HFTokenizer } from './tokenizer.js';
import { checkHeaderShape, checkParameterSizes, checkpointShape } from './shape-check.js';
import { Embedding, Linear } from '../../nn/layers.js';
import { getRng } from '../../nn/init.js';
import { onCpu, placeOnCurrent } from '../../backend/placement.js';
import { backend } from '../../backend/index.js';
import './architectures.js';

export interface LoadHFOptions {
  /** 'f32' (default): float tensors load as f32, trainable. 'keep': F16/BF16 tensors stay 16-bit and frozen. */
  dtype?: 'f32' | 'keep';
  /** The head to build; default from `architectures[0]` (GPT2LMHeadModel -> 'causal-lm'), else the family's. */
  task?: HFTask;
  /** Sequence classification: number of labels (default from config.json) and pooling (default per family). */
  numLabels?: number;
  pooling?: Pooling;
  /**
   * Quantise the frozen Linear layers while the checkpoint loads (QLoRA's low-memory load): each is converted as
   * soon as its tensors are read, so the base is never whole in the checkpoint's precision. For a base that stays
   * frozen (a LoRA run); use with `dtype: 'keep'`. A CPU backend only.
   */
  quantize?: LoadQuantization;
}

export interface HubOptions {
  /** The Hub cache folder (default $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  revision?: string;
  /** Give up on the network after this long (default 15 s per request). */
  timeoutMs?: number;
  /** A fetch to use instead of the global one (proxies, tests). */
  fetch?: typeof fetch;
  /** Never touch the network (also with HF_HUB_OFFLINE=1): only the cache. */
  offline?: boolean;
  accessToken?: string;
  hubUrl?: string;
}

/** What happened to each checkpoint key. */
export interface LoadReport {
  /** Checkpoint tensors for which the model has no parameter (reported, not loaded). */
  unexpected: string[];
  /** Known buffers and pre-training heads that are skipped on purpose. */
  ignored: string[];
  /** Head parameters the checkpoint does not have, left at their random initialisation (a new classifier). */
  initialized: string[];
  /** With `quantize`: the layers converted while loading. */
  quantized?: QuantizeReport;
}

const WEIGHTS = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

/** The weight files of a directory, each with the keys it must hold (null: all of them). */
export function weightFiles(dir: string): { file: string; keys: Set<string> | null }[] {
  const single = path.join(dir, WEIGHTS);
  if (existsSync(single)) return [{ file: single, keys: null }];
  const index = path.join(dir, INDEX);
  if (existsSync(index)) {
    let map: unknown;
    try {
      map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: unknown }).weight_map;
    } catch (e) {
      throw new CheckpointError(`cannot read '${index}': ${(e as Error).message}`, { cause: e });
    }
    if (typeof map !== 'object' || map === null) throw new CheckpointError(`'${index}' has no 'weight_map' object; expected {"weight_map": {"<key>": "<shard file>"}}`);
    const shards = new Map<string, Set<string>>();
    for (const [key, f] of Object.entries(map as Record<string, unknown>)) {
      if (typeof f !== 'string' || f.includes('..') || path.isAbsolute(f)) throw new CheckpointError(`'${index}' maps '${key}' to ${JSON.stringify(f)}; expected a shard file name in the same folder`);
      if (!shards.has(f)) shards.set(f, new Set());
      shards.get(f)?.add(key);
    }
    return [...shards].map(([f, keys]) => {
      const file = path.join(dir, f);
      if (!existsSync(file)) throw new CheckpointError(`'${index}' names shard '${f}', which is missing from '${dir}'`);
      return { file, keys };
    });
  }
  const legacy = ['pytorch_model.bin', 'model.ckpt.index', 'tf_model.h5'].find((f) => existsSync(path.join(dir, f)));
  throw new CheckpointError(`'${dir}' has no ${WEIGHTS} or ${INDEX}` +
    (legacy ? `; it has ${legacy}, which is not read here: convert it to safetensors (transformers: model.save_pretrained(dir, safe_serialization=True))` : ''));
}

/** The checkpoint key -> model key map: exact, or with the backbone prefix added or removed. */
function resolver(params: Map<string, Tensor>, prefix: string): (key: string) => string | null {
  return (k) => {
    if (params.has(k)) return k;
    if (params.has(`${prefix}.${k}`)) return `${prefix}.${k}`;
    if (k.startsWith(`${prefix}.`) && params.has(k.slice(prefix.length + 1))) return k.slice(prefix.length + 1);
    return null;
  };
}

/**
 * Fills the parameters of `model` (built with deferred init) from the safetensors files of `dir`, a tensor at a
 * time; with `quantize`, each Linear layer is quantised as soon as its tensors are in (see LoadQuantizer).
 */
export function loadWeights(model: HFModel, family: HFFamily<unknown>, dir: string, dtype: 'f32' | 'keep' = 'f32', configFile = 'config.json',
  raw: Record<string, unknown> = {}, quantize?: LoadQuantization): LoadReport {
  const dtype16 = dtype === 'keep' ? 'keep' : 'f32';
  const params = new Map(model.namedParameters());
  const resolve = resolver(params, family.basePrefix);
  const report: LoadReport = { unexpected: [], ignored: [], initialized: [] };
  const from = new Map<string, string>();
  const files = weightFiles(dir);
  // every header first: a config that disagrees with the checkpoint fails before a byte of weights is read
  const headers = new Map(files.map(({ file }) => [file, inspectSafetensors(file)]));
  for (const [file, header] of headers) {
    for (const info of header.tensors.values()) {
      const key = resolve(info.name);
      if (key === null) continue;
      checkHeaderShape({ family, key, ckptKey: info.name, shape: info.shape, expected: (params.get(key) as Tensor).shape, raw, file, configFile });
    }
  }
  checkParameterSizes(model, raw, configFile);
  const quantizer = quantize ? new LoadQuantizer(model, quantize) : null;
  // a Linear weight that the quantiser converts as it arrives is read into one reused buffer (it is not kept), so
  // the load allocates no checkpoint-sized garbage that the collector might leave in memory until the end
  let reuse: ArrayBuffer | null = null;
  const into = (info: TensorInfo): Uint8Array | null => {
    const key = resolve(info.name);
    const dtype = info.dtype === 'BF16' && dtype16 === 'keep' ? 'bf16' : info.dtype === 'F16' && dtype16 === 'keep' ? 'f16' : 'f32';
    if (key === null || !quantizer?.consumes(key, dtype)) return null;
    const len = info.end - info.begin;
    if (!reuse || reuse.byteLength < len) reuse = new ArrayBuffer(Math.ceil(len / 8) * 8);
    return new Uint8Array(reuse, 0, len);
  };
  for (const { file, keys } of files) {
    if (keys) {
      const names = (headers.get(file) as SafetensorsHeader).tensors;
      for (const k of keys) if (!names.has(k)) throw new CheckpointError(`'${path.join(dir, INDEX)}' maps '${k}' to '${path.basename(file)}', which has no such tensor`);
    }
    for (const [ck, t] of readSafetensors(file, { floatDType: dtype16, ...(quantizer ? { into } : {}) }).tensors) {
      const key = resolve(ck);
      if (key === null) {
        (family.ignoredKeys.some((re) => re.test(ck)) ? report.ignored : report.unexpected).push(ck);
        continue;
      }
      if (from.has(key)) throw new CheckpointError(`'${file}': tensor '${ck}' fills parameter '${key}', which '${from.get(key)}' already filled`);
      const expected = (params.get(key) as Tensor).shape;
      if (t.dtype === 'i32' || t.dtype === 'i8') throw new CheckpointError(`'${file}': tensor '${ck}' has integer dtype ${t.dtype}; expected a float tensor of shape ${fmtShape(expected)}`);
      const v = family.toModel ? family.toModel(key, t) : t;
      if (!sameShape(v.shape, expected)) {
        const want = checkpointShape(family, key, expected);
        throw new CheckpointError(`'${file}': tensor '${ck}' has shape ${fmtShape(t.shape)}; the ${family.name} model that '${configFile}' describes expects ${fmtShape(want)}`);
      }
      setParameter(model, key, v);
      from.set(key, file);
      quantizer?.filled(key);
    }
  }
  const missing: string[] = [];
  for (const [key, p] of model.namedParameters()) {
    if (from.has(key)) continue;
    if (isPlaceholder(p)) missing.push(`'${key}' ${fmtShape(p.shape)}`);
    else report.initialized.push(key);
  }
  if (missing.length) {
    throw new CheckpointError(`the weights in '${dir}' have no tensor for ${missing.length} parameter(s) of the ${family.name} model that '${configFile}' describes: ` +
      `${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}`);
  }
  if (quantizer) report.quantized = quantizer.report;
  return report;
}

function readOptionalJson(file: string): Record<string, unknown> | null {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError(`'${file}' is not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/**
 * Loads a model from a local Hugging Face directory, in eval mode (as transformers' from_pretrained). Built and filled
 * on the CPU; where a device backend (WebGPU) is current its parameters are then uploaded (src/backend/placement.ts).
 */
export function loadHFModelFromDir(dir: string, opts: LoadHFOptions = {}): HFModel & { loadReport: LoadReport } {
  if (opts.quantize && backend().device) {
    throw new ConfigError(`option 'quantize' needs a CPU backend: a quantised base runs on the CPU kernels (the current backend is '${backend().name}')`);
  }
  const model = onCpu(() => buildHFModelFromDir(dir, opts));
  placeOnCurrent(model.parameters());
  return model;
}

function buildHFModelFromDir(dir: string, opts: LoadHFOptions): HFModel & { loadReport: LoadReport } {
  if (opts.dtype !== undefined && opts.dtype !== 'f32' && opts.dtype !== 'keep') {
    throw new ConfigError(`option 'dtype' is '${String(opts.dtype)}'; expected 'f32' or 'keep'`);
  }
  const config = HFConfig.read(dir);
  const family = familyOf(config);
  const cfg = family.parseConfig(config);
  const task = opts.task ?? taskOfArchitecture(config.architecture) ?? family.defaultTask;
  const model = withDeferredInit(() => family.build(cfg, { task, numLabels: opts.numLabels, pooling: opts.pooling }));
  const loadReport = loadWeights(model, family, dir, opts.dtype ?? 'f32', config.file, config.raw, opts.quantize);
  model.hf = {
    family: family.name, task, config: config.raw, tokenizer: HFTokenizer.fromDir(dir),
    generationConfig: readOptionalJson(path.join(dir, 'generation_config.json')), source: dir,
  };
  model.eval(); // as from_pretrained: dropout off until a trainer calls train()
  return Object.assign(model, { loadReport });
}

/** A new model of the architecture that `config` (a config.json object) describes, randomly initialised. */
export function buildHFModel(config: Record<string, unknown>, opts: { task?: HFTask; numLabels?: number; pooling?: Pooling } = {}): HFModel {
  const c = new HFConfig(config, '<config>');
  const family = familyOf(c);
  const task = opts.task ?? taskOfArchitecture(c.architecture) ?? family.defaultTask;
  const model = withDeferredInit(() => family.build(family.parseConfig(c), { task, numLabels: opts.numLabels, pooling: opts.pooling }));
  checkParameterSizes(model, config, c.file);
  initWeights(model, c.num('initializer_range', 0.02));
  model.hf = { family: family.name, task, config, tokenizer: null, generationConfig: null, source: null };
  return model;
}

/**
 * transformers' `_init_weights` for these families: Linear and Embedding weights ~ N(0, initializer_range),
 * biases 0, norm weights 1 (seeded by manualSeed).
 */
function initWeights(model: HFModel, std: number): void {
  const rng = getRng();
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof Linear) && !(m instanceof Embedding)) continue;
    const w = m.weight;
    const d = new Float32Array(w.size);
    for (let i = 0; i < d.length; i++) d[i] = rng.normal() * std;
    setParameter(m, 'weight', new Tensor(d, 'f32', [...w.shape]));
    if (m instanceof Linear && m.bias) setParameter(m, 'bias', new Tensor(new Float32Array(m.bias.size), 'f32', [...m.bias.shape]));
  }
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** A local directory, or a Hub id resolved through the cache (downloading what is missing). */
export async function loadHFModel(source: string, opts: LoadHFOptions & HubOptions = {}): Promise<HFModel & { loadReport: LoadReport }> {
  if (existsSync(source)) return loadHFModelFromDir(source, opts);
  if (!HUB_ID.test(source)) {
    throw new ConfigError(`model '${source}' is neither a local folder nor a Hugging Face Hub id ('org/name'); expected a folder with config.json and model.safetensors`);
  }
  return loadHFModelFromDir(await resolveHubModel(source, opts), opts);
}

// ---- the Hub ------------------------------------------------------------------------------------------------

export function hubCacheDir(): string {
  return process.env.HF_HUB_CACHE ?? path.join(process.env.HF_HOME ?? path.join(os.homedir(), '.cache', 'huggingface'), 'hub');
}

function offlineError(id: string, why: string, cause?: unknown): CheckpointError {
  return new CheckpointError(`cannot get model '${id}' from the Hugging Face Hub: ${why}. On a machine without network access, ` +
    `download it elsewhere (e.g. 'huggingface-cli download ${id} --local-dir DIR') and point at the folder instead of the id: ` +
    `loadHFModel('/path/to/DIR') or '--model /path/to/DIR' (a folder with config.json, model.safetensors and tokenizer.json)`, { cause });
}

/** The cached snapshot folder of `id` at `revision`, when it holds a config and complete weights. */
function cachedSnapshot(cacheDir: string, id: string, revision: string): string | null {
  const repo = path.join(cacheDir, `models--${id.replace('/', '--')}`);
  const ref = path.join(repo, 'refs', revision);
  const sha = existsSync(ref) ? readFileSync(ref, 'utf8').trim() : revision;
  const dir = path.join(repo, 'snapshots', sha);
  if (!existsSync(path.join(dir, 'config.json'))) return null;
  try {
    weightFiles(dir);
    return dir;
  } catch {
    return null;
  }
}

const OPTIONAL = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'special_tokens_map.json'];

/** Downloads (or finds in the cache) what a model needs; returns its snapshot folder. */
export async function resolveHubModel(id: string, opts: HubOptions = {}): Promise<string> {
  const cacheDir = opts.cacheDir ?? hubCacheDir();
  const revision = opts.revision ?? 'main';
  const cached = cachedSnapshot(cacheDir, id, revision);
  if (cached) return cached;
  if (opts.offline || process.env.HF_HUB_OFFLINE === '1') throw offlineError(id, `it is not in the cache '${cacheDir}' and offline mode is on`);
  const timeoutMs = opts.timeoutMs ?? 15000;
  const base = opts.fetch ?? fetch;
  const timedFetch = ((input: Parameters<typeof fetch>[0], init?: RequestInit) =>
    base(input, { ...init, signal: AbortSignal.timeout(timeoutMs) })) as typeof fetch;
  const common = { fetch: timedFetch, hubUrl: opts.hubUrl, accessToken: opts.accessToken ?? process.env.HF_TOKEN };
  let hub: typeof import('@huggingface/hub');
  try {
    hub = await import('@huggingface/hub');
  } catch (e) {
    throw offlineError(id, `the package @huggingface/hub is not installed (${(e as Error).message})`, e);
  }
  let sha: string;
  let present: Set<string>;
  try {
    sha = (await hub.modelInfo({ ...common, name: id, revision, additionalFields: ['sha'] })).sha;
    const info = await hub.pathsInfo({ ...common, repo: id, revision: sha, paths: ['config.json', WEIGHTS, INDEX, ...OPTIONAL] });
    present = new Set(info.map((p) => p.path));
  } catch (e) {
    throw offlineError(id, `the Hub did not answer (${(e as Error).message})`, e);
  }
  if (!present.has('config.json')) throw new CheckpointError(`Hub model '${id}' (revision ${revision}) has no config.json; expected a transformers model`);
  if (!present.has(WEIGHTS) && !present.has(INDEX)) throw new CheckpointError(`Hub model '${id}' (revision ${revision}) has no ${WEIGHTS} or ${INDEX}; only safetensors weights are read`);
  const get = (p: string) => hub.downloadFileToCacheDir({ ...common, repo: id, path: p, revision: sha, cacheDir });
  try {
    const config = await get('config.json');
    const dir = path.dirname(config);
    if (present.has(WEIGHTS)) {
      await get(WEIGHTS);
    } else {
      const index = JSON.parse(readFileSync(await get(INDEX), 'utf8')) as { weight_map: Record<string, string> };
      for (const shard of new Set(Object.values(index.weight_map))) await get(shard);
    }
    for (const f of OPTIONAL) if (present.has(f)) await get(f);
    const refs = path.join(cacheDir, `models--${id.replace('/', '--')}`, 'refs');
    mkdirSync(refs, { recursive: true });
    writeFileSync(path.join(refs, revision), sha);
    return dir;
  } catch (e) {
    throw offlineError(id, `the download failed (${(e as Error).message})`, e);
  }
}
