/** The data layer's public types: examples, splits, the dataset spec and bad-line reports. */

export interface Example {
  text: string;
  label: string;
  /** Other label sets (multi-task), e.g. `{ domain: 'banking' }`. */
  extra?: Record<string, string>;
}

/** A line (or record) that could not be used, with its file and 1-based line. */
export interface BadLine {
  file: string;
  line: number;
  reason: string;
}

export type BadLinePolicy = 'skip' | 'error';

export interface DatasetSplits {
  name: string;
  train: Example[];
  validation: Example[];
  test: Example[];
  /** Sorted label names of the primary label set, from train; index = class id. */
  labels: string[];
  /** Other label sets available (e.g. `['domain']`) with their sorted label names. */
  extraLabels: Record<string, string[]>;
  skipped: BadLine[];
}

export interface DatasetSpec {
  /** A named dataset ('clinc150', 'snips', 'massive-en', 'slurp', 'custom_intent_v2') or a file path (.jsonl/.json/.csv). */
  dataset: string;
  evalDataset?: string;
  testDataset?: string;
  /** Field names of the text and the label in user files; default 'text' / 'label'. Named datasets use their own fields and ignore these. */
  textField?: string;
  labelField?: string;
  /** Which label set is primary (slurp: 'intent' | 'scenario' | 'action'; clinc150: 'intent' | 'domain'). */
  labelSet?: string;
  /**
   * User files with several label sets (multi-task `tasks`): the label fields to read, each a label set of its own name,
   * the primary one `labelField` (default: the first of these). A record may lack some of them (no label for that
   * task: '' , left out of its loss) but needs at least one. The multi-task trainer sets this from `tasks`.
   */
  labelFields?: string[];
  /** Renames (or merges) labels: raw label -> name, applied to every split before anything else; unmapped labels are kept. */
  labelMap?: Record<string, string>;
  /** clinc150 only: keep the out-of-scope examples as the class 'oos' (domain 'oos'). Default false. */
  includeOos?: boolean;
  dataDir?: string;
  /** Default 'error' for user files, 'skip' for the named public datasets. */
  onBadLine?: BadLinePolicy;
  /** Seeded (per-label stratified) split fractions when a split is missing. Defaults 0.1 / 0.1. */
  validationFraction?: number;
  testFraction?: number;
  /** Seed of the splits and caps. Default 42. */
  seed?: number;
  /** Cap examples per split (a seeded subset, original order kept), for quick runs. */
  maxTrain?: number;
  maxEval?: number;
}
