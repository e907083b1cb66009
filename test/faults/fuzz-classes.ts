/**
 * In-process fault classes: fuzzing of every parser that takes outside bytes (safetensors, JSONL/CSV/JSON/Parquet datasets,
 * compression payloads and step frames, trainer config JSON, model config.json) and NaN/Inf injection into
 * data-parallel gradients with every compressor and error feedback. Each `attempt` is one try.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../../src/backend/rng.js';
import { CheckpointError, CommunicationError, ConfigError, DatasetError } from '../../src/errors.js';
import { loadSafetensors, saveSafetensors } from '../../src/models/safetensors.js';
import { Tensor } from '../../src/tensor/tensor.js';
import { loadDataset } from '../../src/data/index.js';
import { parquetWriteFile } from 'hyparquet-writer';
import { writeChatParquet } from '../helpers/parquet.js';
import { readSftFile } from '../../src/sft/dataset.js';
import { readPreferenceFile } from '../../src/train/dpo.js';
import { toPreference, toUnpaired, tokenizePair } from '../../src/sft/preference.js';
import { RecordError } from '../../src/sft/formats.js';
import { chatTemplateOf, type ChatTemplate } from '../../src/sft/template.js';
import { tinyChatTokenizerFiles } from '../../src/sft/tiny-chat-model.js';
import { HFTokenizer } from '../../src/models/hf/tokenizer.js';
import { BadLineSink } from '../../src/data/bad-lines.js';
import { COMPRESSION_METHODS, GradientCompression, makeCompressor } from '../../src/compress/index.js';
import { parseTrainerConfig, trainerConfigSchema } from '../../src/train/config.js';
import { configFromFlags } from '../../src/cli/config-flags.js';
import { loadHFModelFromDir } from '../../src/models/hf/loader.js';
import { DataParallel } from '../../src/distributed/data-parallel.js';
import { inProcessGroup } from '../helpers/in-process-group.js';
import { int, mutateBytes, mutateObject, pick, verdict, type TryResult } from './fuzz.js';

export interface FaultClass {
  name: string;
  /** Relative share of the time budget. */
  weight: number;
  /** Its precondition is a privilege of the machine (root for mount), not a piece of the project: CI may lack it. */
  optional?: boolean;
  /** Too slow for the CI's short run (`short: true`), and covered there by a faster test: tried in the long run. */
  longOnly?: string;
  /** Set up once (reference runs, fixture files); false when the class cannot run here, with the reason. */
  setup?(): Promise<true | string>;
  attempt(rng: Rng): Promise<TryResult>;
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-faults-'));
let fileNo = 0;
const scratch = (ext: string, bytes: Uint8Array): string => {
  const f = path.join(dir, `f${fileNo++ % 64}.${ext}`);
  writeFileSync(f, bytes);
  return f;
};

// ---- safetensors ------------------------------------------------------------------------------------------------

let stGood: Uint8Array;
const safetensors: FaultClass = {
  name: 'fuzz: safetensors reader',
  weight: 1,
  async setup() {
    const f = path.join(dir, 'good.safetensors');
    const r = new Rng(1);
    saveSafetensors(f, new Map<string, Tensor>([
      ['w', new Tensor(Float32Array.from({ length: 24 }, () => r.normal()), 'f32', [4, 6])],
      ['h', new Tensor(Float32Array.from({ length: 6 }, () => r.normal()), 'f32', [6]).to('bf16')],
      ['ids', new Tensor(Int32Array.from([1, 2, 3]), 'i32', [3])],
      ['empty', new Tensor(new Float32Array(0), 'f32', [0, 2])],
    ]), { format: 'pt' });
    stGood = readFileSync(f);
    return true;
  },
  attempt: async (rng) => verdict(() => loadSafetensors(scratch('safetensors', mutateBytes(rng, stGood))), [CheckpointError]),
};

// ---- datasets -----------------------------------------------------------------------------------------------------

