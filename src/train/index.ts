/** The trainer: `new AutoGLMTrainer({ model, config }).finetune({ dataset })`. */
export { AutoGLMTrainer, isChatPrediction, isSftEvalResult, isDpoEvalResult, type FinetuneArgs, type TrainerOptions, type LoadRunOptions } from './trainer.js';
export type { ChatPrediction, ChatGenerationOptions, SftEvalResult, SftEvalOptions } from '../sft/types.js';
export type { DpoEvalResult } from './dpo.js';
export { registerTask, taskNames } from './tasks.js';
export type { TaskDefinition, TrainingTask, TaskContext, TaskEval, MicroBatchLoss } from './task.js';
export { parseTrainerConfig, trainerConfigSchema, DEFAULT_LR, type TrainerConfig, type TrainerConfigInput } from './config.js';
export type { History, Callback, StepLog, EvalLog, EpochLog, PreferenceRewards } from './history.js';
export { classificationReport, type ClassificationReport } from './metrics.js';
export type { EvalResult, Prediction } from './evaluate.js';
