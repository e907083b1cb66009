/**
 * `autoglm web`: serves the fine-tuning page (examples/browser) with the headers that make it cross-origin
 * isolated (threaded wasm kernels), and prints its URL. `--headless-run` instead runs the main job (LoRA on
 * custom_intent_v2, the trainer's defaults) in that page in headless Chromium and prints test accuracy, time and memory.
 */
import type { Command } from 'commander';
import { intOption } from '../options.js';

interface WebOpts {
  port: number;
  host: string;
  isolation: boolean;
  rebuild?: boolean;
  headlessRun?: boolean;
  maxTrain?: number;
  maxEval?: number;
  threads?: number;
  json?: boolean;
}

export function registerWeb(program: Command): void {
  program.command('web')
    .description('serve the in-browser fine-tuning page (COOP/COEP set, so the wasm kernels run threaded); --headless-run runs the main job in headless Chromium')
    .option('--port <n>', 'port', intOption('--port', 0, 65535), 8080)
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--no-isolation', 'leave out COOP/COEP (the page then runs the single-threaded kernels)')
    .option('--rebuild', 'rebuild the browser bundles (dist/web) first')
    .option('--headless-run', 'run the main job in the page in headless Chromium (needs chromium and playwright-core) and print accuracy, time, memory')
    .option('--max-train <n>', 'with --headless-run: at most n training examples (seeded subset, as finetune --max-train)', intOption('--max-train'))
    .option('--max-eval <n>', 'with --headless-run: at most n validation/test examples', intOption('--max-eval'))
    .option('--threads <n>', 'with --headless-run: kernel threads in the page (default: the browser\'s hardwareConcurrency)', intOption('--threads'))
    .option('--json', 'with --headless-run: one JSON summary line last')
    .action(async (o: WebOpts) => {
      if (o.headlessRun) {
        const { headlessMainJob } = await import('../../web/headless.js');
        const r = await headlessMainJob({ maxTrain: o.maxTrain, maxEval: o.maxEval, threads: o.threads, isolate: o.isolation, rebuild: o.rebuild, say: (l) => process.stderr.write(`${l}\n`) });
        const t = r.summary.test;
        console.log(`browser (headless Chromium, ${r.backend.replace(/^backend: /, '')}): ${r.summary.steps} steps`);
        console.log(t ? `test accuracy ${(100 * t.accuracy).toFixed(2)}%  macro-F1 ${(100 * t.macro_f1).toFixed(2)}%  (${t.n} examples)` : 'no test split');
        console.log(`train time ${r.summary.trainTimeS.toFixed(1)} s (page load to result ${r.wallS.toFixed(1)} s); peak RSS of the page's renderer process ${r.rendererPeakMb ?? '?'} MB, `
          + `all browser processes ${r.browserPeakSumMb ?? '?'} MB; wasm memory ${r.summary.memoryMb.wasm ?? '?'} MB`);
        if (o.json) console.log(JSON.stringify({ command: 'web --headless-run', accuracy: t?.accuracy, macro_f1: t?.macro_f1, n: t?.n, steps: r.summary.steps, trainTimeS: r.summary.trainTimeS,
          wallS: r.wallS, rendererPeakMb: r.rendererPeakMb, browserPeakSumMb: r.browserPeakSumMb, wasmMb: r.summary.memoryMb.wasm, backend: r.backend }));
        return;
      }
      const { startWebServer } = await import('../../web/server.js');
      const s = await startWebServer({ port: o.port, host: o.host, isolate: o.isolation, rebuild: o.rebuild });
      console.log(`open-autoglm page: ${s.url}  (cross-origin isolated: ${o.isolation ? 'yes' : 'no'}; Ctrl-C stops)`);
      await new Promise<void>((ok) => s.server.on('close', ok));
    });
}
