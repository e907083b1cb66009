export { Optimizer, type ParamGroup, type ParamsInput } from './optimizer.js';
export { SGD, type SGDOptions } from './sgd.js';
export { AdamW, Adam, type AdamOptions } from './adam.js';
export { clipGradNorm, clipCoefficient, gradNorm } from './clip.js';
export { constantSchedule, linearSchedule, cosineSchedule, SCHEDULES, ReduceLROnPlateau, EarlyStopping, type Schedule, type ScheduleOptions } from './schedule.js';
export { RMSprop, type RMSpropOptions } from './rmsprop.js';
