/**
 * Reading TF.js graph-model weights (model.json's `weightsManifest` + binary shards) and mapping USE-Lite's
 * TF tensor names onto this project's parameter names.
 *
 * The manifest lists groups; each group's shards, concatenated, hold its tensors back to back in manifest
 * order. A tensor is float32 or int32, or quantized (`quantization: { dtype: 'uint8' | 'uint16', scale, min }`
 * read as q * scale + min, or `{ dtype: 'float16' }`). Every size is checked: a shard that is missing, short
 * or too long, or a tensor whose shape differs from the model's, is a CheckpointError naming the file and
 * the tensor. The files come from a `WeightSource` (a folder in Node: files.ts; fetched files in a browser), so this
 * file reads no file system itself.
 */
import { CheckpointError, fmtShape } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import type { USELiteConfig } from './config.js';

export interface TFJSWeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; scale?: number; min?: number };
}

interface WeightsGroup {
  paths: string[];
  weights: TFJSWeightSpec[];
}

export interface TFJSTensor {
  name: string;
  shape: number[];
  data: Float32Array | Int32Array;
  /** The shard (file name) holding the tensor's first byte, for messages. */
  file: string;
}

const QUANT_BYTES: Record<string, number> = { uint8: 1, uint16: 2, float16: 2 };

/** Where the model's files come from: a folder (Node), or fetched bytes (a browser). */
export interface WeightSource {
  /** The file's bytes; throws when it cannot be read. */
  bytes(name: string): Uint8Array;
  /** How messages name the file (a path or a URL). */
  where(name: string): string;
}

function readJSON(src: WeightSource, name: string): unknown {
  let text: string;
  try {
    text = new TextDecoder().decode(src.bytes(name));
  } catch (e) {
    throw new CheckpointError(`cannot read '${src.where(name)}'`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`'${src.where(name)}' is not valid JSON`, { cause: e });
  }
}

/** The buffers back to back. */
function concatBytes(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** IEEE half to float. */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function decode(spec: TFJSWeightSpec, bytes: Uint8Array, n: number, where: string): Float32Array | Int32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const q = spec.quantization;
  if (!q) {
    if (spec.dtype === 'float32') {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }
    if (spec.dtype === 'int32') {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
      return out;
    }
    throw new CheckpointError(`${where}: tensor '${spec.name}' has dtype '${spec.dtype}'; expected float32 or int32`);
  }
  const out = spec.dtype === 'int32' ? new Int32Array(n) : new Float32Array(n);
  if (q.dtype === 'float16') {
    for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
  } else if (q.dtype === 'uint8' || q.dtype === 'uint16') {
    if (typeof q.scale !== 'number' || typeof q.min !== 'number') {
      throw new CheckpointError(`${where}: tensor '${spec.name}' is ${q.dtype}-quantized without numeric 'scale' and 'min'`);
    }
    for (let i = 0; i < n; i++) out[i] = (q.dtype === 'uint8' ? bytes[i] : view.getUint16(2 * i, true)) * q.scale + q.min;
  } else {
    throw new CheckpointError(`${where}: tensor '${spec.name}' has quantization dtype '${q.dtype}'; expected uint8, uint16 or float16`);
  }
  return out;
}

/** Every tensor of a TF.js graph model (model.json and the shards it names, from `src`), by TF name. */
export function readTFJSWeightsFrom(src: WeightSource, modelFile = 'model.json'): Map<string, TFJSTensor> {
  const manifestPath = src.where(modelFile);
  const model = readJSON(src, modelFile) as { weightsManifest?: WeightsGroup[] };
  if (!Array.isArray(model.weightsManifest)) throw new CheckpointError(`'${manifestPath}' has no 'weightsManifest' list`);
  const out = new Map<string, TFJSTensor>();
  for (const group of model.weightsManifest) {
    const shards = group.paths.map((p) => {
      const path = src.where(p);
      try {
        return { path, bytes: src.bytes(p) };
      } catch (e) {
        throw new CheckpointError(`weight shard '${path}' named in '${manifestPath}' cannot be read`, { cause: e });
      }
    });
    const total = shards.reduce((s, x) => s + x.bytes.length, 0);
    const all = shards.length === 1 ? shards[0].bytes : concatBytes(shards.map((s) => s.bytes), total);
    const shardAt = (off: number): string => {
      let end = 0;
      for (const s of shards) if (off < (end += s.bytes.length)) return s.path;
      return shards.length ? shards[shards.length - 1].path : manifestPath;
    };
    let off = 0;
    for (const spec of group.weights) {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const nbytes = n * (spec.quantization ? QUANT_BYTES[spec.quantization.dtype] ?? 4 : 4);
      const file = shardAt(off);
      if (off + nbytes > total) {
        throw new CheckpointError(`weight shard '${file}' is truncated: tensor '${spec.name}' ${fmtShape(spec.shape)} needs bytes ${off}..${off + nbytes} of the group, which has ${total}`);
      }
      out.set(spec.name, { name: spec.name, shape: spec.shape, data: decode(spec, all.subarray(off, off + nbytes), n, `'${file}'`), file });
      off += nbytes;
    }
    if (off !== total) {
      throw new CheckpointError(`weight shards ${group.paths.join(', ')} of '${manifestPath}' hold ${total} bytes; the manifest describes ${off}`);
    }
  }
  return out;
}

