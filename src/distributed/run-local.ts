/**
 * `runLocal(nproc, entry)`: runs `entry` (a module path or URL) in `nproc` worker threads that form one local group,
 * like torchrun for threads. Each worker gets workerData `LocalWorkerData` (rank, world size, its part of the group,
 * the caller's args) and an environment with `AUTOGLM_NUM_THREADS` = `OMP_NUM_THREADS` = threads per rank, so the
 * native backend, which reads AUTOGLM_NUM_THREADS when it loads in the worker, sets its kernel threads.
 *
 * Threads per rank, as measured with this addon: OpenMP's thread count (omp_set_num_threads) is per calling thread,
 * but the addon's own count (`g_threads` in native/addon.cc, used for its `num_threads(nt)` clauses and `info()`) and
 * OpenBLAS's count (openblas_set_num_threads) are process-global. So the last worker to call setNumThreads wins for
 * all; runLocal gives every rank the same value, which keeps that consistent, but it also leaves that value in the
 * parent's addon if the parent had loaded it. Per-rank values would need `thread_local` for g_threads in addon.cc.
 *
 * Worker output is piped to the parent line by line with a `[rank N] ` prefix. When a rank fails (an uncaught
 * error, or exiting with a non-zero code) the group is aborted, so the others' collectives throw a
 * CommunicationError at once; they get `graceMs` to end on their own, then are terminated, and the promise rejects
 * with a `RankFailedError` naming the first rank that failed.
 */
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Writable } from 'node:stream';
import { CommunicationError } from '../errors.js';
import { LocalGroup, type LocalGroupData } from './local.js';

/** workerData of a runLocal worker. */
export interface LocalWorkerData {
  kind: 'autoglm-local-worker';
  rank: number;
  worldSize: number;
  threads: number;
  group: LocalGroupData;
  args: unknown;
}

export interface RunLocalOptions {
  /** Passed to every worker as workerData.args (structured-cloneable). */
  args?: unknown;
  /** Collective timeout (default LOCAL_DEFAULTS.timeoutMs). */
  timeoutMs?: number;
  /** Kernel threads per rank (default max(1, floor(cores / nproc))). */
  threadsPerRank?: number;
  /** After a rank fails, how long the others get to end on their own before terminate() (default 1000 ms). */
  graceMs?: number;
  /** Where prefixed worker output goes (default process.stdout / process.stderr). */
  stdout?: Writable;
  stderr?: Writable;
  /** Prefix each output line with `[rank N] ` (default true). */
  prefix?: boolean;
  /**
   * Once aborted, each worker is asked to stop gracefully (the message `{ type: 'autoglm-stop', signal: reason }`,
   * which `autoglm finetune` in a rank turns into a stop after the step under way, with a checkpoint:
   * src/cli/interrupt.ts); from then on a rank that exits with 130 or 143 (interrupted) has not failed.
   */
  stop?: AbortSignal;
}

export interface RankExit {
  rank: number;
  exitCode: number;
}

/** A rank of a local run that failed: its error or exit code, by rank. */
export class RankFailedError extends CommunicationError {
  constructor(readonly rank: number, readonly exitCode: number, readonly detail: string, options?: { cause?: unknown }) {
    super(`rank ${rank} failed (exit code ${exitCode}): ${detail}`, options);
  }
}

/** max(1, floor(cores / nproc)). */
export function threadsPerRank(nproc: number): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.floor(cores / nproc));
}

