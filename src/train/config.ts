/**
 * The trainer's configuration: every key, its default and what it does, in one commented place. The CLI's
 * flags fill the same object. Validated when the trainer is built: an unknown key or a bad value is a
 * ConfigError naming the key, the value and what is allowed.
 */
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { SFT_FORMATS } from '../sft/types.js';
import { curriculumSchema, samplingSchema } from '../curriculum/config.js';
import { compressionSpecSchema } from '../compress/registry.js';

/** The gradientCompression key: the compression registry's own schema (one source of truth for methods and options). */
const compression = compressionSpecSchema;

export const trainerConfigSchema = z.object({
  // ---- what is trained -----------------------------------------------------------------------------------
  /**
   * The kind of training, a registered task (src/train/tasks.ts): 'classification' (a head on a sentence encoder),
   * 'causal-lm' (a Hugging Face decoder on texts, evaluated by perplexity); setting `tasks` makes it 'multi-task'.
   * A key that means nothing for the task is refused (ConfigError naming the key and the task).
   */
  task: z.string().min(1).default('classification').describe("'classification' (a head on a sentence encoder), 'causal-lm' (a Hugging Face decoder on texts, evaluated by perplexity), 'sft' (a decoder on chat / instruction data), 'dpo' (a decoder on preference pairs), or 'multi-task' (set by 'tasks')"),
  /** 'lora': adapters on the encoder + the head; 'full': every parameter; 'head': the classifier head alone. */
  method: z.enum(['lora', 'full', 'head']).default('lora').describe('\'lora\': adapters on the encoder + the head; \'full\': every parameter; \'head\': the classifier head alone.'),
  /** Peak learning rate of the encoder's trainable weights. Default by method: lora 2e-3, full 1e-4, head 5e-2. */
  learningRate: z.number().positive().optional().describe('Peak learning rate of the encoder\'s trainable weights. Default by method: lora 2e-3, full 1e-4, head 5e-2.'),
  /** Learning rate of the classifier head; defaults to 2e-2 (lora/full) or learningRate (head). */
  headLearningRate: z.number().positive().optional().describe('Learning rate of the classifier head; defaults to 2e-2 (lora/full) or learningRate (head).'),
  /** Layer-wise learning-rate decay: layer i of L gets lr * decay^(L - 1 - i); 1 = off. */
  layerwiseLrDecay: z.number().positive().max(1).default(1).describe('Layer-wise learning-rate decay: layer i of L gets lr * decay^(L - 1 - i); 1 = off.'),
  loraRank: z.number().int().positive().default(8),
  /** LoRA alpha; defaults to 2 x rank. */
  loraAlpha: z.number().positive().optional().describe('LoRA alpha; defaults to 2 x rank.'),
  /** Dropout on the adapters' input (PEFT's default 0). */
  loraDropout: z.number().min(0).lt(1).default(0).describe('Dropout on the adapters\' input (PEFT\'s default 0).'),
  /** Module names, suffixes or a regular expression; 'all-linear' = every Linear but the head. */
  loraTargets: z.union([z.array(z.string()).min(1), z.string()]).default('all-linear').describe('Module names, suffixes or a regular expression; \'all-linear\' = every Linear but the head.'),
  useRslora: z.boolean().default(false),
  useDora: z.boolean().default(false),
  /** LoRA+: B matrices learn this many times faster than A. */
  loraPlusRatio: z.number().positive().default(1).describe('LoRA+: B matrices learn this many times faster than A.'),
  /** Frozen base weights in bf16, int8 or NF4 (QLoRA's 4-bit NormalFloat; LoRA only). */
  baseQuantization: z.enum(['none', 'bf16', 'int8', 'nf4']).default('none').describe("Frozen base weights in bf16, int8 (per output channel) or nf4 (QLoRA's 4-bit NormalFloat, bitsandbytes' format; CPU backends); LoRA only."),
  /** NF4 base: double-quantise the absmaxes (QLoRA's setting, bnb_4bit_use_double_quant). */
  baseDoubleQuant: z.boolean().default(true).describe("With baseQuantization 'nf4': double-quantise the blocks' absmaxes (8-bit, QLoRA's setting; bnb_4bit_use_double_quant); false keeps them f32."),
  /**
   * Recompute activations in the backward pass: true or 'full' = each layer's (least memory, about one more forward
   * pass of compute); 'mlp' = only the MLPs' pre-activations (selective recomputation: one more up-projection per
   * layer).
   */
  gradientCheckpointing: z.union([z.boolean(), z.enum(['full', 'mlp'])]).default(false).describe('Recompute activations in the backward pass: true or \'full\' = each layer\'s (about one more forward pass of compute); \'mlp\' = only the MLP pre-activations (one more up-projection per layer).'),
  /** Dropout before the classifier head. */
  headDropout: z.number().min(0).lt(1).default(0.1).describe('Dropout before the classifier head.'),

  // ---- multi-task (src/multitask, task in src/train/multitask.ts) ----------------------------------------------
  /** Label sets to train, one head each on a shared backbone (e.g. ['intent', 'domain']); unset = one task. */
  tasks: z.union([z.string().min(1).transform((s) => s.split(',')), z.array(z.string().min(1)).min(1)]).optional()
    .describe("Label sets to train, one head each on a shared backbone (e.g. intent,domain; the primary label set by its dataset name, others by their keys); unset = one task"),
  /** How task losses combine: fixed weights, learned uncertainty (Kendall et al. 2018) or DWA (Liu et al. 2019). */
  taskWeighting: z.enum(['static', 'uncertainty', 'dwa']).default('static')
    .describe("How task losses combine: 'static' (taskWeights), 'uncertainty' (learned log-variances s_t: sum exp(-s_t) L_t + s_t), 'dwa' (dynamic weight average)"),
  /** Static weights, one per task in the order of `tasks` (or task -> weight); default 1 each. */
  taskWeights: z.union([z.array(z.number().min(0)), z.record(z.number().min(0))]).optional()
    .describe("Static task weights, one per task in the order of 'tasks' (or {task: weight}); default 1 each"),
  /** DWA softmax temperature (the paper's T = 2). */
  dwaTemperature: z.number().positive().default(2).describe('DWA softmax temperature (the paper uses 2).'),
  /** DWA window: 0 = epoch-average losses; N = averages over every N optimizer steps. */
  dwaWindow: z.number().int().nonnegative().default(0).describe('DWA loss window: 0 = epoch averages; N = averages over every N optimizer steps.'),
  /** Which heads a batch trains: 'joint' = every head on the same texts; else one task per batch, drawn so. */
  taskSampling: z.enum(['joint', 'proportional', 'temperature', 'round-robin']).default('joint')
    .describe("Which heads a batch trains: 'joint' (every head on the same texts) or one task per batch: 'proportional', 'temperature' (p ∝ n^(1/T)), 'round-robin'"),
  /** T of temperature task sampling: p_t ∝ n_t^(1/T). */
  taskSamplingTemperature: z.number().positive().default(2).describe('T of temperature task sampling: p_t ∝ n_t^(1/T).'),

  // ---- supervised fine-tuning (task 'sft', src/train/sft.ts; refused by the other tasks) ----------------------------
  /** Record shape of the SFT data: decided from each record's keys ('auto'), or one of the shapes. */
  datasetFormat: z.enum(SFT_FORMATS).default('auto')
    .describe("Task sft: record shape of the data: 'auto' (from each record's keys), 'messages', 'sharegpt', 'alpaca', 'prompt-completion' or 'text'"),
  /** Loss on the assistant turns / the completion only (TRL's completion_only_loss / assistant_only_loss); false: every token. */
  completionOnlyLoss: z.boolean().default(true)
    .describe("Task sft: loss on the assistant turns / the completion only (TRL's completion_only_loss / assistant_only_loss); false: on every token"),
  /** Pack short examples into rows of up to maxLength tokens; each attends to and is scored against itself only. */
  packing: z.boolean().default(false)
    .describe('Task sft: pack examples into rows of up to maxLength tokens (best fit); a per-document causal mask keeps them apart'),
  /** A Jinja chat template (its text, or a .jinja file) instead of the model's tokenizer_config.json one (default ChatML when it has none). */
  chatTemplate: z.string().min(1).optional()
    .describe("Task sft: a Jinja chat template (text, or a path to a .jinja file) instead of the model's (ChatML when the model has none)"),
  /** Validation prompts answered greedily at the end of the run, written to <outputDir>/samples.jsonl. */
  sampleGenerations: z.number().int().nonnegative().default(4)
    .describe('Task sft: validation prompts answered greedily at the end, written to samples.jsonl in the run folder; 0 = none'),

  // ---- preference tuning (task 'dpo', src/train/dpo.ts; refused by the other tasks) ------------------------------------
  /** DPO's beta: how far the policy may move from the reference (TRL's default 0.1; smaller = further); SimPO's reward scale; ORPO's lambda. */
  dpoBeta: z.number().positive().finite().default(0.1)
    .describe("Task dpo: beta, the strength of the KL penalty to the reference model (TRL's default 0.1; smaller lets the policy move further); with 'simpo' the reward scale (the paper uses 2-10), with 'orpo' the odds-ratio term's weight lambda"),
  /** The preference loss: DPO's 'sigmoid' (with labelSmoothing as cDPO's epsilon), IPO, SLiC's 'hinge'; reference-free SimPO and ORPO. */
  dpoLossType: z.enum(['sigmoid', 'ipo', 'hinge', 'robust', 'exo_pair', 'sppo_hard', 'nca_pair', 'apo_zero', 'apo_down', 'simpo', 'orpo', 'kto']).default('sigmoid')
    .describe("Task dpo: 'sigmoid' (DPO, Rafailov et al. 2023; labelSmoothing = conservative DPO's epsilon), 'ipo' (Azar et al. 2023, on length-averaged log-probabilities), 'hinge' (SLiC), and TRL's 'robust' (rDPO; labelSmoothing = the label noise), 'exo_pair' (EXO; labelSmoothing = its epsilon, 1e-3 when 0), 'sppo_hard', 'nca_pair', 'apo_zero', 'apo_down'; without a reference model: 'simpo' (Meng et al. 2024, length-averaged, target margin simpoGamma) or 'orpo' (Hong et al. 2024, odds ratio + the chosen answers' NLL, from a base model); on unpaired examples (prompt, completion, label): 'kto' (Ethayarajh et al. 2024)"),
  /** KTO: the weights of the desirable and the undesirable examples' losses (TRL's desirable_weight, undesirable_weight). */
  desirableWeight: z.number().positive().finite().default(1)
    .describe("Task dpo, dpoLossType 'kto': the weight of desirable examples' losses (TRL's desirable_weight; raise the rarer kind's weight so that weight x count is within 1:1 to 4:3)"),
  undesirableWeight: z.number().positive().finite().default(1)
    .describe("Task dpo, dpoLossType 'kto': the weight of undesirable examples' losses (TRL's undesirable_weight)"),
  /** SimPO's target reward margin gamma (TRL's simpo_gamma). */
  simpoGamma: z.number().nonnegative().finite().default(0.5)
    .describe("Task dpo, dpoLossType 'simpo': the target reward margin gamma (TRL's simpo_gamma, 0.5; the paper uses 0.3-1.6)"),

  /** RPO (Pang et al. 2024; TRL's rpo_alpha): adds alpha x the chosen answers' mean next-token NLL to the preference loss; 0 = off. */
  rpoAlpha: z.number().nonnegative().finite().default(0)
    .describe("Task dpo: RPO's alpha (TRL's rpo_alpha): adds alpha x the mean next-token NLL of the chosen answers to the preference loss, so their likelihood does not fall (the paper uses 1); 0 = off"),

  // ---- how long, in what batches ---------------------------------------------------------------------------
  epochs: z.number().int().positive().default(3),
  /** Stop after this many optimizer steps (overrides epochs when smaller). */
  maxSteps: z.number().int().positive().optional().describe('Stop after this many optimizer steps (overrides epochs when smaller).'),
  batchSize: z.number().int().positive().default(32),
  /** Texts an evaluation pass takes at once (evalBatchOf: 128 for classification, max(8, batchSize) for decoder tasks). */
  evalBatchSize: z.number().int().positive().optional().describe('Texts an evaluation pass takes at once; default 128 for classification and multi-task, max(8, batchSize) for the decoder tasks (causal-lm, sft, dpo), whose activations of a whole batch would outgrow training\'s.'),
  /** Micro-batches per optimizer step. */
  gradientAccumulation: z.number().int().positive().default(1).describe('Micro-batches per optimizer step.'),
  /** Tokens per text (longer texts are cut). */
  maxLength: z.number().int().positive().max(4096).default(64).describe('Tokens per text (longer texts are cut).'),
  /** Group texts of similar length into batches (less padding). */
  lengthBucketing: z.boolean().default(true).describe('Group texts of similar length into batches (less padding); task sft with packing draws its packed rows uniformly.'),
  /** Curriculum learning (src/curriculum): easiest fraction first under a difficulty scorer and a pacing function. */
  curriculum: curriculumSchema,
  /** How batches are drawn: uniform epochs or loss-weighted with an optional importance correction. */
  sampling: samplingSchema,

  // ---- optimizer ---------------------------------------------------------------------------------------------
  /** 'adamw8bit': AdamW with 8-bit block-quantised moments (bitsandbytes' AdamW8bit; a quarter of the state memory). */
  optimizer: z.enum(['adamw', 'adam', 'sgd', 'rmsprop', 'adamw8bit']).default('adamw')
    .describe("'adamw', 'adam', 'sgd', 'rmsprop', or 'adamw8bit' (AdamW with 8-bit block-quantised moments, bitsandbytes' AdamW8bit: 2 bytes of state a parameter instead of 8; CPU backends)."),
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
  eps: z.number().positive().default(1e-8),
  /** Decoupled (AdamW) or L2 (others) weight decay; never applied to biases and norm weights. */
  weightDecay: z.number().min(0).default(0.01).describe('Decoupled (AdamW) or L2 (others) weight decay; never applied to biases and norm weights.'),
  /** Momentum of 'sgd' (default 0.9) and of 'rmsprop' (default 0, as torch.optim.RMSprop). */
  momentum: z.number().min(0).lt(1).optional().describe("Momentum of 'sgd' (default 0.9) and of 'rmsprop' (default 0, as torch.optim.RMSprop)."),
  nesterov: z.boolean().default(false),
  /** Global-norm gradient clipping; 0 = off. */
  maxGradNorm: z.number().min(0).default(1.0).describe('Global-norm gradient clipping; 0 = off.'),
  labelSmoothing: z.number().min(0).max(1).default(0),
  neftuneNoiseAlpha: z.number().nonnegative().finite().default(0).describe("NEFTune (transformers' neftune_noise_alpha): uniform noise of alpha / sqrt(T * hidden) on a decoder's token embeddings while training (5 is the paper's usual value); 0 = off. Tasks 'sft' and 'causal-lm'."),

  // ---- learning-rate schedule ----------------------------------------------------------------------------------
  scheduler: z.enum(['constant', 'linear', 'cosine', 'plateau']).default('linear'),
  warmupSteps: z.number().int().nonnegative().optional(),
  /** Warm-up as a fraction of the total steps (used when warmupSteps is not given). */
  warmupRatio: z.number().min(0).max(1).default(0.06).describe('Warm-up as a fraction of the total steps (used when warmupSteps is not given).'),
  /** Cosine: eta_min. Plateau: the floor. */
  minLr: z.number().min(0).default(0).describe('Cosine: eta_min. Plateau: the floor.'),
  /** Cosine: period in steps after warm-up (T_max); default the remaining steps. */
  tMax: z.number().int().positive().optional().describe('Cosine: period in steps after warm-up (T_max); default the remaining steps.'),
  plateauPatience: z.number().int().nonnegative().default(2),
  plateauFactor: z.number().positive().lt(1).default(0.5),

  // ---- evaluation, early stopping ---------------------------------------------------------------------------
  /** Evaluate on the validation split every N optimizer steps; 0 = at the end of each epoch. */
  evalEvery: z.number().int().nonnegative().default(0).describe('Evaluate on the validation split every N optimizer steps; 0 = at the end of each epoch.'),
  earlyStopping: z.union([z.literal(false), z.object({
    monitor: z.enum(['val_loss', 'val_accuracy', 'val_macro_f1']).default('val_loss'),
    patience: z.number().int().positive().default(3),
    minDelta: z.number().min(0).default(0),
    restoreBest: z.boolean().default(true),
  }).strict()]).default(false),

  // ---- precision, reproducibility, compression -----------------------------------------------------------------
  mixedPrecision: z.enum(['fp32', 'bf16', 'fp16', 'auto']).default('auto'),
  seed: z.number().int().default(42),
  /** Data-parallel gradient compression; with a single process it is accepted and has no effect. */
  gradientCompression: compression.default(false),

  // ---- outputs, checkpoints ---------------------------------------------------------------------------------------
  /** Where adapters/models, metrics.jsonl, the curve image and checkpoints go; default runs/<time>. */
  outputDir: z.string().optional().describe('Where adapters/models, metrics.jsonl, the curve image and checkpoints go; default runs/<time>.'),
  /** Checkpoint every N optimizer steps; 0 = only at the end. */
  saveEvery: z.number().int().nonnegative().default(0).describe('Checkpoint every N optimizer steps; 0 = only at the end.'),
  /** Checkpoints kept (oldest deleted). */
  keepLast: z.number().int().positive().default(2).describe('Checkpoints kept (oldest deleted).'),
  /** Resume from a checkpoint folder, or true for the latest in outputDir. */
  resume: z.union([z.string(), z.boolean()]).default(false).describe('Resume from a checkpoint folder, or true for the latest in outputDir.'),
  /** Log training loss every N steps. */
  logEvery: z.number().int().positive().default(20).describe('Log training loss every N steps.'),
}).strict();

