/**
 * Loading a 16-bit checkpoint with 16-bit storage (`dtype: 'keep'`) must take at most 0.55x the resident
 * memory of loading it as f32, and quantising while loading (QLoRA's load) must peak at the quantised base, not the
 * checkpoint. Each mode loads a generated bf16 Llama checkpoint in its own process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildHFModel, saveHFModel } from '../src/models/hf/index.js';
import { manualSeed } from '../src/nn/init.js';

const ROOT = path.dirname(fileURLToPath(import.meta.url));

function loadRss(dir: string, mode: 'f32' | 'keep' | 'nf4'): { rssDeltaMB: number; peakDeltaMB: number; paramMB: number; dtypes: string[] } {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(ROOT, 'helpers', 'hf-load-rss.ts'), dir, mode],
    { encoding: 'utf8', env: process.env });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string);
}

/** Runs `fn` on a folder holding a bf16 checkpoint of a random 8-layer Llama (hidden 512, MLP 1376) of `vocab` tokens. */
function withBf16Llama(vocab: number, fn: (dir: string) => void): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-hf-mem-'));
  try {
    manualSeed(0);
    const model = buildHFModel({
      model_type: 'llama', vocab_size: vocab, hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8,
      num_attention_heads: 8, num_key_value_heads: 4, tie_word_embeddings: false,
    });
    saveHFModel(model, dir, { dtype: 'bf16' });
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a bf16 checkpoint loaded with 16-bit storage takes <= 0.55x the resident memory of an f32 load', (t) => {
  withBf16Llama(8000, (dir) => {
    const f32 = loadRss(dir, 'f32');
    const keep = loadRss(dir, 'keep');
    assert.deepEqual(f32.dtypes, ['f32']);
    assert.deepEqual(keep.dtypes, ['bf16']);
    const ratio = keep.rssDeltaMB / f32.rssDeltaMB;
    t.diagnostic(`parameters ${f32.paramMB.toFixed(1)} MB as f32, ${keep.paramMB.toFixed(1)} MB as bf16; RSS growth f32 ${f32.rssDeltaMB.toFixed(1)} MB, ` +
      `keep ${keep.rssDeltaMB.toFixed(1)} MB: ratio ${ratio.toFixed(3)}`);
    assert.ok(ratio <= 0.55, `16-bit load used ${ratio.toFixed(3)}x the memory of the f32 load`);
  });
});

test('quantising while loading (QLoRA): the peak is the NF4 base and a tensor, not the bf16 checkpoint whole', (t) => {
  if (process.platform !== 'linux') {
    t.skip('reads the peak from /proc/self/status (Linux)');
    return;
  }
  // the Linear layers dominate (vocabulary 1000): 23.3M weights, 46.6 MB in bf16, 12.1 MB in NF4
  withBf16Llama(1000, (dir) => {
    const keep = loadRss(dir, 'keep');
    const nf4 = loadRss(dir, 'nf4');
    assert.deepEqual(nf4.dtypes, ['bf16', 'f32', 'i8']); // norms f32 (the nested absmax too), codes i8, table and head bf16
    const ratio = nf4.peakDeltaMB / keep.peakDeltaMB;
    t.diagnostic(`parameters bf16 ${keep.paramMB.toFixed(1)} MB, NF4 ${nf4.paramMB.toFixed(1)} MB; peak RSS growth of the load: bf16 ${keep.peakDeltaMB.toFixed(1)} MB, ` +
      `NF4 while loading ${nf4.peakDeltaMB.toFixed(1)} MB: ratio ${ratio.toFixed(3)}`);
    assert.ok(ratio <= 0.6, `quantising while loading peaked at ${ratio.toFixed(3)}x the bf16 load's growth`);
  });
});