export async function runLocal(nproc: number, entry: string | URL, opts: RunLocalOptions = {}): Promise<RankExit[]> {
  if (!Number.isInteger(nproc) || nproc < 1) throw new CommunicationError(`Argument 'nproc' passed to 'runLocal' is ${nproc}; expected an integer >= 1`);
  const threads = opts.threadsPerRank ?? threadsPerRank(nproc);
  if (!Number.isInteger(threads) || threads < 1) throw new CommunicationError(`Option 'threadsPerRank' passed to 'runLocal' is ${threads}; expected an integer >= 1`);
  const entryUrl = entry instanceof URL ? entry : entry.startsWith('file:') ? new URL(entry) : pathToFileURL(path.resolve(entry));
  const group = new LocalGroup(nproc, { timeoutMs: opts.timeoutMs });
  const boot = bootstrap(entryUrl);
  const graceMs = opts.graceMs ?? 1000;
  const prefix = opts.prefix ?? true;
  const env = { ...process.env, AUTOGLM_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };

  return new Promise<RankExit[]>((resolve, reject) => {
    const exits: (RankExit | null)[] = Array.from({ length: nproc }, () => null);
    const errors: (Error | null)[] = Array.from({ length: nproc }, () => null);
    let failure: RankFailedError | null = null;
    let killTimer: NodeJS.Timeout | null = null;
    const workers: Worker[] = [];

    const fail = (rank: number, code: number, detail: string, cause?: unknown): void => {
      if (failure) return;
      failure = new RankFailedError(rank, code, detail, { cause });
      group.abort(rank, `rank ${rank} ${cause ? `failed (${detail})` : `exited (code ${code})`}`);
      killTimer = setTimeout(() => { for (const w of workers) void w.terminate(); }, graceMs);
    };
    const finish = (): void => {
      if (exits.some((e) => e === null)) return;
      if (killTimer) clearTimeout(killTimer);
      if (failure) reject(failure);
      else resolve(exits as RankExit[]);
    };

    for (let rank = 0; rank < nproc; rank++) {
      const { data, transferList } = group.take(rank);
      const workerData: LocalWorkerData = { kind: 'autoglm-local-worker', rank, worldSize: nproc, threads, group: data, args: opts.args };
      const w = new Worker(boot.code, {
        eval: true, workerData, transferList, env, execArgv: boot.execArgv, stdout: true, stderr: true,
      });
      workers.push(w);
      pipeLines(w.stdout, opts.stdout ?? process.stdout, prefix ? `[rank ${rank}] ` : '');
      pipeLines(w.stderr, opts.stderr ?? process.stderr, prefix ? `[rank ${rank}] ` : '');
      w.on('error', (e: Error) => {
        errors[rank] = e;
        fail(rank, 1, `${e?.name ?? 'Error'}: ${e?.message ?? String(e)}`, e);
      });
      w.on('exit', (code) => {
        group.markExited(rank, code);
        exits[rank] = { rank, exitCode: code };
        const interrupted = opts.stop?.aborted && (code === 130 || code === 143);
        if (code !== 0 && !errors[rank] && !interrupted) fail(rank, code, `exited with code ${code}`);
        finish();
      });
    }
    opts.stop?.addEventListener('abort', () => {
      for (const w of workers) w.postMessage({ type: 'autoglm-stop', signal: String(opts.stop!.reason ?? 'SIGTERM') });
    }, { once: true });
  });
}

/**
 * The code each worker starts with: registers tsx when the entry (or this process) runs TypeScript through it,
 * since Node 20 workers do not apply `--import tsx` from execArgv, then imports the entry.
 */
function bootstrap(entry: URL): { code: string; execArgv: string[] } {
  const execArgv: string[] = [];
  let tsx = /\.[cm]?ts$/.test(entry.pathname);
  for (let i = 0; i < process.execArgv.length; i++) {
    const a = process.execArgv[i]!;
    const spec = a === '--import' || a === '--loader' || a === '--experimental-loader' ? process.execArgv[i + 1] : /^--(import|loader|experimental-loader)=(.*)$/.exec(a)?.[2];
    if (spec !== undefined && /(^|\/)tsx(\/|$)/.test(spec)) {
      tsx = true;
      if (!a.includes('=')) i++;
      continue;
    }
    execArgv.push(a);
  }
  let register = '';
  if (tsx) {
    let api: string;
    try {
      api = import.meta.resolve('tsx/esm/api');
    } catch (e) {
      throw new CommunicationError(`entry '${entry.href}' passed to 'runLocal' is TypeScript but the tsx package cannot be found; install tsx or run the compiled .js`, { cause: e });
    }
    register = `(await import(${JSON.stringify(api)})).register();\n`;
  }
  return { code: `${register}await import(${JSON.stringify(entry.href)});\n`, execArgv };
}

/** Copies a worker's or child's stream to `out` line by line, each line prefixed. */
export function pipeLines(src: NodeJS.ReadableStream, out: Writable, prefix: string): void {
  let rest = '';
  src.setEncoding('utf8');
  src.on('data', (chunk: string) => {
    const text = rest + chunk;
    const lines = text.split('\n');
    rest = lines.pop()!;
    if (lines.length) out.write(lines.map((l) => `${prefix}${l}\n`).join(''));
  });
  src.on('end', () => {
    if (rest) out.write(`${prefix}${rest}\n`);
    rest = '';
  });
}
