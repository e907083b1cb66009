/**
 * custom_intent_v2: the project's own default dataset, embedded in the package (datasets/custom_intent_v2), made by
 * scripts/gen-custom-intent.mjs: 25 personal-assistant intents that share their vocabulary, with templated,
 * paraphrased and typo'd utterances; validation and test use phrasings and slot values that training never shows.
 */
import { join } from 'node:path';
import { toExamples } from '../examples.js';
import { readJsonl } from '../readers.js';
import { packageRoot } from '../paths.js';
import { chooseLabelSet, type NamedDataset } from '../registry.js';
import { requireFile } from './common.js';

export const customIntentV2: NamedDataset = {
  name: 'custom_intent_v2',
  description: 'embedded personal-assistant intents (generated, deterministic): given train / validation / test',
  labelSets: ['intent'],
  defaultOnBadLine: 'error',
  load({ spec, sink }) {
    chooseLabelSet(this, spec);
    const dir = join(packageRoot(), 'datasets');
    const split = (name: string) =>
      toExamples(readJsonl(requireFile(dir, 'custom_intent_v2', `${name}.jsonl`, 'custom_intent_v2'), sink), { text: 'text', label: 'label' }, sink, spec.labelMap);
    return { train: split('train'), validation: split('validation'), test: split('test'), extraSets: [] };
  },
};
