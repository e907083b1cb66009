/**
 * Side-by-side runs: our workload and a reference (torch_reference.py, or TF.js through scripts/tfjs-reference.mjs),
 * each in its own process (peak RSS is per process), alternated `repeat` times on the same machine; the figure
 * quoted is the ratio of medians.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { BenchmarkError } from '../errors.js';
import { median, r1, r3, type BenchRecord } from './measure.js';
import { openblasCoreType } from '../backend/native.js';

export interface CompareOptions {
  workload: string;
  dtype: string;
  threads: number;
  steps: number;
  warmup: number;
  repeat: number;
  torchScript: string;
  /** 'best' = OpenMP OpenBLAS with its core type set (WORKLOADS.md); 'installed' = as Debian ships it. */
  torchConfig: 'best' | 'installed';
  /** Our backend (AUTOGLM_BACKEND for our process); absent: the default choice. */
  backend?: string;
  /** More arguments for the reference script (e.g. scripts/torch-sft-reference.py's --attention sdpa). */
  torchArgs?: string[];
}

/** The workloads that time a decoder task's step (src/bench/sft-workloads.ts; their reference: scripts/torch-sft-reference.py). */
export const isDecoderTaskWorkload = (w: string): boolean => ['gpt2-lora-sft', 'gpt2-lora-sft-packed', 'gpt2-lora-dpo', 'gpt2-lora-kto'].includes(w);

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The PyTorch reference of a workload: the SFT workloads' is ours (scripts/torch-sft-reference.py), the others' is shared/bench's. */
export function defaultTorchScript(workload = ''): string {
  if (isDecoderTaskWorkload(workload)) return path.join(ROOT, 'scripts', 'torch-sft-reference.py');
  return process.env.AUTOGLM_TORCH_REFERENCE ?? path.resolve(ROOT, '..', 'shared', 'bench', 'torch_reference.py');
}

function parseLines(out: string): BenchRecord[] {
  return out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as BenchRecord);
}

/** The arguments both engines' benchmark commands take after the script: the workload and its timing. */
function workloadArgs(o: CompareOptions): string[] {
  return [o.workload, '--dtype', o.dtype, '--threads', String(o.threads), '--steps', String(o.steps), '--warmup', String(o.warmup), '--json'];
}
/** Our benchmark's command line for `o` (node's arguments), with `more` after it (the interleaved run's --serve-rounds). */
export function oursArgs(o: CompareOptions, backend = o.backend, more: string[] = []): string[] {
  return [path.join(ROOT, 'bin', 'autoglm.js'), 'bench', ...workloadArgs(o), ...more, ...(backend ? ['--backend', backend] : [])];
}
/** The reference script and its arguments for `o` (python's arguments). */
export function torchArgs(o: CompareOptions): string[] {
  return [o.torchScript, ...workloadArgs(o), ...(o.torchArgs ?? [])];
}