const ROWS = Array.from({ length: 24 }, (_, i) => ({ text: `example number ${i}, "quoted" text`, label: `l${i % 3}` }));
const DATA: Record<string, Uint8Array> = {
  jsonl: Buffer.from(ROWS.map((r) => JSON.stringify(r)).join('\n') + '\n'),
  csv: Buffer.from(`text,label\n${ROWS.map((r) => `"${r.text.replace(/"/g, '""')}",${r.label}`).join('\n')}\n`),
  json: Buffer.from(JSON.stringify({ train: ROWS }, null, 1)),
};
const datasetClass = (ext: string): FaultClass => ({
  name: `fuzz: ${ext.toUpperCase()} dataset reader`,
  weight: 1,
  attempt: async (rng) => verdict(() => loadDataset({
    dataset: scratch(ext, mutateBytes(rng, DATA[ext]!)), onBadLine: pick(rng, ['skip', 'error'] as const), validationFraction: 0.01, testFraction: 0.01,
  }), [DatasetError, ConfigError]),
});

// Parquet (read by the SFT dataset reader through hyparquet): a chat file with a nested `messages` list of structs
// and a prompt/completion file, each mutated byte by byte.
const PARQUET: Uint8Array[] = [];
const parquet: FaultClass = {
  name: 'fuzz: Parquet dataset reader',
  weight: 1,
  async setup() {
    const chat = path.join(dir, 'chat.parquet'), pc = path.join(dir, 'pc.parquet');
    const convs = ROWS.map((r) => [{ role: 'user', content: r.text }, { role: 'assistant', content: r.label }]);
    writeChatParquet(chat, convs);
    parquetWriteFile({ filename: pc, columnData: [{ name: 'prompt', data: ROWS.map((r) => r.text), type: 'STRING' }, { name: 'completion', data: ROWS.map((r) => r.label), type: 'STRING' }] });
    PARQUET.push(readFileSync(chat), readFileSync(pc));
    return true;
  },
  attempt: async (rng) => verdict(() => readSftFile(scratch('parquet', mutateBytes(rng, pick(rng, PARQUET))), new BadLineSink(pick(rng, ['skip', 'error'] as const))), [DatasetError], 10_000),
};

// ---- preference records (task dpo) ------------------------------------------------------------------------------------

// conversational pairs with an explicit prompt, implicit-prompt conversations, and plain ones with and without a prompt
const PREFS = ROWS.map((r, i) => {
  const user = { role: 'user', content: r.text }, good = { role: 'assistant', content: r.label }, bad = { role: 'assistant', content: `not ${r.label}` };
  switch (i % 4) {
    case 0: return { prompt: [user], chosen: [good], rejected: [bad] };
    case 1: return { chosen: [user, good], rejected: [user, bad] };
    case 2: return { prompt: r.text, chosen: ` ${r.label}`, rejected: ` not ${r.label}` };
    default: return { chosen: `Q: ${r.text} A: ${r.label}`, rejected: `Q: ${r.text} A: not ${r.label}` };
  }
});
// KTO's unpaired records: plain and conversational, labels as booleans and as CSV strings
const UNPAIRED = ROWS.map((r, i) => (i % 2
  ? { prompt: r.text, completion: ` ${r.label}`, label: i % 4 === 1 }
  : { prompt: [{ role: 'user', content: r.text }], completion: [{ role: 'assistant', content: r.label }], label: i % 4 === 0 ? 'true' : 'False' }));
