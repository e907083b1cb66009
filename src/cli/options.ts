/** Option parsing helpers shared by the commands: typed, validated, with errors naming the flag. */
import { ConfigError } from '../errors.js';

export function intOption(flag: string, min = 1, max = Infinity): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      const range = max === Infinity ? `>= ${min}` : `from ${min} to ${max}`;
      throw new ConfigError(`option '${flag}' is '${v}'; expected an integer ${range}`);
    }
    return n;
  };
}

export function choiceOption<T extends string>(flag: string, choices: readonly T[]): (v: string) => T {
  return (v: string) => {
    if (!choices.includes(v as T)) throw new ConfigError(`option '${flag}' is '${v}'; expected one of ${choices.join(', ')}`);
    return v as T;
  };
}

/** Applies --threads before the backend loads (the native library reads it once). */
export function applyThreads(threads: number | undefined): void {
  if (threads !== undefined) process.env.AUTOGLM_NUM_THREADS = String(threads);
}
