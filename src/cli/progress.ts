/** Progress: a bar on a terminal (cli-progress), plain log lines otherwise. */
import cliProgress from 'cli-progress';
import type { AutoGLMTrainer } from '../train/trainer.js';
import type { StepLog, EvalLog } from '../train/history.js';

export function attachProgress(trainer: AutoGLMTrainer, quiet: boolean): () => void {
  const tty = process.stderr.isTTY && !quiet;
  let bar: cliProgress.SingleBar | null = null;
  trainer.on('note', (msg: string) => {
    if (bar) bar.stop();
    process.stderr.write(`autoglm: ${msg}\n`);
    bar = null;
  });
  trainer.on('trainBegin', (i: { totalSteps: number; trainable: number; total: number }) => {
    process.stderr.write(`autoglm: training ${i.trainable.toLocaleString('en-US')} of ${i.total.toLocaleString('en-US')} parameters for ${i.totalSteps} steps\n`);
    if (tty) {
      bar = new cliProgress.SingleBar({ format: 'train |{bar}| {value}/{total} steps | loss {loss} | lr {lr} | {eta_formatted} left', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic);
      bar.start(i.totalSteps, 0, { loss: '-', lr: '-' });
    }
  });
  trainer.on('step', (l: StepLog, total: number) => {
    if (bar) bar.update(l.step, { loss: l.loss.toFixed(4), lr: l.lr.toExponential(2) });
    else if (!quiet && (l.step % 50 === 0 || l.step === total)) process.stderr.write(`step ${l.step}/${total}  loss ${l.loss.toFixed(4)}  lr ${l.lr.toExponential(2)}  ${l.time_s.toFixed(1)} s\n`);
  });
  trainer.on('evaluate', (e: EvalLog) => {
    // the metrics the task measured: accuracy and macro-F1 (classification, multi-task), perplexity (causal LM, SFT),
    // the reward accuracy and margin (DPO; KTO: and its KL estimate)
    const pct = (name: string, v: number | undefined) => (v === undefined ? '' : `  ${name} ${(100 * v).toFixed(2)}%`);
    const line = `eval @ step ${e.step}: loss ${e.loss.toFixed(4)}${e.perplexity === undefined ? '' : `  perplexity ${e.perplexity.toFixed(3)}`}`
      + (e.rewards ? `${pct('reward accuracy', e.rewards.accuracy)}  margin ${e.rewards.margin.toFixed(4)}${e.rewards.kl === undefined ? '' : `  KL ${e.rewards.kl.toFixed(4)}`}` : `${pct('accuracy', e.accuracy)}${pct('macro-F1', e.macro_f1)}`);
    if (bar) bar.stop();
    if (!quiet) process.stderr.write(`${line}\n`);
    if (bar) bar.start(bar.getTotal(), e.step);
  });
  return () => bar?.stop();
}
