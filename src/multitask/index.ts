/** Multi-task learning: a shared backbone with one head per task, task loss weighting, task samplers. */
export { MultiTaskClassifier, type TaskSpec } from './heads.js';
export * from './weighting/index.js';
export { makeTaskSampler, registerTaskSampler, taskProbabilities, ProbabilityTaskSampler, RoundRobinTaskSampler, type TaskSampler, type TaskSamplerOptions } from './sampling.js';
export { checkTaskConfig, primaryLabelSet, resolveTasks, staticTaskWeights, taskLabel, taskTargets, type TaskConfig } from './tasks.js';
export { encodeExamples, evaluateTasks, predictTasks, scoreTasks, taskLogits, taskLogitsAsync, type MultiTaskEvalResult, type MultiTaskPrediction, type TaskPrediction } from './evaluate.js';