/** How a TF tensor becomes a parameter: as is, (in, out) transposed to (out, in), or a 1x1 conv kernel [1, 1, in, out]. */
export type WeightTransform = 'copy' | 'transpose' | 'conv1x1';

export interface WeightMapping {
  tf: string;
  param: string;
  /** The TF tensor's shape. */
  shape: number[];
  transform: WeightTransform;
}

const APPLY = 'module_apply_default/Encoder_en/KonaTransformer/Encode';
const VARS = 'module/Encoder_en/KonaTransformer/Encode';
const CONCAT = 'ConcatPartitions/concat';

/** TF name of the timing signal's inverse timescales (1, embedDim/2), loaded as a buffer, not a parameter. */
export const INV_TIMESCALES_TF = `${APPLY}/TransformerStack/Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1`;

/**
 * The mapping table: TF weight name -> parameter name, for the layer widths of `cfg`. The naming follows the
 * TF scopes: Encode/Layer_i/TransformerLayer/{layer_prepostprocess, MultiheadAttention, dense, FFN}, and
 * hidden_layers/tanh_layer_0.
 */
export function weightMap(cfg: USELiteConfig): WeightMapping[] {
  const rows: WeightMapping[] = [
    { tf: 'module/Embeddings_en', param: 'embeddings.weight', shape: [cfg.vocabSize, cfg.embedDim], transform: 'copy' },
  ];
  cfg.layers.forEach(({ inDim }, i) => {
    const L = `${APPLY}/Layer_${i}/TransformerLayer`, p = `layers.${i}`;
    const mha = `${L}/MultiheadAttention`, ffn = `${L}/FFN`;
    rows.push(
      { tf: `${L}/layer_prepostprocess/layer_norm/layer_norm_scale/${CONCAT}`, param: `${p}.mha_norm.weight`, shape: [inDim], transform: 'copy' },
      { tf: `${L}/layer_prepostprocess/layer_norm/layer_norm_bias/${CONCAT}`, param: `${p}.mha_norm.bias`, shape: [inDim], transform: 'copy' },
      { tf: `${VARS}/Layer_${i}/TransformerLayer/MultiheadAttention/qkv_transform_single/kernel/part_0`, param: `${p}.mha.qkv_transform.weight`, shape: [1, 1, inDim, 3 * inDim], transform: 'conv1x1' },
      { tf: `${mha}/qkv_transform_single/bias/${CONCAT}`, param: `${p}.mha.qkv_transform.bias`, shape: [3 * inDim], transform: 'copy' },
      { tf: `${VARS}/Layer_${i}/TransformerLayer/MultiheadAttention/output_transform_single/kernel/part_0`, param: `${p}.mha.output_transform.weight`, shape: [1, 1, inDim, cfg.dim], transform: 'conv1x1' },
      { tf: `${mha}/output_transform_single/bias/${CONCAT}`, param: `${p}.mha.output_transform.bias`, shape: [cfg.dim], transform: 'copy' },
    );
    if (inDim !== cfg.dim) {
      rows.push(
        { tf: `${L}/dense/kernel/${CONCAT}`, param: `${p}.adjust_residual.weight`, shape: [inDim, cfg.dim], transform: 'transpose' },
        { tf: `${L}/dense/bias/${CONCAT}`, param: `${p}.adjust_residual.bias`, shape: [cfg.dim], transform: 'copy' },
      );
    }
    rows.push(
      { tf: `${ffn}/layer_prepostprocess/layer_norm/layer_norm_scale/${CONCAT}`, param: `${p}.ffn_norm.weight`, shape: [cfg.dim], transform: 'copy' },
      { tf: `${ffn}/layer_prepostprocess/layer_norm/layer_norm_bias/${CONCAT}`, param: `${p}.ffn_norm.bias`, shape: [cfg.dim], transform: 'copy' },
      // The FFN kernels were constant-folded into the Tensordot's reshaped operand: already (in, out).
      { tf: `${APPLY}/TransformerStack/Layer_${i}/TransformerLayer/FFN/conv1/Tensordot/Reshape_1`, param: `${p}.ffn.conv1.weight`, shape: [cfg.dim, cfg.ffnDim], transform: 'transpose' },
      { tf: `${ffn}/conv1/bias/${CONCAT}`, param: `${p}.ffn.conv1.bias`, shape: [cfg.ffnDim], transform: 'copy' },
      { tf: `${APPLY}/TransformerStack/Layer_${i}/TransformerLayer/FFN/conv2/Tensordot/Reshape_1`, param: `${p}.ffn.conv2.weight`, shape: [cfg.ffnDim, cfg.dim], transform: 'transpose' },
      { tf: `${ffn}/conv2/bias/${CONCAT}`, param: `${p}.ffn.conv2.bias`, shape: [cfg.dim], transform: 'copy' },
    );
  });
  rows.push(
    { tf: 'module/Encoder_en/hidden_layers/tanh_layer_0/weights', param: 'tanh_layer.weight', shape: [cfg.dim, cfg.dim], transform: 'transpose' },
    { tf: 'module/Encoder_en/hidden_layers/tanh_layer_0/bias', param: 'tanh_layer.bias', shape: [cfg.dim], transform: 'copy' },
  );
  return rows;
}

