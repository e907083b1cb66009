/** Amazon MASSIVE en-US (FitzGerald et al. 2022): train / validation / test.jsonl with `text` and `label_text` (60 intents). */
import { toExamples } from '../examples.js';
import { readJsonl } from '../readers.js';
import { chooseLabelSet, type NamedDataset } from '../registry.js';
import { requireFile } from './common.js';

export const massiveEn: NamedDataset = {
  name: 'massive-en',
  description: 'MASSIVE en-US: 60 intents, given train / validation / test',
  labelSets: ['intent'],
  defaultOnBadLine: 'skip',
  load({ spec, dataDir, sink }) {
    chooseLabelSet(this, spec);
    const split = (name: string) =>
      toExamples(readJsonl(requireFile(dataDir, 'massive-en', `${name}.jsonl`, 'massive-en'), sink), { text: 'text', label: 'label_text' }, sink, spec.labelMap);
    return { train: split('train'), validation: split('validation'), test: split('test'), extraSets: [] };
  },
};
