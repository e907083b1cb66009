/** `autoglm generate --model DIR "prompt"`: text from a Hugging Face causal LM (local folder or Hub id). */
import type { Command } from 'commander';
import { ConfigError } from '../../errors.js';
import { applyThreads, choiceOption, intOption } from '../options.js';

interface GenerateOpts {
  model: string;
  maxNewTokens: number;
  temperature?: number;
  topK: number;
  topP: number;
  seed: number;
  dtype: 'f32' | 'keep';
  threads?: number;
  json?: boolean;
}

function floatOption(flag: string, lo: number, hi: number): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!(n > lo && n <= hi)) throw new ConfigError(`option '${flag}' is '${v}'; expected a number in (${lo}, ${hi}]`);
    return n;
  };
}

export function registerGenerate(program: Command): void {
  program.command('generate')
    .description('continue a prompt with a causal LM from a Hugging Face folder or Hub id (gpt2, llama, qwen2, mistral, glm)')
    .argument('<prompt>', 'the text to continue (quote it)')
    .requiredOption('--model <dir|id>', 'model folder (config.json, model.safetensors, tokenizer.json) or Hub id org/name')
    .option('--max-new-tokens <n>', 'tokens to generate', intOption('--max-new-tokens'), 32)
    .option('--temperature <t>', 'sample at this temperature (default: greedy decoding)', floatOption('--temperature', 0, 100))
    .option('--top-k <k>', 'with sampling: keep the k most likely tokens (0 = all)', intOption('--top-k', 0), 0)
    .option('--top-p <p>', 'with sampling: nucleus probability mass', floatOption('--top-p', 0, 1), 1)
    .option('--seed <n>', 'sampling seed', intOption('--seed', 0), 0)
    .option('--dtype <d>', "f32 | keep (16-bit checkpoints stay 16-bit: half the memory)", choiceOption('--dtype', ['f32', 'keep'] as const), 'f32')
    .option('--threads <n>', 'kernel threads (default: all cores)', intOption('--threads'))
    .option('--json', 'print {"prompt", "completion", "ids"} as one JSON line')
    .action(async (prompt: string, o: GenerateOpts) => {
      applyThreads(o.threads);
      const { loadHFModel, generate, isCausalLM } = await import('../../models/hf/index.js');
      const model = await loadHFModel(o.model, { dtype: o.dtype, task: 'causal-lm' });
      if (!isCausalLM(model)) throw new ConfigError(`--model '${o.model}' is not a causal language model`);
      const tok = model.hf?.tokenizer;
      if (!tok) throw new ConfigError(`--model '${o.model}' has no tokenizer.json; 'generate' needs one to read the prompt`);
      const ids = tok.encode(prompt);
      const cfgEos = model.hf?.generationConfig?.eos_token_id ?? model.hf?.config.eos_token_id;
      const eos = (Array.isArray(cfgEos) ? cfgEos : typeof cfgEos === 'number' ? [cfgEos] : tok.eosTokenId !== null ? [tok.eosTokenId] : []) as number[];
      const sample = o.temperature !== undefined;
      const out = generate(model, ids, {
        maxNewTokens: o.maxNewTokens, doSample: sample, temperature: o.temperature ?? 1, topK: o.topK, topP: o.topP, seed: o.seed, eosTokenId: eos,
      });
      const completion = tok.decode(out.slice(ids.length));
      if (o.json) console.log(JSON.stringify({ prompt, completion, ids: out }));
      else console.log(prompt + completion);
    });
}
