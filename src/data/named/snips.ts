/**
 * SNIPS NLU benchmark, 2017 custom intent engines (Coucke et al. 2018): per intent `train_<Intent>_full.json` and
 * `validate_<Intent>.json`, each `{ <Intent>: [ { data: [ { text, entity? }, ... ] }, ... ] }`; the utterance is the
 * concatenation of the `text` pieces. validate_* is the test split (this layout has no other); validation is carved
 * from train. Some files hold invalid UTF-8: those records are reported per the bad-line policy (default skip).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatasetError } from '../../errors.js';
import { toExamples, type Located } from '../examples.js';
import { readJson, type RawRecord } from '../readers.js';
import { chooseLabelSet, type NamedContext, type NamedDataset } from '../registry.js';
import { requireFile } from './common.js';

export const snips: NamedDataset = {
  name: 'snips',
  description: 'SNIPS 2017 custom intents: 7 intents; test = validate_*, validation carved from train',
  labelSets: ['intent'],
  defaultOnBadLine: 'skip',
  load(ctx) {
    chooseLabelSet(this, ctx.spec);
    requireFile(ctx.dataDir, 'snips', '', 'snips');
    const dir = join(ctx.dataDir, 'snips');
    const files = readdirSync(dir).sort();
    const train = files.filter((f) => /^train_\w+_full\.json$/.test(f));
    const test = files.filter((f) => /^validate_\w+\.json$/.test(f));
    if (train.length === 0) throw new DatasetError(`'loadDataset': dataset 'snips' has no train_<Intent>_full.json files in '${dir}'`);
    return { train: readAll(ctx, dir, train), test: readAll(ctx, dir, test), extraSets: [] };
  },
};

function readAll({ sink, spec }: NamedContext, dir: string, files: string[]): Located[] {
  const out: Located[] = [];
  for (const f of files) {
    const { records } = readJson(join(dir, f), sink);
    const recs: RawRecord[] = records.map((r) => {
      const data = (r.value as { data?: unknown } | null)?.data;
      const text = Array.isArray(data) ? data.map((p) => (p as { text?: unknown })?.text ?? '').join('') : undefined;
      return { file: r.file, line: r.line, value: text === undefined ? {} : { text: text.replace(/\s+/g, ' '), intent: r.key } };
    });
    out.push(...toExamples(recs, { text: 'text', label: 'intent' }, sink, spec.labelMap));
  }
  return out;
}
