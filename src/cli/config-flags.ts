/**
 * Trainer-config flags generated from the config schema itself, so the CLI and the library take the same typed
 * config: key `learningRate` is flag `--learning-rate <value>`; values parse as JSON where they can (numbers,
 * booleans, arrays) and as strings otherwise; `--config file.json` supplies a whole object (flags win).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { trainerConfigSchema } from '../train/config.js';
import { ConfigError } from '../errors.js';

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function parseValue(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    return v.includes(',') && !v.includes(' ') ? v.split(',') : v;
  }
}

function defaultOf(schema: z.ZodTypeAny): unknown {
  const r = schema.safeParse(undefined);
  return r.success ? r.data : undefined;
}

export function addConfigFlags(cmd: Command): Command {
  for (const [key, schema] of Object.entries(trainerConfigSchema.shape) as Array<[string, z.ZodTypeAny]>) {
    const d = defaultOf(schema);
    const desc = `${schema.description ?? key}${d !== undefined ? ` (default ${JSON.stringify(d)})` : ''}`;
    cmd.option(`--${kebab(key)} <value>`, desc);
  }
  cmd.option('--config <file.json>', 'a JSON file with trainer config keys (flags override it)');
  return cmd;
}

/** The trainer config object from `--config` and the flags. */
export function configFromFlags(opts: Record<string, unknown>): Record<string, unknown> {
  let cfg: Record<string, unknown> = {};
  if (typeof opts.config === 'string') {
    try {
      cfg = JSON.parse(readFileSync(opts.config, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`--config ${opts.config}: ${(e as Error).message}`, { cause: e });
    }
    if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new ConfigError(`--config ${opts.config} must hold a JSON object`);
  }
  const keys = new Set(Object.keys(trainerConfigSchema.shape));
  for (const [k, v] of Object.entries(opts)) {
    if (keys.has(k) && v !== undefined) cfg[k] = typeof v === 'string' ? parseValue(v) : v;
  }
  return cfg;
}
