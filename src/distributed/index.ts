/** Data-parallel communication: the `Communicator` interface, its backends, the local launcher and rank discovery. */
export { emptyStats, type CommStats, type Communicator, type CommunicatorBackend } from './communicator.js';
export { SingleCommunicator } from './single.js';
export { LocalCommunicator, LocalGroup, LOCAL_DEFAULTS, type LocalGroupData, type LocalGroupOptions } from './local.js';
export { runLocal, threadsPerRank, RankFailedError, type LocalWorkerData, type RankExit, type RunLocalOptions } from './run-local.js';
export { currentRankInfo, createCommunicator, type RankInfo, type CreateCommunicatorOptions } from './env.js';
export { GlooCommunicator, glooAvailable, GLOO_HINT, type GlooOptions } from './gloo.js';
export { DataParallel, type DataParallelOptions, type CommunicationSummary } from './data-parallel.js';
