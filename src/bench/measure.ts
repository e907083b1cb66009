/** Timing and reporting shared by the benchmark workloads: the same JSON fields as torch_reference.py. */
import { backend } from '../backend/index.js';

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

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs `fn` warmup times, then times `steps` runs: seconds (median, min, max). */
export function timed(fn: () => void, steps: number, warmup: number): { med: number; lo: number; hi: number } {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    fn();
    ts.push((performance.now() - t0) / 1e3);
  }
  return { med: median(ts), lo: Math.min(...ts), hi: Math.max(...ts) };
}

const r3 = (x: number) => Math.round(x * 1e3) / 1e3;

export function makeRecord(workload: string, dtype: string, t: { med: number; lo: number; hi: number }, extra: Partial<BenchRecord> = {}): BenchRecord {
  return {
    engine: `open-autoglm-${backend().name}`,
    workload,
    dtype,
    threads: backend().numThreads(),
    ms_per_step: r3(t.med * 1e3),
    ms_min: r3(t.lo * 1e3),
    ms_max: r3(t.hi * 1e3),
    peak_rss_mb: Math.round(peakRssMb() * 10) / 10,
    ...extra,
  };
}
