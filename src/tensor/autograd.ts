/**
 * Reverse-mode automatic differentiation on a tape. Each differentiable op records, on its output, a node
 * holding its inputs and a closure that maps the output gradient to input gradients. `backward()` walks the
 * nodes in reverse topological order, accumulating gradients; leaves (tensors with `requiresGrad` and no node)
 * receive theirs in `.grad`, summed across calls (gradient accumulation). The graph is freed after a backward
 * pass unless `retainGraph` is set, so a training step holds no memory beyond its own activations.
 */
import type { Tensor } from './tensor.js';
import { AutoGLMError, fmtShape } from '../errors.js';
import { collectAfterBackward, ownsWholeBuffer, releaseBuffer } from './alloc.js';
import { sameShape } from './shape.js';

/**
 * An edge of the graph: a leaf tensor (a parameter: its `.grad` receives the gradient) or the node that made
 * an intermediate tensor. Intermediate tensors themselves are not referenced by the graph, so their storage is
 * freed as soon as no backward closure needs it (an op that needs its input's values captures them itself).
 */
export type Edge = { leaf: Tensor } | { node: GradNode } | null;

export interface GradNode {
  readonly op: string;
  readonly edges: Edge[];
  /** Gradients of the inputs (null where an input needs none), given the output gradient; null once used. */
  /**
   * `last` is true when the graph is freed after this pass: saved buffers may then be reused in place. `ownGy`: gy's
   * buffer is this call's alone (nothing pending, stored or seeded shares it, and it spans its buffer): the backward
   * pass may write an input's gradient over it and return that (the engine then keeps it alive as that gradient).
   */
  backward: ((gy: Tensor, last?: boolean, ownGy?: boolean) => (Tensor | null)[]) | null;
  /** Shape of the output (for error messages). */
  readonly shape: number[];
  /** Buffers that go back to the pool at the end of the backward pass that frees this node (releaseWithGraph). */
  release?: (Float32Array | Uint16Array)[];
  /**
   * The backward pass reads none of the inputs, parameters aside (a sum; a norm that rebuilds from its output, which
   * reads only its gamma): an input its caller reads no more may go back to the pool in the forward pass
   * (elementwise.ts, releaseAfterRead).
   */
  holdsNoInput?: boolean;
}

/**
 * Each `t` is an intermediate that only ops of the graph being recorded read, and that nothing writes over (a block's
 * residual stream between its two sublayers): its maker promises to keep no reference to it. Its buffer goes back to
 * the pool at the end of the backward pass that frees the node that made it, when no backward closure can read it
 * any more, instead of waiting for V8's next collection. Nothing happens without a graph, or where t does not
 * span a buffer of its own.
 */
export function releaseWithGraph(...ts: Tensor[]): void {
  for (const t of ts) if (t.node && ownsWholeBuffer(t)) (t.node.release ??= []).push(t.storage as Float32Array | Uint16Array);
}

