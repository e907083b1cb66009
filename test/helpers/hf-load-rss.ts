/**
 * Child process of test/hf-memory.test.ts: loads a model folder with `--dtype` f32 or keep and prints the
 * resident-memory growth (after GC) that the load caused, as JSON. Run with --expose-gc.
 */
import { loadHFModelFromDir } from '../../src/models/hf/index.js';
import { backend } from '../../src/backend/index.js';

const [dir, mode] = process.argv.slice(2);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
backend(); // load the backend (and its libraries) before the baseline
gc();
const before = process.memoryUsage.rss();
const model = loadHFModelFromDir(dir, { dtype: mode as 'f32' | 'keep' });
gc();
const after = process.memoryUsage.rss();
const bytes = model.parameters().reduce((a, p) => a + p.nbytes, 0);
console.log(JSON.stringify({ mode, rssDeltaMB: (after - before) / 2 ** 20, paramMB: bytes / 2 ** 20, dtypes: [...new Set(model.parameters().map((p) => p.dtype))] }));
