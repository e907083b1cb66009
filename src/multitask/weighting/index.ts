/** Task loss weightings, registered by name: 'static', 'uncertainty' (Kendall et al. 2018), 'dwa' (Liu et al. 2019). */
export { registerTaskWeighting, makeTaskWeighting, listTaskWeightings, weightedSum, type TaskWeighting, type TaskWeightingOptions, type TaskWeightingFactory } from './weighting.js';
export { staticWeighting } from './static.js';
export { UncertaintyWeighting } from './uncertainty.js';
export { DwaWeighting, dwaWeights } from './dwa.js';
