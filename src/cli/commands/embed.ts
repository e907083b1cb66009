/** `autoglm embed TEXT...`: sentence embeddings from the embedded default model (open-autoglm-base, USE-Lite). */
import type { Command } from 'commander';
import { applyThreads, intOption } from '../options.js';

interface EmbedOpts {
  json?: boolean;
  batchSize: number;
  threads?: number;
  weights?: string;
}

export function registerEmbed(program: Command): void {
  program.command('embed')
    .description('512-d sentence embeddings from open-autoglm-base (Universal Sentence Encoder Lite)')
    .argument('<texts...>', 'one or more texts (quote each)')
    .option('--json', 'print {"model", "dim", "texts", "embeddings"} as one JSON line')
    .option('--batch-size <n>', 'sentences per forward pass', intOption('--batch-size'), 32)
    .option('--threads <n>', 'kernel threads (default: all cores)', intOption('--threads'))
    .option('--weights <dir>', 'folder with model.json, shards and vocab.json (default: the installed package)')
    .action(async (texts: string[], o: EmbedOpts) => {
      applyThreads(o.threads);
      const { loadUSELite } = await import('../../models/use-lite/index.js');
      const model = loadUSELite({ dir: o.weights });
      const e = model.embed(texts, { batchSize: o.batchSize });
      const D = e.shape[1], flat = e.f32();
      const rows = texts.map((_, i) => Array.from(flat.subarray(i * D, (i + 1) * D)));
      if (o.json) {
        console.log(JSON.stringify({ model: 'open-autoglm-base', dim: D, texts, embeddings: rows }));
        return;
      }
      rows.forEach((r, i) => {
        const head = r.slice(0, 6).map((v) => v.toFixed(4)).join(', ');
        console.log(`[${i}] ${JSON.stringify(texts[i])}\n    [${head}, ...] (${D} values, L2-normalised)`);
      });
      if (rows.length > 1) {
        console.log('cosine similarity:');
        const dot = (a: number[], b: number[]) => a.reduce((s, v, j) => s + v * b[j], 0);
        for (const a of rows) console.log('  ' + rows.map((b) => dot(a, b).toFixed(3).padStart(6)).join(' '));
      }
    });
}
