/** Timing and reporting shared by the benchmark workloads: the same JSON fields as torch_reference.py. */
import { readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { backend } from '../backend/index.js';
import { collectNow } from '../backend/gc.js';
import { BenchmarkError } from '../errors.js';

export interface BenchRecord {
  engine: string;
  workload: string;
  dtype: string;
  threads: number;
  ms_per_step: number;
  ms_min: number;
  ms_max: number;
  peak_rss_mb: number;
  tokens_per_s?: number;
  gflops?: number;
  trainable_params?: number;
  total_params?: number;
  [key: string]: unknown;
}

export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/**
 * Resets the kernel's peak-RSS counter of this process (Linux: VmHWM, through /proc/self/clear_refs), so that
 * `trainPeakRssMb` reports the peak of what runs afterwards. A no-op elsewhere.
 */
export function resetPeakRss(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // not Linux, or not permitted: trainPeakRssMb then reports the process peak
  }
}

/** A `/proc/self/status` field in kB (VmHWM, VmRSS), or null where /proc is absent. */
function procStatusKb(field: string): number | null {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Peak RSS (MB) since the last resetPeakRss (VmHWM), or the process peak where /proc is absent. */
export function trainPeakRssMb(): number {
  const kb = procStatusKb('VmHWM');
  return kb !== null ? Math.round(kb / 102.4) / 10 : Math.round(peakRssMb() * 10) / 10;
}

/**
 * A full collection (see backend/gc.ts; installed on demand, as a model quantised in JavaScript may get here
 * before any kernel ran), so dead set-up buffers are not counted. V8 releases the memory of dead ArrayBuffers
 * after the collection, not during it, so this waits until the resident size stops falling (at most ~2 s):
 * measured otherwise, a quantised model's f32 set-up weights could still be resident when the peak counter is
 * reset (gpt2-lora, int8 base, checkpointing: 645 MB read instead of 419).
 */
export function collectGarbage(): void {
  collectNow();
  const nap = new Int32Array(new SharedArrayBuffer(4));
  let last = procStatusKb('VmRSS');
  for (let i = 0; i < 40 && last !== null; i++) {
    Atomics.wait(nap, 0, 0, 50);
    collectNow();
    const now = procStatusKb('VmRSS');
    if (now === null || last - now < 1024) break;
    last = now;
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Runs `fn` warmup times, then times `steps` runs: seconds (median, min, max). In a process that an interleaved run
 * drives (`serveRounds`), the timed runs are the rounds it asks for instead.
 */
export function timed(fn: () => void, steps: number, warmup: number): { med: number; lo: number; hi: number } {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  if (serving) {
    serveRoundsOn(fn, ts);
  } else {
    for (let i = 0; i < steps; i++) ts.push(timeMs(fn) / 1e3);
  }
  return { med: median(ts), lo: Math.min(...ts), hi: Math.max(...ts) };
}

function timeMs(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

let serving = false;
/**
 * Makes `timed` serve rounds over stdin and stdout (`autoglm bench --serve-rounds`, started by an interleaved run,
 * src/bench/rounds.ts): after the warm-up it writes the line `ROUNDS READY`, then for each line `n` it reads it runs n
 * steps and writes their times (ms) as a JSON array on one line; a line `0` (or the end of stdin) ends the
 * measurement, whose record is made from every step its rounds ran.
 */
export function serveRounds(on: boolean): void {
  serving = on;
}
function serveRoundsOn(fn: () => void, into: number[]): void {
  writeSync(1, 'ROUNDS READY\n');
  for (;;) {
    const n = Number(readStdinLine());
    if (!(n > 0)) break;
    const ms = Array.from({ length: n }, () => timeMs(fn));
    writeSync(1, `${JSON.stringify(ms)}\n`);
    for (const t of ms) into.push(t / 1e3);
  }
  if (!into.length) throw new BenchmarkError('an interleaved run ended a measurement before its first round');
}
let stdinRest = '';
/** The next line of stdin, read synchronously (the process has nothing else to do meanwhile); '' at its end. */
function readStdinLine(): string {
  const buf = Buffer.alloc(256);
  while (!stdinRest.includes('\n')) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      // a non-blocking pipe: wait for the coordinator without spinning (the other engine is running)
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
        continue;
      }
      throw e;
    }
    if (n === 0) return stdinRest.split('\n')[0];
    stdinRest += buf.toString('utf8', 0, n);
  }
  const i = stdinRest.indexOf('\n');
  const line = stdinRest.slice(0, i);
  stdinRest = stdinRest.slice(i + 1);
  return line;
}

/** Rounded to 3 decimals (times in ms, ratios) and to 1 (MB, tokens/s), as the records print them. */
export const r3 = (x: number) => Math.round(x * 1e3) / 1e3;
export const r1 = (x: number) => Math.round(x * 10) / 10;

export function makeRecord(workload: string, dtype: string, t: { med: number; lo: number; hi: number }, extra: Partial<BenchRecord> = {}): BenchRecord {
  return {
    engine: `open-autoglm-${backend().name}`,
    workload,
    dtype,
    threads: backend().numThreads(),
    ms_per_step: r3(t.med * 1e3),
    ms_min: r3(t.lo * 1e3),
    ms_max: r3(t.hi * 1e3),
    peak_rss_mb: r1(peakRssMb()),
    ...extra,
  };
}
