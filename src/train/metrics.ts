/** Classification metrics: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix. */

export interface ClassificationReport {
  accuracy: number;
  macro_f1: number;
  per_class: Array<{ label: string; precision: number; recall: number; f1: number; support: number }>;
  /** confusion[true][predicted] */
  confusion: number[][];
  n: number;
}

export function classificationReport(truth: ArrayLike<number>, pred: ArrayLike<number>, labels: string[]): ClassificationReport {
  const k = labels.length;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  let correct = 0;
  for (let i = 0; i < truth.length; i++) {
    confusion[truth[i]][pred[i]]++;
    if (truth[i] === pred[i]) correct++;
  }
  const per_class = labels.map((label, c) => {
    const tp = confusion[c][c];
    let fp = 0, fn = 0;
    for (let j = 0; j < k; j++) {
      if (j !== c) {
        fp += confusion[j][c];
        fn += confusion[c][j];
      }
    }
    const precision = tp + fp ? tp / (tp + fp) : 0;
    const recall = tp + fn ? tp / (tp + fn) : 0;
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
    return { label, precision, recall, f1, support: tp + fn };
  });
  const present = per_class.filter((c) => c.support > 0);
  const macro_f1 = present.length ? present.reduce((a, c) => a + c.f1, 0) / present.length : 0;
  return { accuracy: truth.length ? correct / truth.length : 0, macro_f1, per_class, confusion, n: truth.length };
}
