/**
 * One data-parallel rank of a short fine-tune (test/data-parallel.test.ts). Run as a local worker (runLocal, args
 * in workerData) or as a process (AUTOGLM_* env, args as JSON in argv[2]). Writes rank-<r>.json into args.dir:
 * a checksum of the trainable parameters after every step, the final parameters and the communication summary.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { isMainThread, workerData } from 'node:worker_threads';
import { AutoGLMTrainer } from '../../src/train/index.js';
import { currentRankInfo } from '../../src/distributed/env.js';
import type { TrainerConfigInput } from '../../src/train/config.js';

interface Args {
  dir: string; config: TrainerConfigInput; maxTrain: number; runDir?: string; maxEval?: number;
  /** This rank's run gets a signal, aborted by a timer once step `stopAfter` ends (so during the validation after it). */
  stopRank?: number; stopAfter?: number;
}
const args: Args = isMainThread ? JSON.parse(process.argv[2] as string) : (workerData as { args: Args }).args;
const rank = currentRankInfo().rank;
const trainer = new AutoGLMTrainer({ config: { ...args.config, outputDir: args.runDir ?? path.join(args.dir, 'run') } });
trainer.on('note', () => {});
const sums: number[][] = [];
const snapshot = () => [...(trainer.classifier?.namedParameters() ?? [])].filter(([, t]) => t.requiresGrad).map(([, t]) => Array.from(t.f32()));
const ctl = args.stopRank === rank ? new AbortController() : null;
const h = await trainer.finetune({
  dataset: 'custom_intent_v2', maxTrain: args.maxTrain, maxEval: args.maxEval ?? 40, ...(ctl ? { signal: ctl.signal } : {}),
  callbacks: [{ onBatchEnd: (step: number) => {
    sums.push(snapshot().map((a) => a.reduce((x, y) => x + y, 0)));
    if (ctl && step === args.stopAfter) setTimeout(() => ctl.abort(), 0);
  } }],
});
writeFileSync(path.join(args.dir, `rank-${rank}.json`), JSON.stringify({ rank, sums, params: snapshot(), communication: h.communication, test: h.test?.accuracy, steps: h.steps.map((s) => s.loss),
  interrupted: h.interrupted ?? null, evals: h.evals.map((e) => [e.step, e.loss]) }));