const PREFS_JSONL = Buffer.from(PREFS.map((r) => JSON.stringify(r)).join('\n') + '\n');
let prefTok: { tok: HFTokenizer; template: ChatTemplate } | null = null;
const preference: FaultClass = {
  name: 'fuzz: preference records (task dpo; KTO\'s unpaired ones)',
  weight: 1,
  async setup() {
    const { json, config } = tinyChatTokenizerFiles();
    const tok = new HFTokenizer(json, config);
    prefTok = { tok, template: chatTemplateOf(tok) };
    return true;
  },
  async attempt(rng) {
    if (rng.uniform() < 0.5) {
      return verdict(() => readPreferenceFile(scratch('jsonl', mutateBytes(rng, PREFS_JSONL)), new BadLineSink(pick(rng, ['skip', 'error'] as const))), [DatasetError]);
    }
    // a record with wrong fields goes through parsing and tokenization (long answers cut to a small maxLength); KTO
    // reads unpaired records and pairs (unpaired)
    if (rng.uniform() < 0.5) {
      const rec = mutateObject(rng, pick(rng, PREFS) as Record<string, unknown>, ['prompt']);
      return verdict(() => {
        const ex = toPreference(rec);
        tokenizePair(ex, prefTok!.tok, prefTok!.template, 2 + int(rng, 64));
      }, [RecordError, DatasetError]);
    }
    const rec = mutateObject(rng, pick(rng, [...UNPAIRED, ...PREFS]) as Record<string, unknown>, ['prompt', 'label']);
    return verdict(() => {
      for (const ex of toUnpaired(rec).examples) tokenizePair(ex.pair, prefTok!.tok, prefTok!.template, 2 + int(rng, 64));
    }, [RecordError, DatasetError]);
  },
};

// ---- compression wire ----------------------------------------------------------------------------------------------

const wire: FaultClass = {
  name: 'fuzz: compression payloads and frames',
  weight: 1,
  async attempt(rng) {
    const method = pick(rng, COMPRESSION_METHODS);
    const n = 1 + int(rng, 3000);
    const g = Float32Array.from({ length: n }, () => rng.normal() * 10 ** (int(rng, 6) - 3));
    const shape = n % 4 === 0 ? [4, n / 4] : [n];
    if (rng.uniform() < 0.5) {
      const c = makeCompressor({ method });
      const p = c.compress(g, { name: 'g', shape, step: int(rng, 10), rng: new Rng(int(rng, 1000)) });
      const bad = mutateBytes(rng, p);
      const m = rng.uniform() < 0.8 ? n : int(rng, 2 * n + 2);
      return verdict(() => { c.decompress(bad, m); c.decompressAdd(bad, new Float32Array(m), 0.5); }, [CommunicationError]);
    }
    const gc = new GradientCompression({ method }, { seed: 1, shapes: new Map([['g', shape]]) });
    const frame = gc.encode(new Map([['g', g]]), 0);
    const bad = mutateBytes(rng, frame);
    return verdict(() => gc.decodeSum([frame, bad], new Map([['g', new Float32Array(n)]]), true), [CommunicationError]);
  },
};

// ---- trainer config -------------------------------------------------------------------------------------------------

const GOOD_CONFIG = {
  method: 'lora', maxSteps: 4, batchSize: 16, loraRank: 4, learningRate: 1e-3, scheduler: 'cosine', warmupSteps: 1,
  gradientCompression: { method: 'topk', ratio: 0.1, errorFeedback: 'dgc' }, earlyStopping: { monitor: 'val_loss', patience: 2 },
  optimizer: 'adamw', betas: [0.9, 0.99], mixedPrecision: 'bf16', saveEvery: 2,
};
const trainerConfig: FaultClass = {
  name: 'fuzz: trainer config JSON',
  weight: 1,
  async attempt(rng) {
    const keys = Object.keys(trainerConfigSchema.shape);
    const obj = mutateObject(rng, GOOD_CONFIG, keys);
    if (rng.uniform() < 0.3 && typeof obj.gradientCompression === 'object' && obj.gradientCompression) {
      obj.gradientCompression = mutateObject(rng, obj.gradientCompression as Record<string, unknown>, ['lambda', 'levels', 'momentum', 'clipNorm', 'bucketSize']);
    }
    const text = Buffer.from(JSON.stringify(obj));
    const file = scratch('json', rng.uniform() < 0.3 ? mutateBytes(rng, text) : text);
    return verdict(() => parseTrainerConfig(configFromFlags({ config: file })), [ConfigError]);
  },
};

// ---- model config.json ----------------------------------------------------------------------------------------------

