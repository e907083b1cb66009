/**
 * Tokenizers of Hugging Face model directories (`tokenizer.json` + `tokenizer_config.json`) through
 * `@huggingface/tokenizers` (pure TypeScript), with batching to padded (B, T) tensors and the special token
 * ids the heads and the generator need.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Tensor } from '../../tensor/tensor.js';
import { CheckpointError, ConfigError } from '../../errors.js';

type Json = Record<string, unknown>;

function readJson(file: string): Json {
  try {
    const v: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (e) {
    throw new CheckpointError(`cannot read tokenizer file '${file}': ${(e as Error).message}`, { cause: e });
  }
}

export interface BatchOptions {
  addSpecialTokens?: boolean;
  /** Cut sequences to this many tokens. */
  maxLength?: number;
  /** 'longest' pads to the longest sequence of the batch; 'max_length' to maxLength. */
  padding?: 'longest' | 'max_length';
  /** 'right' (training) or 'left' (batched generation). */
  side?: 'right' | 'left';
}

export interface Batch {
  inputIds: Tensor;
  attentionMask: Tensor;
  tokenTypeIds: Tensor | null;
}

export class HFTokenizer {
  private readonly tok: Tokenizer;
  constructor(readonly json: Json, readonly config: Json, readonly file = 'tokenizer.json') {
    try {
      this.tok = new Tokenizer(json, config);
    } catch (e) {
      throw new CheckpointError(`'${file}' is not a tokenizer that @huggingface/tokenizers can load: ${(e as Error).message}`, { cause: e });
    }
  }

  /** The tokenizer of a model directory, or null when it has no tokenizer.json. */
  static fromDir(dir: string): HFTokenizer | null {
    const file = path.join(dir, 'tokenizer.json');
    if (!existsSync(file)) return null;
    const cfgFile = path.join(dir, 'tokenizer_config.json');
    return new HFTokenizer(readJson(file), existsSync(cfgFile) ? readJson(cfgFile) : {}, file);
  }

  /** Writes tokenizer.json and tokenizer_config.json into `dir`. */
  save(dir: string): void {
    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(this.json));
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(this.config, null, 2) + '\n');
  }

  get vocabSize(): number {
    return this.tok.get_vocab(true).size;
  }

  encode(text: string, opts: { addSpecialTokens?: boolean; pair?: string } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true, text_pair: opts.pair ?? null }).ids;
  }

  /** Ids and segment ids (BERT pairs). */
  encodeWithTypes(text: string, opts: { addSpecialTokens?: boolean; pair?: string } = {}): { ids: number[]; typeIds: number[] } {
    const e = this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true, text_pair: opts.pair ?? null, return_token_type_ids: true });
    return { ids: e.ids, typeIds: e.token_type_ids ?? new Array<number>(e.ids.length).fill(0) };
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return ''; // @huggingface/tokenizers throws on an empty list (e.g. nothing was generated)
    return this.tok.decode(ids, { skip_special_tokens: opts.skipSpecialTokens ?? true });
  }

  tokenToId(token: string): number | null {
    return this.tok.token_to_id(token) ?? null;
  }

  /** The id of a special token named in tokenizer_config.json ('eos_token' as a string or {content}). */
  specialId(name: 'eos_token' | 'bos_token' | 'pad_token' | 'unk_token' | 'cls_token' | 'sep_token'): number | null {
    const v = this.config[name];
    const s = typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as Json).content === 'string' ? (v as Json).content as string : null;
    return s === null ? null : this.tokenToId(s);
  }

  get eosTokenId(): number | null { return this.specialId('eos_token'); }
  get bosTokenId(): number | null { return this.specialId('bos_token'); }
  /** The pad token, else eos (the usual choice for decoders without one). */
  get padTokenId(): number | null { return this.specialId('pad_token') ?? this.eosTokenId; }

  /** Encodes and pads a batch: inputIds and attentionMask (B, T) i32, tokenTypeIds when the tokenizer makes them. */
  batch(texts: string[], opts: BatchOptions = {}): Batch {
    if (texts.length === 0) throw new ConfigError(`'HFTokenizer.batch' needs at least one text`);
    const { maxLength, padding = 'longest', side = 'right' } = opts;
    if (padding === 'max_length' && maxLength === undefined) throw new ConfigError(`'HFTokenizer.batch': padding 'max_length' needs maxLength`);
    const enc = texts.map((t) => this.encodeWithTypes(t, { addSpecialTokens: opts.addSpecialTokens }));
    for (const e of enc) {
      if (maxLength !== undefined && e.ids.length > maxLength) {
        e.ids = e.ids.slice(0, maxLength);
        e.typeIds = e.typeIds.slice(0, maxLength);
      }
    }
    const T = padding === 'max_length' ? (maxLength as number) : Math.max(...enc.map((e) => e.ids.length));
    const B = texts.length;
    const pad = this.padTokenId ?? 0;
    const ids = new Int32Array(B * T).fill(pad), mask = new Int32Array(B * T), types = new Int32Array(B * T);
    enc.forEach((e, b) => {
      const off = b * T + (side === 'left' ? T - e.ids.length : 0);
      ids.set(e.ids, off);
      types.set(e.typeIds, off);
      mask.fill(1, off, off + e.ids.length);
    });
    const hasTypes = enc.some((e) => e.typeIds.some((t) => t !== 0)) || this.config.tokenizer_class === 'BertTokenizer';
    return {
      inputIds: new Tensor(ids, 'i32', [B, T]),
      attentionMask: new Tensor(mask, 'i32', [B, T]),
      tokenTypeIds: hasTypes ? new Tensor(types, 'i32', [B, T]) : null,
    };
  }
}
