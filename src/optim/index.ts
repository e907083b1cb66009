export { Optimizer, type ParamGroup, type ParamsInput, type OptimizerState } from './optimizer.js';
export { SGD, type SGDOptions } from './sgd.js';
export { AdamW, Adam, type AdamOptions } from './adam.js';
export { clipGradNorm, clipCoefficient, gradNorm } from './clip.js';
export { constantSchedule, linearSchedule, cosineSchedule, SCHEDULES, ReduceLROnPlateau, EarlyStopping, type Schedule, type ScheduleOptions } from './schedule.js';
export { RMSprop, type RMSpropOptions } from './rmsprop.js';
export { AdamW8bit, STATE_BLOCK, MIN_8BIT_SIZE, type AdamW8bitOptions } from './adamw8bit.js';