export function runOurs(o: CompareOptions, backend = o.backend): BenchRecord[] {
  const r = spawnSync(process.execPath, oursArgs(o, backend), { encoding: 'utf8', env: process.env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new BenchmarkError(`our benchmark failed (exit ${r.status}): ${r.stderr}`);
  return parseLines(r.stdout);
}

export const TFJS_SCRIPT = path.join(ROOT, 'scripts', 'tfjs-reference.mjs');

/** Checks that the TF.js reference can run here; returns the reason when it cannot. */
export function tfjsUnavailable(workload: string): string | null {
  if (workload !== 'block') return `the TF.js reference implements the block workload only; got '${workload}'`;
  if (!existsSync(TFJS_SCRIPT)) return `${TFJS_SCRIPT} is missing`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', "await import('@tensorflow/tfjs'); await import('@tensorflow/tfjs-backend-wasm')"],
    { encoding: 'utf8', cwd: ROOT });
  if (r.status !== 0) return '@tensorflow/tfjs and @tensorflow/tfjs-backend-wasm are not installed (npm install --save-dev @tensorflow/tfjs @tensorflow/tfjs-backend-wasm)';
  return null;
}

function runTfjs(o: CompareOptions): BenchRecord[] {
  const r = spawnSync(process.execPath, [TFJS_SCRIPT, o.workload, '--backend', 'wasm', '--threads', String(o.threads),
    '--steps', String(o.steps), '--warmup', String(o.warmup), '--json'], { encoding: 'utf8', cwd: ROOT, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new BenchmarkError(`tfjs-reference.mjs failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return parseLines(r.stdout);
}

/** The Python that runs the PyTorch references: AUTOGLM_PYTHON (a virtual environment's, say), else Debian's with python3-torch. */
export function torchPython(): string {
  return process.env.AUTOGLM_PYTHON || '/usr/bin/python3';
}

/**
 * The reference's environment. 'best': OpenBLAS's OpenMP build with the core type our own backend picks for this CPU
 * (native.ts openblasCoreType: SkylakeX where the CPU has AVX-512, Haswell on AMD and other AVX2 CPUs), or the one the
 * caller set. Haswell was the default until 2026-12-06: where no caller had loaded our backend first (it sets
 * OPENBLAS_CORETYPE as it loads: scripts/bench-dtypes.ts, `autoglm bench --threads n`), PyTorch's fp32 products ran
 * AVX2 kernels on AVX-512 CPUs (2048x768x3072 sgemm: 110 against 186-219 GFLOP/s on an Emerald Rapids).
 */
export function torchEnv(config: 'best' | 'installed'): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  if (config === 'best') {
    env.LD_LIBRARY_PATH = '/usr/lib/x86_64-linux-gnu/openblas-openmp';
    env.OPENBLAS_CORETYPE = process.env.OPENBLAS_CORETYPE ?? openblasCoreType() ?? 'Haswell';
  }
  return env;
}

export function runTorch(o: CompareOptions): BenchRecord[] {
  const r = spawnSync(torchPython(), torchArgs(o), { encoding: 'utf8', env: torchEnv(o.torchConfig), maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new BenchmarkError(`${path.basename(o.torchScript)} failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return parseLines(r.stdout);
}

/** Checks that the reference can run here; returns the reason when it cannot. */
export function torchUnavailable(script: string): string | null {
  if (!existsSync(script)) return `the reference script ${script} is missing (set AUTOGLM_TORCH_REFERENCE or --torch-script)`;
  const python = torchPython();
  const r = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
  if (r.status !== 0) return `${python} has no torch (apt-get install -y python3-torch, or set AUTOGLM_PYTHON to a Python that has it)`;
  return null;
}

export interface ComparedRow {
  workload: string;
  dtype: string;
  ours: BenchRecord;
  torch: BenchRecord;
  runs: number;
  /** ours / torch step time (< 1 is faster). */
  time_ratio: number;
  rss_ratio: number;
  gflops_ratio?: number;
}

/** Alternates ours and torch `repeat` times; per measurement, medians across runs. */
export function compare(o: CompareOptions): ComparedRow[] {
  const ours: BenchRecord[][] = [], torch: BenchRecord[][] = [];
  for (let i = 0; i < o.repeat; i++) {
    ours.push(runOurs(o));
    torch.push(runTorch(o));
  }
  return ratios(ours, torch, o.repeat);
}

/** The rows of `--vs-tfjs`: ours against TF.js's wasm backend and, when given, against our native backend. */
export interface TfjsComparison {
  tfjs: ComparedRow[];
  native: ComparedRow[] | null;
}

/**
 * Alternates ours, TF.js (wasm backend) and, with `withNative` (ours on another backend than native), our native
 * backend, `repeat` times; per measurement, medians across runs. `torch` in the rows is the reference's record.
 */
export function compareTfjs(o: CompareOptions, withNative: boolean): TfjsComparison {
  const ours: BenchRecord[][] = [], tfjs: BenchRecord[][] = [], native: BenchRecord[][] = [];
  for (let i = 0; i < o.repeat; i++) {
    ours.push(runOurs(o));
    tfjs.push(runTfjs(o));
    if (withNative) native.push(runOurs(o, 'native'));
  }
  return { tfjs: ratios(ours, tfjs, o.repeat), native: withNative ? ratios(ours, native, o.repeat) : null };
}

function ratios(ours: BenchRecord[][], torch: BenchRecord[][], runs: number): ComparedRow[] {
  const o = { repeat: runs };
  const pick = (runs: BenchRecord[][], k: number): BenchRecord => {
    const recs = runs.map((r) => r[k]);
    const m = median(recs.map((r) => r.ms_per_step));
    const base = recs.find((r) => r.ms_per_step === m) ?? recs[0];
    const g = recs.filter((r) => r.gflops !== undefined).map((r) => r.gflops as number);
    const gg = recs.filter((r) => r.gemm_gflops !== undefined).map((r) => r.gemm_gflops as number);
    // an even number of runs averages the middle two: rounded as the records are (not 5048.1005000000005)
    return { ...base, ms_per_step: r3(m), peak_rss_mb: r1(median(recs.map((r) => r.peak_rss_mb))), ...(g.length ? { gflops: r3(median(g)) } : {}),
      ...(gg.length ? { gemm_gflops: r3(median(gg)) } : {}) };
  };
  return ours[0].map((_, k) => {
    const a = pick(ours, k), b = pick(torch, k);
    const row: ComparedRow = {
      workload: a.workload, dtype: a.dtype, ours: a, torch: b, runs: o.repeat,
      time_ratio: r3(a.ms_per_step / b.ms_per_step),
      rss_ratio: r3(a.peak_rss_mb / b.peak_rss_mb),
    };
    if (a.gflops !== undefined && b.gflops !== undefined) row.gflops_ratio = r3(a.gflops / b.gflops);
    return row;
  });
}