let gradEnabled = true;
/** How many backward passes are running (a checkpointed segment runs one inside another). */
let depth = 0;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` with recording switched on or off, restoring the previous mode afterwards. */
function withGradMode<T>(on: boolean, fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = on;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Runs `fn` without recording any op on the tape (evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs `fn` with recording on (the recomputation inside a checkpointed segment's backward pass). */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
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
export function record(op: string, inputs: Tensor[], out: Tensor, backward: (gy: Tensor, last?: boolean, ownGy?: boolean) => (Tensor | null)[]): Tensor {
  if (!gradEnabled) return out;
  let needs = false;
  for (const t of inputs) if (t.requiresGrad) { needs = true; break; }
  if (!needs) return out;
  const edges: Edge[] = inputs.map((t) => (!t.requiresGrad ? null : t.node ? { node: t.node } : { leaf: t }));
  out.requiresGrad = true;
  out.node = { op, edges, backward, shape: out.shape };
  return out;
}

/** A contiguous f32 tensor that spans its whole buffer (so writing it in place touches nothing else). */
function ownsBuffer(t: Tensor): boolean {
  return t.dtype === 'f32' && ownsWholeBuffer(t);
}

/** Nodes reachable from `root` in reverse topological order (root first). */
function topoOrder(root: GradNode): GradNode[] {
  const order: GradNode[] = [];
  const seen = new Set<GradNode>([root]);
  // Iterative DFS: deep graphs (long sequences of ops) must not overflow the JS stack.
  const stack: Array<[GradNode, number]> = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [n, i] = top;
    if (i < n.edges.length) {
      top[1] = i + 1;
      const e = n.edges[i];
      if (e && 'node' in e && !seen.has(e.node)) {
        seen.add(e.node);
        stack.push([e.node, 0]);
      }
    } else {
      stack.pop();
      order.push(n);
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
 * `ones`, `add` and `leafGrad` come from the tensor module (passed in to keep this file free of op imports).
 */
export function runBackward(
  root: Tensor,
  opts: BackwardOptions,
  helpers: {
    onesLike: (t: Tensor) => Tensor;
    add: (a: Tensor, b: Tensor) => Tensor;
    /** acc += g in place where it can (same shape, f32, g readable as it is); false: nothing done. */
    addInto: (acc: Tensor, g: Tensor) => boolean;
    /** The leaf's gradient once g is added; `own`: the leaf's gradient is this pass's alone, so g may go into it in place. */
    leafGrad: (leaf: Tensor, g: Tensor, own?: boolean) => Tensor;
    /** Marks `g`, now `leaf`'s gradient, as held by the library alone (see tensor.ts, privateGrads). */
    privateGrad: (leaf: Tensor, g: Tensor) => void;
  },
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
  const prev = gradEnabled;
  gradEnabled = false;
  let freed = false;
  depth++;
  try {
    if (!root.node) {
      root.grad = helpers.leafGrad(root, seed);
      return;
    }
    const grads = new Map<GradNode, Tensor>([[root.node, seed]]);
    // How many pending gradients (and leaf .grad fields) share each storage. A gradient's buffer goes back to the
    // pool only when its node is done and nothing pending or stored shares it; a pending sum that no one else
    // shares takes the next contribution in place (PyTorch's InputBuffer does the same), so the backward pass of
    // a residual stream allocates nothing for its sums.
    const shared = new Map<unknown, number>();
    const hold = (t: Tensor) => shared.set(t.storage.buffer, (shared.get(t.storage.buffer) ?? 0) + 1);
    const drop = (t: Tensor) => shared.set(t.storage.buffer, (shared.get(t.storage.buffer) ?? 1) - 1);
    const seedBuf = seed.storage.buffer;
    const reuse = !opts.retainGraph;
    const dead = new Map<unknown, Float32Array | Uint16Array>(); // by ArrayBuffer: two views of one buffer are released once
    const leafGrads = new Map<Tensor, Tensor>(); // each leaf's gradient as this pass left it
    // Whether a sum of this pass (pending for a node, or a leaf's gradient) may take gx in place: the pass frees the
    // graph, and the sum spans its own f32 buffer that nothing else holds, is not the caller's seed and is not gx's.
    const sumsInPlace = (sum: Tensor | undefined, gx: Tensor): sum is Tensor => sum !== undefined && reuse && ownsBuffer(sum) &&
      sum.storage.buffer !== seedBuf && shared.get(sum.storage.buffer) === 1 && sum.storage.buffer !== gx.storage.buffer;
    const graphDead: (Float32Array | Uint16Array)[] = []; // releaseWithGraph's buffers, released once the pass is done
    for (const node of topoOrder(root.node)) {
      const g = grads.get(node);
      grads.delete(node);
      if (!g) continue;
      if (g !== seed) drop(g);
      if (!node.backward) {
        throw new AutoGLMError(`'backward' through '${node.op}' a second time: its graph was freed by the first backward pass (pass { retainGraph: true } to the first)`);
      }
      const ownGy = reuse && g !== seed && g.storage.buffer !== seedBuf && !shared.get(g.storage.buffer) && ownsBuffer(g);
      const inGrads = node.backward(g, reuse, ownGy);
      dead.clear();
      if (reuse && (g.storage instanceof Float32Array || g.storage instanceof Uint16Array)) dead.set(g.storage.buffer, g.storage); // f32, or bf16 (a bf16 activation's)
      for (let i = 0; i < node.edges.length; i++) {
        const e = node.edges[i];
        const gx = inGrads[i];
        if (!e || !gx) continue;
        if ('leaf' in e) {
          // This pass's earlier gradient for the leaf, held by the leaf alone, takes gx in place (a weight read by
          // two ops, as a tied embedding and LM head: PyTorch's AccumulateGrad does the same).
          const prev = leafGrads.get(e.leaf);
          const lg = helpers.leafGrad(e.leaf, gx, sumsInPlace(prev, gx));
          e.leaf.grad = lg;
          leafGrads.set(e.leaf, lg);
          // A leaf's .grad may be the very buffer handed to another edge as well (x.add(f(x)) gives both the
          // same gradient): held for good, so that the node that consumes it never returns it to the pool.
          if (lg !== prev) hold(lg);
          // gx summed into the leaf's gradient is dead, unless another edge holds it too (the release below checks)
          if (reuse && lg.storage.buffer !== gx.storage.buffer && ownsBuffer(gx)) dead.set(gx.storage.buffer, gx.storage as Float32Array);
          continue;
        }
        const prevG = grads.get(e.node);
        if (sumsInPlace(prevG, gx) && sameShape(prevG.shape, gx.shape) && helpers.addInto(prevG, gx)) {
          if (gx.storage instanceof Float32Array) dead.set(gx.storage.buffer, gx.storage);
          continue;
        }
        const next = prevG ? helpers.add(prevG, gx) : gx;
        if (prevG) drop(prevG);
        hold(next);
        grads.set(e.node, next);
      }
      if (reuse) {
        node.backward = null;
        if (node.release) { graphDead.push(...node.release); node.release = undefined; }
      }
      for (const [ab, buf] of dead) if (ab !== seedBuf && !shared.get(ab)) releaseBuffer(buf);
    }
    for (const b of graphDead) releaseBuffer(b);
    // A leaf gradient of a pass that freed its graph, whose buffer no other leaf shares (p1.add(p2) can hand both
    // the same one) and is not the caller's seed, is the library's alone until someone reads it (tensor.ts,
    // privateGrads): zeroGrad may hand its buffer back to the pool.
    const owners = new Map<unknown, number>();
    for (const g of leafGrads.values()) owners.set(g.storage.buffer, (owners.get(g.storage.buffer) ?? 0) + 1);
    if (reuse) for (const [leaf, g] of leafGrads) if (owners.get(g.storage.buffer) === 1 && g.storage.buffer !== seedBuf) helpers.privateGrad(leaf, g);
    freed = reuse;
  } finally {
    gradEnabled = prev;
    depth--;
  }
  // Every activation of the graph is dead now: free them before the next forward pass needs their memory (not
  // after the inner passes of a checkpointed segment's recomputation, inside an outer pass).
  if (freed && depth === 0) collectAfterBackward();
}
