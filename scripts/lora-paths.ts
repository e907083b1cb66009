/**
 * loraLinear's three bf16 paths for the benchmarks that set them side by side (bench-bf16-parts.ts lora,
 * bench-lora-step.ts), each reached by hiding the backend methods it must not use.
 */
import { backend } from '../src/backend/index.js';

/** [name, the backend methods hidden to take it]. */
export const LORA_BF16_PATHS: [string, string[]][] = [
  ['rows kernel', []], // the rank-r products in the pass that casts the rows (loraRows, loraOuter)
  ['appended, products', ['loraRows', 'loraOuter']], // the factors appended to the base product, their own products by oneDNN
  ['two products', ['castRowsBf16', 'loraRows', 'loraOuter']], // the composition
];

/** fn() with the current backend's `names` methods hidden (undefined), restored after. */
export function withHidden<T>(names: string[], fn: () => T): T {
  const be = backend() as unknown as Record<string, unknown>;
  const own = names.map((k) => [k, Object.getOwnPropertyDescriptor(be, k)] as const);
  for (const k of names) Object.defineProperty(be, k, { value: undefined, configurable: true, writable: true });
  try {
    return fn();
  } finally {
    for (const [k, d] of own) {
      if (d) Object.defineProperty(be, k, d);
      else delete be[k];
    }
  }
}
