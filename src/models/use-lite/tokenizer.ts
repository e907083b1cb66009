/**
 * The SentencePiece (unigram) tokenizer of USE-Lite over the shipped `vocab.json` ([piece, log-prob] pairs),
 * reproducing the tokenizer that the TF.js consumers of these weights use, so that ids match theirs:
 *
 * 1. NFKC-normalise; a non-empty text gets a leading '▁' and every ASCII space becomes '▁'.
 * 2. Split into code points. At each start position, the candidate pieces are every vocabulary piece
 *    (ids 6 and up; 0-5 are reserved: unk, <s>, </s>, 3 extra) that is a prefix of the rest of the text;
 *    when there is none, the one code point as unk (id 0, score 0).
 * 3. Viterbi over end positions: best[end] = max over candidates (start, end) of best[start] + score, the
 *    consumers' way: a best of exactly 0 counts as unset, ties go to the later start, a null score is 0.
 * 4. Walk back from the end, then merge runs of consecutive unks into one.
 *
 * Piece lengths are counted in code points (the vocabulary has no characters outside the BMP, where that
 * equals the UTF-16 length the consumers use).
 */
import { Tensor } from '../../tensor/tensor.js';
import { ConfigError } from '../../errors.js';

/** One vocabulary entry as stored in vocab.json: the piece and its log-probability (null for a few). */
export type VocabEntry = [string, number | null];

export const WORD_PREFIX = '\u2581';
/** Ids below this are reserved and never produced by matching (0 is also the unk id). */
export const RESERVED_IDS = 6;
export const UNK_ID = 0;

interface TrieNode {
  children: Map<string, TrieNode>;
  /** Vocabulary id of the piece ending here, or -1. */
  id: number;
}

const newNode = (): TrieNode => ({ children: new Map(), id: -1 });

/** A batch of token ids, right-padded: ids (B, T) i32 (padding holds 0) and attentionMask (B, T) f32 (1 = token). */
export interface EncodedBatch {
  ids: Tensor;
  attentionMask: Tensor;
  /** Tokens per row (after clipping to maxLength). */
  lengths: number[];
}

export class USETokenizer {
  private readonly root = newNode();
  private readonly scores: Float64Array;
  private readonly pieceLength: Int32Array;

  constructor(readonly vocab: readonly VocabEntry[]) {
    if (vocab.length <= RESERVED_IDS) throw new ConfigError(`'USETokenizer' needs a vocabulary of more than ${RESERVED_IDS} entries; got ${vocab.length}`);
    this.scores = new Float64Array(vocab.length);
    this.pieceLength = new Int32Array(vocab.length);
    vocab.forEach(([piece, score], id) => {
      this.scores[id] = score ?? 0;
      this.pieceLength[id] = Array.from(piece).length;
    });
    this.pieceLength[UNK_ID] = 1; // an unk stands for one code point
    for (let id = RESERVED_IDS; id < vocab.length; id++) this.insert(vocab[id][0], id);
  }

  get vocabSize(): number {
    return this.vocab.length;
  }

  private insert(piece: string, id: number): void {
    let node = this.root;
    for (const ch of piece) {
      let next = node.children.get(ch);
      if (!next) node.children.set(ch, (next = newNode()));
      node = next;
    }
    node.id = id; // a repeated piece keeps the last id, as the consumers' trie does
  }

  /** The text as the model sees it: NFKC, '▁' before the first word and in place of each space. */
  static normalize(text: string): string {
    const t = text.normalize('NFKC');
    return t.length > 0 ? WORD_PREFIX + t.replace(/ /g, WORD_PREFIX) : t;
  }

  /** Token ids of one text (no special tokens; the empty text gives none). */
  encode(text: string): number[] {
    const sym = Array.from(USETokenizer.normalize(text));
    const n = sym.length;
    // Candidates ending at each position, in order of increasing start: [start, id] pairs.
    const ending: number[][] = Array.from({ length: n + 1 }, () => []);
    for (let s = 0; s < n; s++) {
      let node: TrieNode | undefined = this.root;
      let found = false;
      for (let e = s; e < n && node; e++) {
        node = node.children.get(sym[e]);
        if (node && node.id >= 0) {
          ending[e + 1].push(s, node.id);
          found = true;
        }
      }
      if (!found) ending[s + 1].push(s, UNK_ID);
    }
    const best = new Float64Array(n + 1);
    const word = new Int32Array(n + 1);
    for (let e = 1; e <= n; e++) {
      const c = ending[e];
      for (let j = 0; j < c.length; j += 2) {
        const score = best[c[j]] + this.scores[c[j + 1]];
        if (best[e] === 0 || score >= best[e]) {
          best[e] = score;
          word[e] = c[j + 1];
        }
      }
    }
    const rev: number[] = [];
    for (let at = n; at > 0; at -= this.pieceLength[word[at]]) rev.push(word[at]);
    const out: number[] = [];
    for (let i = rev.length - 1; i >= 0; i--) {
      const id = rev[i];
      if (id === UNK_ID && out.length > 0 && out[out.length - 1] === UNK_ID) continue;
      out.push(id);
    }
    return out;
  }

  /** The pieces of ids, for display. */
  pieces(ids: readonly number[]): string[] {
    return ids.map((id) => this.vocab[id]?.[0] ?? '�');
  }

  /** Encodes texts and right-pads them into one batch, clipping each to `maxLength` tokens. */
  encodeBatch(texts: readonly string[], maxLength: number): EncodedBatch {
    return padBatch(texts.map((t) => this.encode(t)), maxLength);
  }
}

/** Right-pads token-id lists into ids (B, T) and attentionMask (B, T), T = the longest clipped row (at least 1). */
export function padBatch(seqs: readonly (readonly number[])[], maxLength: number): EncodedBatch {
  const lengths = seqs.map((s) => Math.min(s.length, maxLength));
  const B = seqs.length, T = lengths.reduce((m, l) => Math.max(m, l), 1);
  const ids = new Int32Array(B * T), mask = new Float32Array(B * T);
  seqs.forEach((s, b) => {
    for (let t = 0; t < lengths[b]; t++) {
      ids[b * T + t] = s[t];
      mask[b * T + t] = 1;
    }
  });
  return { ids: new Tensor(ids, 'i32', [B, T]), attentionMask: new Tensor(mask, 'f32', [B, T]), lengths };
}
