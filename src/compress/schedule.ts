/**
 * DGC's sparsity warm-up as a pure function of the step: the fraction of elements sent starts at 25% and
 * shrinks exponentially to `ratio` over `warmupSteps` steps (25% -> 6.25% -> 1.56% ... in the paper's
 * four-epoch version), then stays at `ratio`. A target of 25% or more, or no warm-up, is `ratio` throughout.
 */
export function sparsityWarmup(step: number, ratio: number, warmupSteps: number): number {
  const start = 0.25;
  if (warmupSteps <= 0 || step >= warmupSteps || ratio >= start) return ratio; // after warm-up: the target
  return start * (ratio / start) ** (Math.max(0, step) / warmupSteps); // during: geometric interpolation
}
