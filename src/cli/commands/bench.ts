/** `autoglm bench WORKLOAD`: the reference workloads, alone or side by side with PyTorch (--vs-torch). */
import { Option, type Command } from 'commander';
import { ConfigError } from '../../errors.js';
import type { GradientCheckpointing } from '../../nn/checkpoint.js';
import { applyThreads, choiceOption, intOption } from '../options.js';
import type { BenchRecord } from '../../bench/measure.js';

interface BenchOpts {
  dtype: 'fp32' | 'bf16';
  threads?: number;
  steps: number;
  warmup: number;
  json?: boolean;
  vsTorch?: boolean;
  vsTfjs?: boolean;
  backend?: 'native' | 'wasm' | 'portable';
  repeat: number;
  torchScript?: string;
  torchConfig: 'best' | 'installed';
  base: 'none' | 'bf16' | 'int8' | 'nf4';
  checkpointing?: GradientCheckpointing;
  method?: string;
  source: 'lora' | 'full';
  torchAttention?: 'explicit' | 'sdpa';
  interleave?: boolean;
  serveRounds?: boolean;
}

export function registerBench(program: Command): void {
  program.command('bench')
    .description('time a reference workload of shared/bench/WORKLOADS.md (gemm, block, gpt2-forward, gpt2-lora, gpt2-full, cls-lora, cls-full), or the SFT step on gpt2-lora (gpt2-lora-sft padded, gpt2-lora-sft-packed), or the DPO and KTO steps (gpt2-lora-dpo, gpt2-lora-kto)')
    .argument('<workload>', 'gemm | block | gpt2-forward | gpt2-lora | gpt2-full | cls-lora | cls-full | gpt2-lora-sft | gpt2-lora-sft-packed | gpt2-lora-dpo | gpt2-lora-kto | compression')
    .option('--dtype <dtype>', 'fp32 | bf16', choiceOption('--dtype', ['fp32', 'bf16'] as const), 'fp32')
    .option('--threads <n>', 'kernel threads (default: all cores)', intOption('--threads'))
    .option('--steps <n>', 'timed steps (median reported)', intOption('--steps'), 10)
    .option('--warmup <n>', 'untimed warm-up steps', intOption('--warmup', 0), 3)
    .option('--json', 'one JSON line per measurement (the fields of torch_reference.py)')
    .option('--backend <name>', 'our kernels: native | wasm | portable (default: native, else wasm, else portable)', choiceOption('--backend', ['native', 'wasm', 'portable'] as const))
    .option('--vs-torch', 'also run ../shared/bench/torch_reference.py in the same run and print ratios')
    .option('--vs-tfjs', "block: also run TF.js's wasm backend (scripts/tfjs-reference.mjs) and, when ours is not native, our native backend, alternated, and print ratios")
    .option('--repeat <n>', 'with --vs-torch / --vs-tfjs: alternate the engines n times, medians across runs', intOption('--repeat'), 3)
    .option('--interleave', 'with --vs-torch: both engines in one long-lived process each, alternating --repeat rounds of --steps steps (pairs a second apart on a host whose speed changes in phases); prints the ratio of medians and the median of the per-round ratios')
    .addOption(new Option('--serve-rounds', 'time rounds of steps on request over stdin (the process that --interleave drives)').hideHelp())
    .option('--torch-script <path>', 'path of torch_reference.py')
    .option('--base <dtype>', 'LoRA workloads: frozen base storage none | bf16 | int8 | nf4 (QLoRA, double-quantised)', choiceOption('--base', ['none', 'bf16', 'int8', 'nf4'] as const), 'none')
    .option('--checkpointing [mode]', "gpt2 workloads: recompute activations in the backward pass: full (each block's, the default) | mlp (the MLP pre-activations)", choiceOption('--checkpointing', ['full', 'mlp'] as const))
    .option('--method <m>', 'compression: one gradient compression method (default: all)')
    .option('--source <s>', 'compression: gradients of a lora | full fine-tune step', choiceOption('--source', ['lora', 'full'] as const), 'lora')
    .option('--torch-attention <a>', 'SFT workloads with --vs-torch: the reference\'s attention: explicit (as torch_reference.py) | sdpa (F.scaled_dot_product_attention)', choiceOption('--torch-attention', ['explicit', 'sdpa'] as const))
    .option('--torch-config <cfg>', "PyTorch's configuration: best | installed", choiceOption('--torch-config', ['best', 'installed'] as const), 'best')
    .action(async (workload: string, o: BenchOpts) => {
      applyThreads(o.threads);
      if (o.backend) process.env.AUTOGLM_BACKEND = o.backend;
      if (o.vsTorch && o.vsTfjs) throw new ConfigError('--vs-torch and --vs-tfjs: choose one reference per run');
      if (o.interleave && !o.vsTorch) throw new ConfigError('--interleave alternates ours and the PyTorch reference: add --vs-torch');
      if (o.serveRounds) (await import('../../bench/measure.js')).serveRounds(true);
      if (workload === 'compression') {
        const { runCompressionBench, formatCompressionTable } = await import('../../bench/compression.js');
        const recs = await runCompressionBench({ source: o.source, method: o.method, repeats: o.steps, batchSize: 32 });
        console.log(o.json ? recs.map((r) => JSON.stringify(r)).join('\n') : formatCompressionTable(recs));
        return;
      }
      const { runWorkload, WORKLOADS } = await import('../../bench/workloads.js');
      if (!WORKLOADS[workload]) throw new ConfigError(`unknown workload '${workload}'; expected one of ${Object.keys(WORKLOADS).join(', ')}`);
      const { compare, defaultTorchScript, torchUnavailable, isDecoderTaskWorkload } = await import('../../bench/compare.js');
      const isSft = isDecoderTaskWorkload(workload);
      if (isSft && (o.base !== 'none' || o.checkpointing)) throw new ConfigError(`--base and --checkpointing apply to the gpt2 and cls workloads; '${workload}' times task sft's step as configured by default`);
      if (o.torchAttention && !(isSft && o.vsTorch)) throw new ConfigError(`--torch-attention applies to the SFT workloads with --vs-torch`);
      if (o.base !== 'none' && (o.vsTorch || o.vsTfjs)) {
        throw new ConfigError(`--base ${o.base} has no counterpart in the reference (its base is f32); time the quantised base without --vs-torch / --vs-tfjs, against --base none`);
      }
      if (o.vsTfjs) {
        await benchVsTfjs(workload, o);
        return;
      }
      if (!o.vsTorch) {
        const recs = runWorkload(workload, { dtype: o.dtype, steps: o.steps, warmup: o.warmup, base: o.base, checkpointing: o.checkpointing });
        for (const r of recs) console.log(o.json ? JSON.stringify(r) : Object.entries(r).map(([k, v]) => `${k}=${v}`).join('  '));
        return;
      }
      const { backend } = await import('../../backend/index.js');
      const script = o.torchScript ?? defaultTorchScript(workload);
      const why = torchUnavailable(script);
      if (why) throw new ConfigError(`--vs-torch cannot run: ${why}`);
      const threads = o.threads ?? backend().numThreads();
      const co = { workload, dtype: o.dtype, threads, steps: o.steps, warmup: o.warmup, repeat: o.repeat, torchScript: script, torchConfig: o.torchConfig, backend: o.backend,
        torchArgs: o.torchAttention ? ['--attention', o.torchAttention] : [] };
      if (o.interleave) {
        const { compareInterleaved } = await import('../../bench/rounds.js');
        for (const r of await compareInterleaved(co)) {
          if (o.json) {
            console.log(JSON.stringify(r));
            continue;
          }
          const g = r.gflops_ratio !== undefined ? `  GFLOP/s ours ${r.ours.gflops} torch ${r.torch.gflops} (x${r.gflops_ratio})` : '';
          console.log(`${r.workload} ${r.dtype}: ours ${r.ours.ms_per_step} ms, torch ${r.torch.ms_per_step} ms (time x${r.time_ratio}, paired x${r.paired_ratio}); ` +
            `peak RSS ours ${r.ours.peak_rss_mb} MB, torch ${r.torch.peak_rss_mb} MB (x${r.rss_ratio})${g}  [medians of ${r.runs} interleaved rounds of ${o.steps} steps]`);
          console.log(`  rounds (ms) ours ${r.ours_rounds.join(' ')}; torch ${r.torch_rounds.join(' ')}`);
        }
        return;
      }
      const rows = compare(co);
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

/** `--vs-tfjs`: ours, TF.js's wasm backend and (ours not native) our native backend, alternated; one line each. */
async function benchVsTfjs(workload: string, o: BenchOpts): Promise<void> {
  if (o.dtype !== 'fp32') throw new ConfigError(`--vs-tfjs times fp32 only (TF.js's wasm backend has no bf16); got --dtype ${o.dtype}`);
  const { compareTfjs, tfjsUnavailable } = await import('../../bench/compare.js');
  const { backend, nativeAvailable } = await import('../../backend/index.js');
  const why = tfjsUnavailable(workload);
  if (why) throw new ConfigError(`--vs-tfjs cannot run: ${why}`);
  const ours = backend();
  const threads = o.threads ?? ours.numThreads();
  const withNative = ours.name !== 'native' && nativeAvailable();
  const r = compareTfjs({ workload, dtype: o.dtype, threads, steps: o.steps, warmup: o.warmup, repeat: o.repeat, torchScript: '',
    torchConfig: 'best', backend: ours.name }, withNative);
  if (o.json) {
    console.log(JSON.stringify(r));
    return;
  }
  for (const [i, t] of r.tfjs.entries()) {
    const n = r.native?.[i];
    const speedup = Math.round((t.torch.ms_per_step / t.ours.ms_per_step) * 10) / 10;
    console.log(`${t.workload} ${t.dtype}, ${threads} thread${threads === 1 ? '' : 's'}: ours (${ours.name}) ${t.ours.ms_per_step} ms, ` +
      `TF.js wasm ${t.torch.ms_per_step} ms (${t.torch.threads} thread${t.torch.threads === 1 ? '' : 's'}; ours x${speedup} faster)` +
      (n ? `, our native ${n.torch.ms_per_step} ms (${ours.name} / native x${n.time_ratio})` : '') +
      `; peak RSS ours ${t.ours.peak_rss_mb} MB, TF.js ${t.torch.peak_rss_mb} MB  [median of ${t.runs} alternations]`);
    // GFLOP/s: the step's matrix products over the step time, and the GEMM kernel alone on the step's Linear shapes
    const rate = (r: BenchRecord) => `${r.gflops} GFLOP/s over the step` + (r.gemm_gflops !== undefined ? `, GEMM ${r.gemm_gflops} GFLOP/s` : '');
    if (t.ours.gflops !== undefined) console.log(`  ours (${ours.name}): ${rate(t.ours)}` + (n?.torch.gflops !== undefined ? `; native: ${rate(n.torch)}` : ''));
  }
}