export type TrainerConfig = z.infer<typeof trainerConfigSchema>;

/** The keys of task 'sft', which the other tasks refuse (spread into their `refuses`). */
export const SFT_ONLY: Readonly<Partial<Record<keyof TrainerConfig, string>>> = {
  datasetFormat: "it selects the record shape of task 'sft' data",
  completionOnlyLoss: "it masks prompts out of the loss of task 'sft' (plain texts: task sft with datasetFormat 'text')",
  packing: "packing is implemented by task 'sft' (plain texts: task sft with datasetFormat 'text' and completionOnlyLoss false)",
  chatTemplate: "chat templates render the conversations of task 'sft'",
  sampleGenerations: "sample generations are written by task 'sft'",
};
/** The keys of task 'dpo', which the other tasks refuse (spread into their `refuses`). */
export const DPO_ONLY: Readonly<Partial<Record<keyof TrainerConfig, string>>> = {
  dpoBeta: "it is the KL strength of preference tuning (task 'dpo')",
  dpoLossType: "it selects the preference loss of task 'dpo'",
  rpoAlpha: "it weighs the chosen answers' NLL in the preference loss of task 'dpo'",
  simpoGamma: "it is SimPO's target margin in the preference loss of task 'dpo'",
  desirableWeight: "it weighs KTO's desirable examples (task 'dpo')",
  undesirableWeight: "it weighs KTO's undesirable examples (task 'dpo')",
};
/** The keys that act on a decoder's token embeddings (tasks 'sft' and 'causal-lm'); the classification tasks refuse them. */
export const DECODER_ONLY: Readonly<Partial<Record<keyof TrainerConfig, string>>> = {
  neftuneNoiseAlpha: "NEFTune adds noise to a decoder's token embeddings (tasks 'sft' and 'causal-lm')",
};
export type TrainerConfigInput = z.input<typeof trainerConfigSchema>;

