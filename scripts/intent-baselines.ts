// Bag-of-words baselines of a classification dataset (default custom_intent_v2): the logistic regression that
// `autoglm finetune` prints beside its own accuracy, for each C of its grid, and a multinomial Naive Bayes.
//   node --import tsx scripts/intent-baselines.ts [dataset | folder with train/validation/test.jsonl]
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadDataset } from '../src/data/index.js';
import { BOW_C_GRID, BowLogisticRegression, MultinomialNaiveBayes, bowBaseline } from '../src/eval/index.js';

const arg = process.argv[2] ?? 'custom_intent_v2';
const d = existsSync(arg) && statSync(arg).isDirectory()
  ? loadDataset({ dataset: join(arg, 'train.jsonl'), evalDataset: join(arg, 'validation.jsonl'), testDataset: join(arg, 'test.jsonl') })
  : loadDataset({ dataset: arg });
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
console.log(`${d.name}: ${d.labels.length} labels, train ${d.train.length}, validation ${d.validation.length}, test ${d.test.length}`);
for (const c of BOW_C_GRID) {
  const t0 = performance.now();
  const m = BowLogisticRegression.fit(d.train, { l2: 1 / (c * d.train.length) });
  console.log(`logistic regression C=${c}: train ${pct(m.accuracy(d.train))}  validation ${pct(m.accuracy(d.validation))}  test ${pct(m.accuracy(d.test))}  (${m.numFeatures} features, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
const nb = MultinomialNaiveBayes.fit(d.train);
console.log(`naive bayes (alpha 1): validation ${pct(nb.accuracy(d.validation))}  test ${pct(nb.accuracy(d.test))}`);
const b = bowBaseline(d);
console.log(`bowBaseline (as printed by autoglm finetune): test ${pct(b.accuracy)} (C ${b.c} chosen on validation ${pct(b.validationAccuracy)}, ${b.seconds.toFixed(1)} s)`);
