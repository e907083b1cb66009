// Per-kernel time of the block workload step: node --import tsx scripts/profile-block.ts [bf16] [--steps N]
// The backend as everywhere: AUTOGLM_BACKEND=native|wasm|portable, AUTOGLM_NUM_THREADS=n.
import { backend } from '../src/backend/index.js';
import { blockWorkload } from '../src/bench/workloads.js';
import { castCacheCounts } from '../src/tensor/versions.js';
import { installKernelTimer, now } from './kernel-timer.js';

const timer = installKernelTimer();
console.log(backend().describe());
const dtype = process.argv[2] === 'bf16' ? 'bf16' : 'f32';
const w = blockWorkload();
for (let i = 0; i < 3; i++) w.step(dtype);
timer.clear();
castCacheCounts(true);
const N = process.argv.includes('--steps') ? Number(process.argv[process.argv.indexOf('--steps') + 1]) : 10;
const t0 = now();
for (let i = 0; i < N; i++) w.step(dtype);
timer.report(`block ${dtype}`, (now() - t0) / N, N);
const cc = castCacheCounts();
console.log(`weight copies per step: ${cc.hits / N} reused, ${cc.misses / N} made`);