export const DEFAULT_LR: Record<TrainerConfig['method'], number> = { lora: 2e-3, full: 1e-4, head: 5e-2 };
/** The head's default learning rate with lora/full: the pooled embeddings are unit-norm, so the head needs a large one. */
export const DEFAULT_HEAD_LR = 2e-2;

/**
 * The evaluation batch: `evalBatchSize` when set, else 128 texts for the encoder tasks and max(8, batchSize) for the
 * decoder tasks (HF Trainer evaluates 8 at a time): an evaluation holds one layer's activations for the whole
 * batch, and at 128 sequences a decoder's outgrow the training step's (a 353M-parameter QLoRA run peaked at 936 MB
 * evaluating 128 at a time, 470 MB at 8).
 */
export function evalBatchOf(c: Pick<TrainerConfig, 'evalBatchSize' | 'batchSize'>, decoder = false): number {
  return c.evalBatchSize ?? (decoder ? Math.max(8, c.batchSize) : 128);
}

let defaults: Record<string, string> | null = null;

/** Whether `value` is key's schema default (a key at its default changes nothing, so no task refuses it). */
export function isDefaultValue(key: keyof TrainerConfig, value: unknown): boolean {
  defaults ??= Object.fromEntries(Object.entries(trainerConfigSchema.shape).map(([k, sch]) => {
    const r = (sch as z.ZodTypeAny).safeParse(undefined);
    return [k, JSON.stringify(r.success ? r.data : undefined)];
  }));
  return JSON.stringify(value) === defaults[key];
}

