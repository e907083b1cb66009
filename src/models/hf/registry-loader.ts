/** The loader behind the registry names 'gpt2', 'llama', 'bert', 'glm' and 'hf' (see ../registry.ts). */
import { ConfigError } from '../../errors.js';
import { HFConfig } from './config.js';
import { familyOf, type HFModel } from './family.js';
import { buildHFModel, loadHFModel, type HubOptions, type LoadHFOptions } from './loader.js';

export async function loadRegistered(family: string, opts: Record<string, unknown>): Promise<HFModel> {
  const { path: source, config, ...rest } = opts as { path?: unknown; config?: unknown } & LoadHFOptions & HubOptions;
  let model: HFModel;
  if (typeof source === 'string') {
    model = await loadHFModel(source, rest);
  } else if (config && typeof config === 'object') {
    const c = { model_type: family === 'hf' ? undefined : family, ...(config as Record<string, unknown>) };
    model = buildHFModel(c, rest);
  } else {
    throw new ConfigError(`loadModel('${family}') needs option 'path' (a model folder or Hub id) or 'config' (a config.json object)`);
  }
  if (family !== 'hf' && model.hf?.family !== family) {
    const got = model.hf ? familyOf(new HFConfig(model.hf.config, 'config.json')).name : 'unknown';
    throw new ConfigError(`loadModel('${family}') got a '${got}' model; use loadModel('${got}') or loadModel('hf')`);
  }
  return model;
}
