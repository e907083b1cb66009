/**
 * `autoglm demo`: an end-to-end training run of a small character-level GPT on text that ships with the
 * package (its own documentation), with AdamW, gradient clipping and a held-out loss. It stands for the main
 * job until the trainer (`autoglm finetune`) lands.
 */
import type { Command } from 'commander';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyThreads, intOption } from '../options.js';

interface DemoOpts { steps: number; threads?: number; seed: number; json?: boolean }

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function corpus(): string {
  const files = [path.join(ROOT, 'README.md'), ...(existsSync(path.join(ROOT, 'docs'))
    ? readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join(ROOT, 'docs', f)) : [])];
  return files.filter((f) => existsSync(f)).map((f) => readFileSync(f, 'utf8')).join('\n');
}

export function registerDemo(program: Command): void {
  program.command('demo')
    .description('train a small character-level GPT end to end on the bundled docs (the engine\'s smoke test)')
    .option('--steps <n>', 'training steps', intOption('--steps'), 300)
    .option('--threads <n>', 'kernel threads', intOption('--threads'))
    .option('--seed <n>', 'seed', intOption('--seed', 0), 0)
    .option('--json', 'print one JSON summary line last')
    .action(async (o: DemoOpts) => {
      applyThreads(o.threads);
      const { backend } = await import('../../backend/index.js');
      const { Tensor } = await import('../../tensor/tensor.js');
      const { noGrad } = await import('../../tensor/autograd.js');
      const { manualSeed } = await import('../../nn/init.js');
      const { Rng } = await import('../../backend/rng.js');
      const { AdamW } = await import('../../optim/adam.js');
      const { clipGradNorm } = await import('../../optim/clip.js');
      const { TinyGPT } = await import('../../models/tiny-gpt.js');
      const text = corpus();
      const chars = [...new Set(text)].sort();
      const stoi = new Map(chars.map((c, i) => [c, i]));
      const data = Int32Array.from(text, (c) => stoi.get(c) as number);
      const split = Math.floor(data.length * 0.9);
      const T = 64, B = 16;
      manualSeed(o.seed);
      const model = new TinyGPT({ vocabSize: chars.length, contextLength: T, dim: 128, heads: 4, layers: 2, mlpDim: 512, dropout: 0 });
      const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
      const rng = new Rng(o.seed + 1);
      const batch = (lo: number, hi: number) => {
        const x = new Int32Array(B * T), y = new Int32Array(B * T);
        for (let b = 0; b < B; b++) {
          const s = lo + rng.int(hi - lo - T - 1);
          x.set(data.subarray(s, s + T), b * T);
          y.set(data.subarray(s + 1, s + T + 1), b * T);
        }
        return [new Tensor(x, 'i32', [B, T]), new Tensor(y, 'i32', [B, T])] as const;
      };
      const evalLoss = () => noGrad(() => {
        const r = new Rng(999);
        let s = 0;
        for (let i = 0; i < 4; i++) {
          const x = new Int32Array(B * T), y = new Int32Array(B * T);
          for (let b = 0; b < B; b++) {
            const st = split + r.int(data.length - split - T - 1);
            x.set(data.subarray(st, st + T), b * T);
            y.set(data.subarray(st + 1, st + T + 1), b * T);
          }
          s += model.loss(new Tensor(x, 'i32', [B, T]), new Tensor(y, 'i32', [B, T])).item();
        }
        return s / 4;
      });
      const { trainable } = model.parameterCounts();
      console.error(`demo: ${backend().describe()}; char-level GPT, ${trainable} parameters, vocab ${chars.length}, ${data.length} characters`);
      const before = evalLoss();
      const t0 = performance.now();
      let last = 0;
      for (let step = 1; step <= o.steps; step++) {
        const [x, y] = batch(0, split);
        opt.zeroGrad();
        const loss = model.loss(x, y);
        loss.backward();
        clipGradNorm(model.parameters(), 1.0);
        opt.step();
        last = loss.item();
        if (step % 50 === 0 || step === o.steps) console.error(`step ${step}/${o.steps}  train loss ${last.toFixed(4)}`);
      }
      const secs = (performance.now() - t0) / 1e3;
      const after = evalLoss();
      model.eval();
      const prompt = 'The tensor engine';
      const gen = model.generate([...prompt].map((c) => stoi.get(c) ?? 0), 80).map((i) => chars[i]).join('');
      const summary = {
        backend: backend().name, steps: o.steps, params: trainable, heldout_loss_before: +before.toFixed(4), heldout_loss_after: +after.toFixed(4),
        train_time_s: +secs.toFixed(2), ms_per_step: +((secs * 1e3) / o.steps).toFixed(1), peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
      };
      console.log(`held-out loss ${before.toFixed(3)} -> ${after.toFixed(3)} in ${secs.toFixed(1)} s (${summary.ms_per_step} ms/step), peak RSS ${summary.peak_rss_mb} MB`);
      console.log(`sample: ${JSON.stringify(gen)}`);
      if (o.json) console.log(JSON.stringify(summary));
      if (!(after < before)) throw new Error(`demo: held-out loss did not decrease (${before} -> ${after})`);
    });
}
