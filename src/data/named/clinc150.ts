/**
 * CLINC150 (Larson et al., EMNLP 2019): data_full.json with train / val / test lists of [text, intent] (150
 * in-scope intents) and oos_* lists (out-of-scope, left out unless `includeOos`); domains.json maps each of the
 * 10 domains to its 15 intents, giving the second label set 'domain'.
 */
import { readFileSync } from 'node:fs';
import { DatasetError } from '../../errors.js';
import { toExamples, type Located } from '../examples.js';
import { readJson, type RawRecord } from '../readers.js';
import { chooseLabelSet, type NamedDataset } from '../registry.js';
import { requireFile } from './common.js';

const SPLITS = { train: 'train', validation: 'val', test: 'test' } as const;

export const clinc150: NamedDataset = {
  name: 'clinc150',
  description: 'CLINC150 intents: 150 intents in 10 domains (label sets intent, domain); optional oos class',
  labelSets: ['intent', 'domain'],
  defaultOnBadLine: 'skip',
  load({ spec, dataDir, sink }) {
    const dataFile = requireFile(dataDir, 'clinc150', 'data_full.json', 'clinc150');
    const domainsFile = requireFile(dataDir, 'clinc150', 'domains.json', 'clinc150');
    const domainOf = readDomains(domainsFile);
    const oos = spec.includeOos === true;
    const keys = Object.values(SPLITS).flatMap((k) => (oos ? [k, `oos_${k}`] : [k]));
    const { records } = readJson(dataFile, sink, keys);
    const { primary, others } = chooseLabelSet(this, spec);
    const bySplit = new Map<string, RawRecord[]>();
    for (const r of records) {
      const split = r.key.replace(/^oos_/, '');
      const v = r.value;
      const value = Array.isArray(v) && v.length === 2
        ? { text: v[0], intent: v[1], domain: v[1] === 'oos' ? 'oos' : domainOf.get(v[1] as string) }
        : v;
      const list = bySplit.get(split) ?? [];
      list.push({ file: r.file, line: r.line, value });
      bySplit.set(split, list);
    }
    const ex = (k: string): Located[] => toExamples(bySplit.get(k) ?? [], { text: 'text', label: primary, extra: Object.fromEntries(others.map((o) => [o, o])) }, sink, spec.labelMap);
    return { train: ex(SPLITS.train), validation: ex(SPLITS.validation), test: ex(SPLITS.test), extraSets: others };
  },
};

function readDomains(file: string): Map<string, string> {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new DatasetError(`${file}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
  const out = new Map<string, string>();
  for (const [domain, intents] of Object.entries(doc as Record<string, unknown>)) {
    if (!Array.isArray(intents)) throw new DatasetError(`${file}: domain '${domain}' does not list intents; expected { "<domain>": ["<intent>", ...] }`);
    for (const i of intents) out.set(String(i), domain);
  }
  return out;
}
