/**
 * bf16 autocast follows the same loss trajectory as before the bf16 speed work (#17: cached weight copies, the
 * fused LoRA product) and as fp32, within bf16 tolerance. The stored fp32 trajectories were measured at 5f6468a (before
 * that work) with the native backend on AVX512-BF16 (oneDNN brg:avx512_core_bf16). The stored bf16 ones were too, and
 * stayed bit-identical until attention's products moved to bf16 (ops/attention-bf16.ts, as PyTorch's autocast runs
 * them) where the backend has `nativeBf16` and the sequence is long enough (BF16_ATTENTION_MIN_T): the block's runs are
 * then checked against bf16Attention, measured on the same CPU (within 3e-5 of the old values). Without bf16 hardware
 * the old stored ones apply, and so for cls-lora (T = 32: attention stays f32; bit-identical to the old values on
 * AVX512-BF16). Other ISAs (AMX, AVX512_CORE) and backends accumulate in another order, hence the tolerances.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockTrajectory, clsLoraTrajectory } from './helpers/trajectories.js';
import { backend } from '../src/backend/index.js';

const STORED = {
  block: {
    // attention in f32 (a backend without nativeBf16), then with its products in bf16 (nativeBf16)
    bf16: [6.398352146148682, 6.366596698760986, 6.334939479827881, 6.3033833503723145, 6.271659851074219, 6.240070343017578],
    bf16Attention: [6.398324489593506, 6.366653919219971, 6.3349761962890625, 6.303382396697998, 6.271682262420654, 6.240067958831787],
    f32: [6.398309707641602, 6.3666090965271, 6.3349432945251465, 6.303309440612793, 6.271707057952881, 6.240133285522461],
  },
  clsLora: {
    bf16: [5.027530670166016, 4.08498477935791, 2.6851584911346436, 2.4963154792785645, 2.192147731781006, 1.5781112909317017],
    f32: [5.027449607849121, 4.085385322570801, 2.6845619678497314, 2.491666555404663, 2.1834716796875, 1.5640580654144287],
  },
};

function close(got: number[], want: number[], tol: number, what: string): void {
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= tol, `${what} step ${i + 1}: ${v} against ${want[i]} (tolerance ${tol}); all: ${JSON.stringify(got)}`));
}

test('block workload (full training, SGD): bf16 loss trajectory as stored and as fp32', () => {
  const run = blockTrajectory;
  const bf16 = run('bf16');
  close(bf16, backend().nativeBf16 ? STORED.block.bf16Attention : STORED.block.bf16, 2e-3, 'bf16 against the stored bf16 trajectory');
  close(bf16, STORED.block.f32, 2e-3, 'bf16 against the stored fp32 trajectory');
  close(run('f32'), STORED.block.f32, 1e-4, 'fp32 against the stored fp32 trajectory');
});

test('cls-lora (LoRA on qkv, proj, fc1, fc2; AdamW): bf16 loss trajectory as stored and as fp32', () => {
  const run = clsLoraTrajectory;
  const bf16 = run('bf16');
  close(bf16, STORED.clsLora.bf16, 1e-2, 'bf16 against the stored bf16 trajectory');
  close(bf16, STORED.clsLora.f32, 3e-2, 'bf16 against the stored fp32 trajectory');
  close(run('f32'), STORED.clsLora.f32, 1e-3, 'fp32 against the stored fp32 trajectory');
});
