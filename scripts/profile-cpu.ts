// A training step's CPU time (user, system), minor page faults and V8 collections, without the kernel timer's proxy
// (whose own cost scripts/profile-block.ts counts as time outside kernels); --prof writes a CPU profile of the timed
// steps only (open it in Chrome's DevTools). Run alternately against another tree for A/B figures on a loaded machine.
// node --import tsx scripts/profile-cpu.ts block|cls-lora|cls-full [bf16] [--steps N] [--prof out.cpuprofile]
import { PerformanceObserver } from 'node:perf_hooks';
import { Session } from 'node:inspector';
import fs from 'node:fs';
import { blockWorkload } from '../src/bench/workloads.js';
import { EncoderClassifier } from '../src/bench/model-workloads.js';
import { randint } from '../src/tensor/creation.js';
import { crossEntropy } from '../src/tensor/ops/nn.js';
import { manualSeed } from '../src/nn/init.js';
import { AdamW } from '../src/optim/adam.js';
import { LoraModel } from '../src/peft/index.js';
import { autocast } from '../src/tensor/precision.js';

const which = process.argv[2] ?? 'block';
const compute = process.argv[3] === 'bf16' ? 'bf16' : 'f32';
const arg = (k: string) => (process.argv.includes(k) ? process.argv[process.argv.indexOf(k) + 1] : undefined);
const N = Number(arg('--steps') ?? 20);
let step: () => void;
if (which === 'block') {
  const w = blockWorkload();
  step = () => { w.step(compute); };
} else {
  const lora = which === 'cls-lora';
  manualSeed(0);
  const m = new EncoderClassifier();
  if (lora) new LoraModel(m, { r: 8, alpha: 16, targetModules: ['qkv', 'proj', 'fc1', 'fc2'], modulesToSave: ['head'] });
  const idx = randint([64, 32], 8002, 1), y = randint([64], 150, 2);
  const opt = new AdamW(m.trainableParameters(), { lr: 1e-4, weightDecay: 0.01 });
  step = () => { opt.zeroGrad(); const l = autocast(compute, () => crossEntropy(m.forward(idx), y)); l.backward(); opt.step(); l.item(); };
}
for (let i = 0; i < 3; i++) step();
let gcMs = 0, gcN = 0, gcMajor = 0;
const obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) { gcMs += e.duration; gcN++; if ((e as any).detail?.kind === 4) gcMajor++; } });
obs.observe({ entryTypes: ['gc'] });
const profOut = arg('--prof');
const session = profOut ? new Session() : null;
const post = (m: string, p?: object) => new Promise<any>((res, rej) => session!.post(m, p ?? {}, (e, r) => (e ? rej(e) : res(r))));
if (session) { session.connect(); await post('Profiler.enable'); await post('Profiler.setSamplingInterval', { interval: 100 }); await post('Profiler.start'); }
const r0 = process.resourceUsage();
const t0 = performance.now();
for (let i = 0; i < N; i++) step();
const wall = performance.now() - t0;
const r1 = process.resourceUsage();
if (session) { const { profile } = await post('Profiler.stop'); fs.writeFileSync(profOut!, JSON.stringify(profile)); }
await new Promise((r) => setTimeout(r, 10));
obs.disconnect();
const per = (x: number) => (x / N).toFixed(1);
console.log(`${which} ${compute}: wall ${per(wall)} ms/step, cpu user ${per((r1.userCPUTime - r0.userCPUTime) / 1000)} sys ${per((r1.systemCPUTime - r0.systemCPUTime) / 1000)} ms/step, ` +
  `minor faults ${per(r1.minorPageFault - r0.minorPageFault)}/step, gc ${per(gcMs)} ms/step in ${(gcN / N).toFixed(1)} pauses (${(gcMajor / N).toFixed(1)} major)`);
