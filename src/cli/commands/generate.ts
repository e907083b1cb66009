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
  chat?: boolean;
  system?: string;
  chatTemplate?: string;
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
    .option('--chat', "treat the prompt as a user message: render it with the model's chat template (tokenizer_config.json, else ChatML) and stop at the end of the assistant's turn")
    .option('--system <text>', 'with --chat: a system message first')
    .option('--chat-template <file>', 'with --chat: a Jinja chat template file instead of the model\'s')
    .option('--json', 'print {"prompt", "completion", "ids"} as one JSON line')
    .action(async (prompt: string, o: GenerateOpts) => {
      if (!o.chat && (o.system !== undefined || o.chatTemplate !== undefined)) throw new ConfigError(`options '--system' and '--chat-template' need '--chat'`);
      applyThreads(o.threads);
      const { loadHFModel, generate, isCausalLM } = await import('../../models/hf/index.js');
      const model = await loadHFModel(o.model, { dtype: o.dtype, task: 'causal-lm' });
      if (!isCausalLM(model)) throw new ConfigError(`--model '${o.model}' is not a causal language model`);
      const tok = model.hf?.tokenizer;
      if (!tok) throw new ConfigError(`--model '${o.model}' has no tokenizer.json; 'generate' needs one to read the prompt`);
      const sample = o.temperature !== undefined;
      const gen = { maxNewTokens: o.maxNewTokens, doSample: sample, temperature: o.temperature ?? 1, topK: o.topK, topP: o.topP, seed: o.seed };
      if (o.chat) {
        const { readFileSync } = await import('node:fs');
        const { chatTemplateOf } = await import('../../sft/template.js');
        const { generateChat } = await import('../../sft/chat.js');
        let template: string | undefined;
        if (o.chatTemplate) {
          try {
            template = readFileSync(o.chatTemplate, 'utf8');
          } catch (e) {
            throw new ConfigError(`option '--chat-template': cannot read '${o.chatTemplate}': ${(e as Error).message}`, { cause: e });
          }
        }
        const tpl = chatTemplateOf(tok, model.hf?.source ?? null, { template });
        const messages = [...(o.system !== undefined ? [{ role: 'system', content: o.system }] : []), { role: 'user', content: prompt }];
        const r = generateChat(model, tok, tpl, messages, gen);
        if (o.json) console.log(JSON.stringify({ prompt, completion: r.text, ids: r.ids, chat_template: tpl.origin }));
        else console.log(r.text);
        return;
      }
      const ids = tok.encode(prompt);
      const cfgEos = model.hf?.generationConfig?.eos_token_id ?? model.hf?.config.eos_token_id;
      const eos = (Array.isArray(cfgEos) ? cfgEos : typeof cfgEos === 'number' ? [cfgEos] : tok.eosTokenId !== null ? [tok.eosTokenId] : []) as number[];
      const out = generate(model, ids, { ...gen, eosTokenId: eos });
      const completion = tok.decode(out.slice(ids.length));
      if (o.json) console.log(JSON.stringify({ prompt, completion, ids: out }));
      else console.log(prompt + completion);
    });
}
