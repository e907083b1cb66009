/** `autoglm bench WORKLOAD`: the reference workloads, alone or side by side with PyTorch (--vs-torch). */
import type { Command } from 'commander';
import { ConfigError } from '../../errors.js';
import type { GradientCheckpointing } from '../../nn/checkpoint.js';
import { applyThreads, choiceOption, intOption } from '../options.js';

interface BenchOpts {
  dtype: 'fp32' | 'bf16';
  threads?: number;
  steps: number;
  warmup: number;
  json?: boolean;
  vsTorch?: boolean;
  repeat: number;
  torchScript?: string;
  torchConfig: 'best' | 'installed';
  base: 'none' | 'bf16' | 'int8';
  checkpointing?: GradientCheckpointing;
  method?: string;
  source: 'lora' | 'full';
}

export function registerBench(program: Command): void {
  program.command('bench')
    .description('time a reference workload of shared/bench/WORKLOADS.md (gemm, block, gpt2-forward, gpt2-lora, gpt2-full, cls-lora, cls-full)')
    .argument('<workload>', 'gemm | block | gpt2-forward | gpt2-lora | gpt2-full | cls-lora | cls-full | compression')
    .option('--dtype <dtype>', 'fp32 | bf16', choiceOption('--dtype', ['fp32', 'bf16'] as const), 'fp32')
    .option('--threads <n>', 'kernel threads (default: all cores)', intOption('--threads'))
    .option('--steps <n>', 'timed steps (median reported)', intOption('--steps'), 10)
    .option('--warmup <n>', 'untimed warm-up steps', intOption('--warmup', 0), 3)
    .option('--json', 'one JSON line per measurement (the fields of torch_reference.py)')
    .option('--vs-torch', 'also run ../shared/bench/torch_reference.py in the same run and print ratios')
    .option('--repeat <n>', 'with --vs-torch: alternate the two engines n times, medians across runs', intOption('--repeat'), 3)
    .option('--torch-script <path>', 'path of torch_reference.py')
    .option('--base <dtype>', 'LoRA workloads: frozen base storage none | bf16 | int8', choiceOption('--base', ['none', 'bf16', 'int8'] as const), 'none')
    .option('--checkpointing [mode]', "gpt2 workloads: recompute activations in the backward pass: full (each block's, the default) | mlp (the MLP pre-activations)", choiceOption('--checkpointing', ['full', 'mlp'] as const))
    .option('--method <m>', 'compression: one gradient compression method (default: all)')
    .option('--source <s>', 'compression: gradients of a lora | full fine-tune step', choiceOption('--source', ['lora', 'full'] as const), 'lora')
    .option('--torch-config <cfg>', "PyTorch's configuration: best | installed", choiceOption('--torch-config', ['best', 'installed'] as const), 'best')
    .action(async (workload: string, o: BenchOpts) => {
      applyThreads(o.threads);
      if (workload === 'compression') {
        const { runCompressionBench, formatCompressionTable } = await import('../../bench/compression.js');
        const recs = await runCompressionBench({ source: o.source, method: o.method, repeats: o.steps, batchSize: 32 });
        console.log(o.json ? recs.map((r) => JSON.stringify(r)).join('\n') : formatCompressionTable(recs));
        return;
      }
      const { runWorkload, WORKLOADS } = await import('../../bench/workloads.js');
      if (!WORKLOADS[workload]) throw new ConfigError(`unknown workload '${workload}'; expected one of ${Object.keys(WORKLOADS).join(', ')}`);
      if (!o.vsTorch) {
        const recs = runWorkload(workload, { dtype: o.dtype, steps: o.steps, warmup: o.warmup, base: o.base, checkpointing: o.checkpointing });
        for (const r of recs) console.log(o.json ? JSON.stringify(r) : Object.entries(r).map(([k, v]) => `${k}=${v}`).join('  '));
        return;
      }
      const { compare, defaultTorchScript, torchUnavailable } = await import('../../bench/compare.js');
      const { backend } = await import('../../backend/index.js');
      const script = o.torchScript ?? defaultTorchScript();
      const why = torchUnavailable(script);
      if (why) throw new ConfigError(`--vs-torch cannot run: ${why}`);
      const threads = o.threads ?? backend().numThreads();
      const rows = compare({ workload, dtype: o.dtype, threads, steps: o.steps, warmup: o.warmup, repeat: o.repeat, torchScript: script, torchConfig: o.torchConfig });
      for (const r of rows) {
        if (o.json) {
          console.log(JSON.stringify(r));
        } else {
          const g = r.gflops_ratio !== undefined ? `  GFLOP/s ours ${r.ours.gflops} torch ${r.torch.gflops} (x${r.gflops_ratio})` : '';
          console.log(`${r.workload} ${r.dtype}: ours ${r.ours.ms_per_step} ms, torch ${r.torch.ms_per_step} ms (time x${r.time_ratio}); ` +
            `peak RSS ours ${r.ours.peak_rss_mb} MB, torch ${r.torch.peak_rss_mb} MB (x${r.rss_ratio})${g}  [median of ${r.runs} runs each]`);
        }
      }
    });
}
