/**
 * SLURP text (Bastianelli et al., EMNLP 2020): devel.jsonl and test.jsonl with `sentence` and three label sets on
 * each text: intent (default), scenario, action. No train file: train and validation are a seeded split of devel.
 */
import { toExamples } from '../examples.js';
import { readJsonl } from '../readers.js';
import { chooseLabelSet, type NamedDataset } from '../registry.js';
import { requireFile } from './common.js';

export const slurp: NamedDataset = {
  name: 'slurp',
  description: 'SLURP text: intent / scenario / action label sets; train + validation carved from devel, test given',
  labelSets: ['intent', 'scenario', 'action'],
  defaultOnBadLine: 'skip',
  load({ spec, dataDir, sink }) {
    const { primary, others } = chooseLabelSet(this, spec);
    const fields = { text: 'sentence', label: primary, extra: Object.fromEntries(others.map((o) => [o, o])) };
    const split = (name: string) => toExamples(readJsonl(requireFile(dataDir, 'slurp', `${name}.jsonl`, 'slurp'), sink), fields, sink, spec.labelMap);
    return { train: split('devel'), test: split('test'), extraSets: others };
  },
};
