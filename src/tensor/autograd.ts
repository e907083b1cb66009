/**
 * Reverse-mode automatic differentiation on a tape. Each differentiable op records, on its output, a node
 * holding its inputs and a closure that maps the output gradient to input gradients. `backward()` walks the
 * nodes in reverse topological order, accumulating gradients; leaves (tensors with `requiresGrad` and no node)
 * receive theirs in `.grad`, summed across calls (gradient accumulation). The graph is freed after a backward
 * pass unless `retainGraph` is set, so a training step holds no memory beyond its own activations.
 */
import type { Tensor } from './tensor.js';
import { AutoGLMError, fmtShape } from '../errors.js';

export interface GradNode {
  readonly op: string;
  readonly inputs: Tensor[];
  /** Gradients of the inputs (null where an input needs none), given the output gradient. */
  readonly backward: (gy: Tensor) => (Tensor | null)[];
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording any op on the tape (evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Like noGrad, for async functions. */
export async function noGradAsync<T>(fn: () => Promise<T>): Promise<T> {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return await fn();
  } finally {
    gradEnabled = prev;
  }
}

/**
 * Records `out = op(inputs)` on the tape when gradients are enabled and some input requires one.
 * Returns `out` for chaining.
 */
export function record(op: string, inputs: Tensor[], out: Tensor, backward: GradNode['backward']): Tensor {
  if (!gradEnabled) return out;
  let needs = false;
  for (const t of inputs) if (t.requiresGrad) { needs = true; break; }
  if (!needs) return out;
  out.requiresGrad = true;
  out.node = { op, inputs, backward };
  return out;
}

/** Reverse topological order of the nodes reachable from `root` (root first). */
function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: deep graphs (long sequences of ops) must not overflow the JS stack.
  const stack: Array<[Tensor, number]> = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node ? t.node.inputs : [];
    if (i < inputs.length) {
      top[1] = i + 1;
      const c = inputs[i];
      if (c.requiresGrad && c.node && !seen.has(c)) {
        seen.add(c);
        stack.push([c, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order.reverse();
}

export interface BackwardOptions {
  /** Gradient of the root; defaults to 1 for a scalar root. */
  gradient?: Tensor;
  /** Keep the graph for a second backward pass. */
  retainGraph?: boolean;
}

/**
 * Computes gradients of `root` with respect to every leaf that requires one. Called as `loss.backward()`.
 * `ones` and `accumulate` come from the tensor module (passed in to keep this file free of op imports).
 */
export function runBackward(
  root: Tensor,
  opts: BackwardOptions,
  helpers: { onesLike: (t: Tensor) => Tensor; add: (a: Tensor, b: Tensor) => Tensor; leafGrad: (leaf: Tensor, g: Tensor) => Tensor },
): void {
  if (!root.requiresGrad) {
    throw new AutoGLMError(`'backward' was called on a tensor that does not require grad (shape ${fmtShape(root.shape)}); ` +
      `set requiresGrad on a parameter that it depends on`);
  }
  let seed = opts.gradient;
  if (!seed) {
    if (root.size !== 1) {
      throw new AutoGLMError(`'backward' without a gradient needs a scalar; got shape ${fmtShape(root.shape)} (pass { gradient })`);
    }
    seed = helpers.onesLike(root);
  }
  const order = topoOrder(root);
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, seed);
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    if (!root.node) {
      root.grad = helpers.leafGrad(root, seed);
      return;
    }
    for (const t of order) {
      const g = grads.get(t);
      const node = t.node;
      if (!node) continue;
      grads.delete(t);
      if (!g) continue;
      const inGrads = node.backward(g);
      for (let i = 0; i < node.inputs.length; i++) {
        const x = node.inputs[i];
        const gx = inGrads[i];
        if (!gx || !x.requiresGrad) continue;
        if (!x.node) {
          x.grad = helpers.leafGrad(x, gx);
        } else {
          const prevG = grads.get(x);
          grads.set(x, prevG ? helpers.add(prevG, gx) : gx);
        }
      }
      if (!opts.retainGraph) t.node = null;
    }
  } finally {
    gradEnabled = prev;
  }
}
