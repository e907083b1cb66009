/**
 * The block workload trained through the tensor layer on WebGPU (bundled by test/webgpu-block.test.ts): the same
 * model, data and SGD steps as src/bench/block.ts, parameters and activations on the device, the loss read back once
 * a step (`await loss.value()`, the design's logging point).
 */
import { webgpuInBrowser } from '../../src/backend/webgpu/index.js';
import { profileTrace } from '../../src/backend/webgpu/device.js';
import { useWebGpu, moveToDevice } from '../../src/backend/webgpu/tensors.js';
import { blockWorkload } from '../../src/bench/block.js';
import { initBrowserBackend } from '../../src/backend/index.browser.js';
import { gradNorm } from '../../src/optim/clip.js';
import { embedding } from '../../src/tensor/ops/nn.js';
import { Tensor } from '../../src/tensor/tensor.js';

export interface BlockReport {
  adapter: string | null;
  losses: number[];
  ms: number[];
  /** Typed arrays uploaded as kernel inputs in the last step (targets and small constants; no weights). */
  uploadsLastStep: number;
  /** What a synchronous read of a device tensor threw (a DeviceError is expected). */
  syncRead: string;
  /** What CPU-only paths threw on device tensors, by what was tried (DeviceErrors naming the op are expected). */
  cpuOnly: Record<string, string>;
  onDevice: boolean;
  /** The backend initBrowserBackend() picks by default in this page (WebGPU where an adapter exists). */
  selected: string;
  /** With `profile`: one more step's dispatches timed one at a time, by kernel (ms), and that step's dispatch count. */
  profile?: { kernel: string; dispatches: number; ms: number }[];
}

async function run(arg: { steps: number; batch: number; lr: number; profile?: boolean; matmul?: 'tiled' | 'direct' }): Promise<BlockReport> {
  const G = await webgpuInBrowser();
  if (!G) return { adapter: null, losses: [], ms: [], uploadsLastStep: 0, syncRead: '', cpuOnly: {}, onDevice: false, selected: '' };
  const selected = (await initBrowserBackend()).name;
  if (arg.matmul) G.ctx.matmulVariant = arg.matmul;
  const b = useWebGpu(G);
  const w = blockWorkload(arg.lr, { batch: arg.batch });
  moveToDevice([...w.params, w.x]);
  const losses: number[] = [], ms: number[] = [];
  let uploadsLastStep = 0;
  let last = w.x;
  for (let i = 0; i < arg.steps; i++) {
    const t0 = performance.now();
    b.uploads = 0;
    const loss = w.stepTensor('f32');
    uploadsLastStep = b.uploads;
    losses.push(await loss.value());
    ms.push(Math.round(performance.now() - t0));
    last = loss;
  }
  let profile: BlockReport['profile'];
  if (arg.profile) {
    G.ctx.trace = [];
    await w.stepTensor('f32').value();
    const trace = G.ctx.trace;
    G.ctx.trace = null;
    profile = await profileTrace(G.ctx, trace);
  }
  let syncRead = 'nothing thrown';
  try {
    last.item();
  } catch (e) {
    syncRead = `${(e as Error).name}: ${(e as Error).message}`;
  }
  const cpuOnly: Record<string, string> = {};
  const attempt = (what: string, fn: () => unknown): void => {
    try {
      fn();
      cpuOnly[what] = 'nothing thrown';
    } catch (e) {
      cpuOnly[what] = `${(e as Error).name}: ${(e as Error).message}`;
    }
  };
  const p = w.params[0];
  attempt('toArray', () => p.toArray());
  attempt('gradNorm', () => gradNorm(w.params));
  attempt('embedding', () => embedding(new Tensor(b.alloc('i32', 4), 'i32', [4]), w.params[0].reshape([-1, 256])));
  attempt('Float32Array.from', () => Float32Array.from(p.f32()));
  return { adapter: b.describe(), selected, profile, losses, ms, uploadsLastStep, syncRead, cpuOnly, onDevice: w.params.every((p) => p.onDevice) && last.onDevice };
}

(globalThis as unknown as { runBlock: typeof run }).runBlock = run;