const modelDirs: Record<string, { dir: string; config: Record<string, unknown> }> = {};
const modelConfig: FaultClass = {
  name: 'fuzz: model config.json',
  weight: 1,
  async setup() {
    for (const arch of ['gpt2', 'llama', 'bert']) {
      const d = path.join(dir, `model-${arch}`);
      cpSync(path.join(ROOT, 'test/fixtures/golden', arch), d, { recursive: true });
      modelDirs[arch] = { dir: d, config: JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8')) };
    }
    return true;
  },
  async attempt(rng) {
    const m = modelDirs[pick(rng, Object.keys(modelDirs))]!;
    const extra = ['vocab_size', 'hidden_size', 'n_positions', 'max_position_embeddings', 'num_attention_heads', 'num_key_value_heads',
      'intermediate_size', 'n_embd', 'n_head', 'n_layer', 'num_hidden_layers', 'rope_theta', 'rope_scaling', 'type_vocab_size', 'tie_word_embeddings'];
    const cfgText = JSON.stringify(mutateObject(rng, m.config, extra));
    if (process.env.FAULTS_TRACE) writeFileSync(process.env.FAULTS_TRACE, cfgText);
    writeFileSync(path.join(m.dir, "config.json"), cfgText);
    return verdict(() => loadHFModelFromDir(m.dir), [ConfigError, CheckpointError]);
  },
};

// ---- NaN / Inf injection --------------------------------------------------------------------------------------------

const SHAPES: [string, number[]][] = [['w', [8, 16]], ['b', [16]]];
const nanInjection: FaultClass = {
  name: 'NaN/Inf in gradients (every compressor x residual/dgc, 2 ranks)',
  weight: 1,
  async attempt(rng) {
    const method = pick(rng, COMPRESSION_METHODS), errorFeedback = pick(rng, ['residual', 'dgc'] as const);
    const bad = pick(rng, [NaN, Infinity, -Infinity]), badRank = int(rng, 2), badAt = int(rng, 128);
    const ranks = inProcessGroup(2).map((c) => ({ dp: new DataParallel(c, { compression: { method, errorFeedback }, seed: 3 }), named: SHAPES.map(([n, s]) => [n, new Tensor(new Float32Array(s.reduce((a, b) => a * b)), 'f32', s)] as [string, Tensor]) }));
    const states: string[] = [];
    const finite: boolean[][] = [];
    for (let step = 0; step < 3; step++) {
      ranks.forEach((r, rank) => {
        const gr = new Rng(100 * step + rank + int(rng, 1000));
        for (const [n, p] of r.named) {
          const g = Float32Array.from({ length: p.size }, () => gr.normal());
          if (step === 1 && rank === badRank && n === 'w') g[badAt] = bad;
          p.grad = new Tensor(g, 'f32', [...p.shape]);
        }
      });
      try {
        finite.push((await Promise.all(ranks.map((r) => r.dp.syncGradients(r.named, step)))).map((x) => x.finite));
      } catch (e) {
        return { survived: false, dataLost: false, detail: `${method}+${errorFeedback}: ${(e as Error).message}` };
      }
      states.push(JSON.stringify(ranks.map((r) => r.dp.state()), (_k, v) => (v instanceof Float32Array ? Array.from(v, (x) => (Number.isFinite(x) ? x : String(x))) : v)));
    }
    const what = `${method}+${errorFeedback}, ${bad} on rank ${badRank}`;
    if (JSON.stringify(finite) !== '[[true,true],[false,false],[true,true]]') return { survived: false, dataLost: false, detail: `${what}: finite per step ${JSON.stringify(finite)}` };
    if (states[1] !== states[0]) return { survived: true, dataLost: true, detail: `${what}: the skipped step changed the residuals` };
    if (/NaN|Infinity/.test(states[2]!)) return { survived: true, dataLost: true, detail: `${what}: non-finite residuals after the next step` };
    return { survived: true, dataLost: false };
  },
};

export const FUZZ_CLASSES: FaultClass[] = [safetensors, datasetClass('jsonl'), datasetClass('csv'), datasetClass('json'), parquet, preference, wire, trainerConfig, modelConfig, nanInjection];
