/**
 * The optimizer step's gate on the device (README.md, "The step gate"): the global gradient norm, the finite check,
 * gradient clipping's coefficient and the fp16 loss scaler's update, computed by kernels and applied by the optimizer
 * kernels without a read back, as torch.nn.utils.clip_grad_norm_ on CUDA and GradScaler's
 * `_amp_foreach_non_finite_check_and_unscale_` / `_amp_update_scale_` do.
 *
 * The gate is a 6-word f32 device array: [multiplier, open, norm, 1, open, 0]. multiplier = clip coefficient / loss
 * scale when open, else 0; open = 1 when every gradient and the loss are finite; norm = the global norm with the loss
 * scale undone (clip_grad_norm_'s return value). The optimizer kernels given a gate (a view) multiply the gradient by
 * its word 0 and write nothing when its word 1 is 0 (the skipped step of the CPU path); `gate.subarray(3)` is the same
 * gate with multiplier 1 (for a gradient already multiplied).
 */
import type { GpuArray } from './array.js';
import { Params, type GpuContext } from './device.js';
import { PARAMS, buf, workgroupReductions } from './wgsl.js';

export interface GateOptions {
  /** Clipping's max norm; 0 = no clipping. */
  maxNorm: number;
  /** The step's loss is finite (the CPU knows it: the loss is read for logging). */
  lossFinite: boolean;
  /** The fp16 loss scaler's device state [scale, clean steps in a row], updated in place; null: scale 1, no scaler. */
  scaler: { state: GpuArray; backoff: number; growth: number; growthInterval: number } | null;
}

/** Partial sums per gradient: at most this many workgroups each. */
const MAX_PARTS = 64;

const BAD = 'fn bad(v: f32) -> bool { return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u; }';

/** Records the kernels that compute the gate of one optimizer step from `grads`; returns the gate (no read back). */
export function stepGate(ctx: GpuContext, grads: GpuArray[], o: GateOptions): GpuArray {
  const parts = grads.map((g) => Math.max(1, Math.min(MAX_PARTS, Math.ceil(g.length / 4096))));
  const total = parts.reduce((a, b) => a + b, 0);
  // [sum of squares, non-finite seen] per partial
  const partials = ctx.alloc('f32', 2 * Math.max(1, total));
  const partial = PARAMS + buf(1, 'x', 'f32') + buf(2, 'o', 'f32', true) + `
${BAD}
${workgroupReductions(256)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wid.x; let t = lid.x;
  let parts = pu(0u); let n = pu(1u); let xo = pu(2u); let ob = pu(3u);
  var acc = 0.0;
  var nf = 0.0;
  for (var j = r * 256u + t; j < n; j = j + parts * 256u) {
    let v = x[xo + j];
    if (bad(v)) { nf = 1.0; } else { acc = acc + v * v; }
  }
  let tot = wgSum(acc, t);
  let anyBad = wgMax(nf, t);
  if (t == 0u) { o[ob + 2u * r] = tot; o[ob + 2u * r + 1u] = anyBad; }
}`;
  let at = 0;
  grads.forEach((g, i) => {
    ctx.run(partial, [{ arr: g }, { arr: partials, write: true }], new Params().u32(parts[i], g.length, g.offset, 2 * at), parts[i]);
    at += parts[i];
  });
  const gate = ctx.alloc('f32', 6);
  const sc = o.scaler;
  const state = sc ? sc.state : ctx.dummy(true);
  const code = PARAMS + buf(1, 'q', 'f32') + buf(2, 'G', 'f32', true) + buf(3, 'S', 'f32', true) + `
${BAD}
${workgroupReductions(256)}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let t = lid.x; let total = pu(0u);
  var acc = 0.0;
  var nf = 0.0;
  for (var j = t; j < total; j = j + 256u) { acc = acc + q[2u * j]; nf = max(nf, q[2u * j + 1u]); }
  let ss = wgSum(acc, t);
  let anyBad = wgMax(nf, t);
  if (t != 0u) { return; }
  let useScaler = pu(2u) == 1u; let so = pu(3u); let go = pu(4u);
  let maxNorm = pf(5u);
  var scale = 1.0;
  if (useScaler) { scale = S[so]; }
  let norm = sqrt(ss) / scale;
  let open = anyBad == 0.0 && pu(1u) == 1u && !bad(ss) && !bad(norm);
  var coef = 1.0;
  if (maxNorm > 0.0) { coef = min(1.0, maxNorm / (norm + 1e-6)); }
  G[go] = select(0.0, coef / scale, open);
  G[go + 1u] = select(0.0, 1.0, open);
  G[go + 2u] = norm;
  G[go + 3u] = 1.0;
  G[go + 4u] = G[go + 1u];
  G[go + 5u] = 0.0;
  if (useScaler) {
    if (!open) {
      S[so] = max(scale * pf(6u), 1.0);
      S[so + 1u] = 0.0;
    } else {
      let good = S[so + 1u] + 1.0;
      if (good >= pf(8u)) { S[so] = scale * pf(7u); S[so + 1u] = 0.0; } else { S[so + 1u] = good; }
    }
  }
}`;
  ctx.run(code, [{ arr: partials }, { arr: gate, write: true }, { arr: state, write: true }],
    new Params().u32(total, o.lossFinite ? 1 : 0, sc ? 1 : 0, state.offset, gate.offset)
      .f32(o.maxNorm, sc?.backoff ?? 0.5, sc?.growth ?? 2, sc?.growthInterval ?? 2000), 1);
  ctx.release(partials);
  return gate;
}
