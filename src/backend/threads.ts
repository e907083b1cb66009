/** How many kernel threads a backend starts with: AUTOGLM_NUM_THREADS, else every core the OS offers. */
import os from 'node:os';
import { ConfigError } from '../errors.js';

export function threadCount(): number {
  const env = process.env.AUTOGLM_NUM_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new ConfigError(`environment variable AUTOGLM_NUM_THREADS is '${env}'; expected a positive integer`);
    return n;
  }
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}
