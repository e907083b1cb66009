/**
 * What each rank of `autoglm launch` runs: the CLI's `main` with the rank's command line. As a child process
 * (backend gloo) the command line is argv and the rank comes from AUTOGLM_* variables; as a worker thread
 * (backend local) both come through workerData (see src/distributed/env.ts).
 */
import { isMainThread, workerData } from 'node:worker_threads';
import { main } from './main.js';

const argv = isMainThread ? process.argv.slice(2) : ((workerData as { args: { argv: string[] } }).args.argv);
process.exitCode = await main(argv);