/** Graph constants that the configuration must agree with: TF name -> expected value. */
export function graphConstants(cfg: USELiteConfig): { tf: string; what: string; value: number; rtol: number }[] {
  const S = `${APPLY}/TransformerStack`;
  return [
    ...cfg.layers.map(({ inDim, heads }, i) => ({
      tf: `${S}/Layer_${i}/TransformerLayer/MultiheadAttention/mul/y`, what: `layer ${i} query scale 1/sqrt(${inDim}/${heads})`, value: 1 / Math.sqrt(inDim / heads), rtol: 1e-6,
    })),
    { tf: `${S}/Layer_1/TransformerLayer/MultiheadAttention/split_heads/split_last_dimension/Reshape/shape/2`, what: 'heads', value: cfg.layers[1]?.heads ?? 0, rtol: 0 },
    { tf: `${S}/Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x`, what: 'layer norm epsilon', value: cfg.lnEps, rtol: 1e-6 },
    { tf: `${S}/Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/attention_bias_ignore_padding/mul/y`, what: 'padding bias', value: cfg.maskBias, rtol: 0 },
    { tf: 'module_apply_default/Encoder_en/KonaTransformer/ClipToMaxLength/Less/y', what: 'max length', value: cfg.maxLength, rtol: 0 },
    { tf: 'module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y', what: 'L2 epsilon', value: cfg.l2Eps, rtol: 1e-6 },
  ];
}

function transformed(t: TFJSTensor, m: WeightMapping): Tensor {
  const src = t.data as Float32Array;
  if (m.transform === 'copy') return new Tensor(Float32Array.from(src), 'f32', [...m.shape]);
  const inF = m.shape[m.shape.length - 2], outF = m.shape[m.shape.length - 1];
  const dst = new Float32Array(inF * outF);
  for (let i = 0; i < inF; i++) for (let o = 0; o < outF; o++) dst[o * inF + i] = src[i * outF + o];
  return new Tensor(dst, 'f32', [outF, inF]); // (out, in), the Linear layout
}

export interface USELiteState {
  /** Parameter name -> tensor, in this project's layouts. */
  params: Map<string, Tensor>;
  invTimescales: Float32Array;
}

/** Reads the shipped weights from `src` and maps them to parameters, checking shapes and the graph's constants. */
export function useLiteStateFrom(src: WeightSource, cfg: USELiteConfig): USELiteState {
  const tf = readTFJSWeightsFrom(src);
  const where = src.where('model.json');
  const get = (name: string, shape: number[]): TFJSTensor => {
    const t = tf.get(name);
    if (!t) throw new CheckpointError(`'${where}' has no tensor '${name}'`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(`'${t.file}': tensor '${name}' has shape ${fmtShape(t.shape)}; the model expects ${fmtShape(shape)}`);
    }
    return t;
  };
  const params = new Map<string, Tensor>();
  for (const m of weightMap(cfg)) params.set(m.param, transformed(get(m.tf, m.shape), m));
  for (const c of graphConstants(cfg)) {
    const v = get(c.tf, []).data[0];
    if (!(Math.abs(v - c.value) <= c.rtol * Math.abs(c.value))) {
      throw new CheckpointError(`'${where}': constant '${c.tf}' (${c.what}) is ${v}; the configuration says ${c.value}`);
    }
  }
  const inv = get(INV_TIMESCALES_TF, [1, cfg.embedDim / 2]).data as Float32Array;
  return { params, invTimescales: Float32Array.from(inv) };
}