/** Validates a config object; the error names the key, the value and what is allowed. */
export function parseTrainerConfig(input: unknown): TrainerConfig {
  const r = trainerConfigSchema.safeParse(input ?? {});
  if (r.success) return r.data;
  let issue = r.error.issues[0];
  // a union (e.g. false | {..}) that failed: report the deepest issue of its options, which names the sub-key
  while (issue.code === 'invalid_union') {
    const rank = (i: z.ZodIssue) => i.path.length + (i.code === 'invalid_type' ? 0 : 0.5);
    const inner = issue.unionErrors.flatMap((e) => e.issues).sort((x, y) => rank(y) - rank(x))[0];
    if (!inner || rank(inner) <= issue.path.length) break;
    issue = inner;
  }
  if (issue.code === 'unrecognized_keys' && issue.path.length) {
    throw new ConfigError(`config key '${issue.path.join('.')}' has unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`);
  }
  if (issue.code === 'unrecognized_keys') {
    const known = Object.keys(trainerConfigSchema.shape).join(', ');
    throw new ConfigError(`unknown config key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}; known keys: ${known}`);
  }
  const key = issue.path.join('.');
  const value = issue.path.reduce<unknown>((o, k) => (o as Record<string | number, unknown> | undefined)?.[k], input);
  throw new ConfigError(`config key '${key}' is ${JSON.stringify(value)}: ${issue.message}`);
}
