/**
 * Child process of test/hf-memory.test.ts: loads a model folder with `--dtype` f32 or keep, or keep with NF4
 * quantisation while loading ('nf4'), and prints as JSON the resident-memory growth (after GC) that the load caused
 * and its peak growth (VmHWM, reset before the load through /proc/self/clear_refs). Run with --expose-gc.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { loadHFModelFromDir } from '../../src/models/hf/index.js';
import { backend } from '../../src/backend/index.js';

const [dir, mode] = process.argv.slice(2);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const kB = (field: string): number => Number(/(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(field)) ?? '')?.[1]) * 1024;
backend(); // load the backend (and its libraries) before the baseline
gc();
writeFileSync('/proc/self/clear_refs', '5'); // the peak (VmHWM) starts again from the current RSS
const before = process.memoryUsage.rss();
const model = loadHFModelFromDir(dir, mode === 'nf4' ? { dtype: 'keep', quantize: { mode: 'nf4', skip: ['lm_head'] } } : { dtype: mode as 'f32' | 'keep' });
const peak = kB('VmHWM:');
gc();
const after = process.memoryUsage.rss();
const bytes = model.parameters().reduce((a, p) => a + p.nbytes, 0);
console.log(JSON.stringify({
  mode, rssDeltaMB: (after - before) / 2 ** 20, peakDeltaMB: (peak - before) / 2 ** 20, paramMB: bytes / 2 ** 20,
  dtypes: [...new Set(model.parameters().map((p) => p.dtype))].sort(),
}));
