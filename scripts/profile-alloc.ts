// Where a training step's fresh large buffers (64 KiB and more: the ones V8 counts as external memory, whose growth
// triggers its collections) are made, per step, by call site; and the pool's reuse (tensor/alloc.ts).
// node --import tsx scripts/profile-alloc.ts block|cls-lora|cls-full|gpt2-lora|gpt2-full [bf16]
import type { Tensor } from '../src/tensor/tensor.js';
const stats = new Map<string, { n: number; bytes: number }>();
let on = false;
function site(): string {
  const st = new Error().stack!.split('\n').slice(2);
  const f = st.filter((l) => l.includes('/src/') && !l.includes('alloc.ts') && !l.includes('backend.ts')).slice(0, Number(process.env.ALLOC_FRAMES ?? 2));
  return f.map((l) => l.trim().replace(/^at /, '').replace(/\(?(file:\/\/)?\/.*?\/src\//, '').replace(/\)$/, '')).join(' < ');
}
function note(bytes: number) {
  if (!on || bytes < 65536) return;
  const k = site();
  const s = stats.get(k) ?? { n: 0, bytes: 0 };
  s.n++; s.bytes += bytes; stats.set(k, s);
}
const B = (globalThis as any).Buffer;
const orig = B.allocUnsafeSlow.bind(B);
B.allocUnsafeSlow = (n: number) => { note(n); return orig(n); };
for (const name of ['Float32Array', 'Uint16Array', 'Int32Array', 'Uint8Array'] as const) {
  const Base = (globalThis as any)[name];
  const Sub = class extends Base { constructor(...a: any[]) { super(...a); if (typeof a[0] === 'number') note(a[0] * Base.BYTES_PER_ELEMENT); } };
  Object.defineProperty(Sub, 'name', { value: name });
  (globalThis as any)[name] = Sub;
}
const which = process.argv[2] ?? 'block';
const gpt2 = which.startsWith('gpt2'); // steps of seconds: fewer of them
const dtype = process.argv[3] === 'bf16' ? 'bf16' : 'f32';
let step: () => void;
if (which === 'block') {
  const { blockWorkload } = await import('../src/bench/workloads.js');
  const w = blockWorkload();
  step = () => w.step(dtype);
} else {
  const { randint } = await import('../src/tensor/creation.js');
  const { manualSeed } = await import('../src/nn/init.js');
  const { AdamW } = await import('../src/optim/adam.js');
  const { LoraModel } = await import('../src/peft/index.js');
  const { autocast } = await import('../src/tensor/precision.js');
  manualSeed(0);
  let loss: () => Tensor;
  let params: Tensor[];
  if (gpt2) {
    const { TinyGPT } = await import('../src/models/tiny-gpt.js');
    const m = new TinyGPT({ vocabSize: 50257, contextLength: 1024, dim: 768, heads: 12, layers: 12, mlpDim: 3072 });
    if (which === 'gpt2-lora') new LoraModel(m, { r: 8, alpha: 16, targetModules: ['qkv'] });
    const idx = randint([8, 128], 50257, 1), y = randint([8, 128], 50257, 2);
    loss = () => m.loss(idx, y);
    params = m.trainableParameters();
  } else {
    const { EncoderClassifier } = await import('../src/bench/model-workloads.js');
    const { crossEntropy } = await import('../src/tensor/ops/nn.js');
    const m = new EncoderClassifier();
    if (which === 'cls-lora') new LoraModel(m, { r: 8, alpha: 16, targetModules: ['qkv', 'proj', 'fc1', 'fc2'], modulesToSave: ['head'] });
    const idx = randint([64, 32], 8002, 1), y = randint([64], 150, 2);
    loss = () => crossEntropy(m.forward(idx), y);
    params = m.trainableParameters();
  }
  const opt = new AdamW(params, { lr: 1e-4, weightDecay: 0.01 });
  step = () => { opt.zeroGrad(); const l = autocast(dtype, loss); l.backward(); opt.step(); l.item(); };
}
const { poolStats } = await import('../src/tensor/alloc.js');
const N = gpt2 ? 2 : 5, WARMUP = gpt2 ? 2 : 3;
for (let i = 0; i < WARMUP; i++) step();
poolStats(true);
on = true;
for (let i = 0; i < N; i++) step();
on = false;
const rows = [...stats.entries()].sort((a, b) => b[1].bytes - a[1].bytes);
let tot = 0, cnt = 0;
for (const [, s] of rows) { tot += s.bytes; cnt += s.n; }
const ps = poolStats();
console.log(`${which} ${dtype}: fresh ${(tot / N / 2 ** 20).toFixed(1)} MB/step in ${cnt / N} buffers; pool: ${ps.hits / N} reused, ${ps.released / N} released, ${ps.dropped / N} dropped per step, ${(ps.bytes / 2 ** 20).toFixed(1)} MB held`);
for (const [k, s] of rows.slice(0, 40)) console.log(`${(s.bytes / N / 2 ** 20).toFixed(2).padStart(7)} MB ${String(s.n / N).padStart(5)}x ${k}`);
