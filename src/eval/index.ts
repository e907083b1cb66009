/** Evaluation helpers beside the trainer's own metrics: bag-of-words baselines. */
export { bowTokens, bowFeatures, bowBaseline, BowLogisticRegression, MultinomialNaiveBayes, BOW_C_GRID } from './bow-baseline.js';
export type { BowBaselineResult, BowLogisticRegressionOptions } from './bow-baseline.js';
