/**
 * Learning-rate schedules as pure functions of the step, `(step) => lr` (nanoGPT's get_lr), each with its
 * phases commented; and the two stateful controllers that watch a metric: ReduceLROnPlateau and EarlyStopping.
 */
import { ConfigError } from '../errors.js';

export type Schedule = (step: number) => number;

export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  /** Total optimizer steps of the run. */
  totalSteps: number;
  /** Linear warm-up steps from 0 to lr. */
  warmupSteps?: number;
  /** Cosine: the floor (eta_min). */
  minLr?: number;
  /** Cosine: the period in steps after warm-up (T_max); defaults to the remaining steps. */
  tMax?: number;
}

function check(o: ScheduleOptions): Required<ScheduleOptions> {
  const warmupSteps = o.warmupSteps ?? 0;
  if (!(o.lr >= 0)) throw new ConfigError(`schedule lr must be >= 0; got ${o.lr}`);
  if (!Number.isInteger(o.totalSteps) || o.totalSteps < 1) throw new ConfigError(`schedule totalSteps must be a positive integer; got ${o.totalSteps}`);
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) throw new ConfigError(`schedule warmupSteps must be a non-negative integer; got ${warmupSteps}`);
  return { lr: o.lr, totalSteps: o.totalSteps, warmupSteps, minLr: o.minLr ?? 0, tMax: o.tMax ?? Math.max(1, o.totalSteps - warmupSteps) };
}

/** 1) warm-up: lr * (step+1) / warmup; 2) constant lr. */
export function constantSchedule(opts: ScheduleOptions): Schedule {
  const o = check(opts);
  return (step) => (step < o.warmupSteps ? (o.lr * (step + 1)) / o.warmupSteps : o.lr);
}

/** 1) warm-up; 2) linear decay from lr to 0 at totalSteps (HF's get_linear_schedule_with_warmup). */
export function linearSchedule(opts: ScheduleOptions): Schedule {
  const o = check(opts);
  return (step) => {
    if (step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
    const left = Math.max(0, o.totalSteps - step) / Math.max(1, o.totalSteps - o.warmupSteps);
    return o.lr * left;
  };
}

/**
 * 1) warm-up; 2) cosine annealing from lr to minLr over tMax steps (PyTorch CosineAnnealingLR:
 * eta_min + (lr - eta_min)(1 + cos(pi t / T_max)) / 2); 3) after tMax, minLr.
 */
export function cosineSchedule(opts: ScheduleOptions): Schedule {
  const o = check(opts);
  return (step) => {
    if (step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
    const t = step - o.warmupSteps;
    if (t >= o.tMax) return o.minLr;
    return o.minLr + (o.lr - o.minLr) * 0.5 * (1 + Math.cos((Math.PI * t) / o.tMax));
  };
}

export const SCHEDULES: Record<string, (o: ScheduleOptions) => Schedule> = {
  constant: constantSchedule,
  linear: linearSchedule,
  cosine: cosineSchedule,
};

export interface PlateauOptions {
  mode?: 'min' | 'max';
  factor?: number;
  patience?: number;
  threshold?: number;
  /** 'rel' (default): better than best by a fraction `threshold`; 'abs': by `threshold` itself (PyTorch's threshold_mode). */
  thresholdMode?: 'rel' | 'abs';
  minLr?: number;
  cooldown?: number;
}

/** PyTorch's ReduceLROnPlateau (relative threshold): multiplies a scale by `factor` after `patience` bad checks. */
export class ReduceLROnPlateau {
  readonly mode: 'min' | 'max';
  readonly factor: number;
  readonly patience: number;
  readonly threshold: number;
  readonly thresholdMode: 'rel' | 'abs';
  readonly minLr: number;
  readonly cooldown: number;
  best: number;
  badChecks = 0;
  cooldownLeft = 0;
  /** Multiplier applied to the scheduled learning rate. */
  scale = 1;

  constructor(o: PlateauOptions = {}) {
    this.mode = o.mode ?? 'min';
    this.factor = o.factor ?? 0.1;
    this.patience = o.patience ?? 10;
    this.threshold = o.threshold ?? 1e-4;
    this.thresholdMode = o.thresholdMode ?? 'rel';
    if (this.thresholdMode !== 'rel' && this.thresholdMode !== 'abs') throw new ConfigError(`ReduceLROnPlateau thresholdMode must be 'rel' or 'abs'; got '${String(this.thresholdMode)}'`);
    this.minLr = o.minLr ?? 0;
    this.cooldown = o.cooldown ?? 0;
    if (!(this.factor > 0 && this.factor < 1)) throw new ConfigError(`ReduceLROnPlateau factor must be in (0, 1); got ${this.factor}`);
    this.best = this.mode === 'min' ? Infinity : -Infinity;
  }

  /**
   * PyTorch's is_better. One deliberate difference: in 'rel' mode the margin is |best| * threshold, so a negative
   * metric must also improve to count (PyTorch's best * (1 - threshold) accepts a worse value when best < 0).
   */
  private better(v: number): boolean {
    const margin = this.thresholdMode === 'abs' || !Number.isFinite(this.best) ? (Number.isFinite(this.best) ? this.threshold : 0) : Math.abs(this.best) * this.threshold;
    return this.mode === 'min' ? v < this.best - margin : v > this.best + margin;
  }

  /** Records a metric value; returns true when the learning rate was reduced. `baseLr` bounds it by minLr. */
  step(value: number, baseLr: number): boolean {
    if (this.better(value)) {
      this.best = value;
      this.badChecks = 0;
    } else {
      this.badChecks++;
    }
    if (this.cooldownLeft > 0) {
      this.cooldownLeft--;
      this.badChecks = 0;
    }
    if (this.badChecks > this.patience) {
      const next = Math.max(baseLr * this.scale * this.factor, this.minLr) / baseLr;
      const reduced = next < this.scale;
      this.scale = next;
      this.cooldownLeft = this.cooldown;
      this.badChecks = 0;
      return reduced;
    }
    return false;
  }

  state(): Record<string, number> {
    return { best: this.best, badChecks: this.badChecks, cooldownLeft: this.cooldownLeft, scale: this.scale };
  }
  load(s: Record<string, number>): void {
    Object.assign(this, s);
  }
}

export interface EarlyStoppingOptions {
  mode?: 'min' | 'max';
  patience?: number;
  minDelta?: number;
}

/** Stops when the monitored metric has not improved by minDelta for `patience` checks. */
export class EarlyStopping {
  readonly mode: 'min' | 'max';
  readonly patience: number;
  readonly minDelta: number;
  best: number;
  bestStep = -1;
  wait = 0;
  constructor(o: EarlyStoppingOptions = {}) {
    this.mode = o.mode ?? 'min';
    this.patience = o.patience ?? 3;
    this.minDelta = o.minDelta ?? 0;
    this.best = this.mode === 'min' ? Infinity : -Infinity;
  }
  /** Returns { improved, stop }. */
  check(value: number, step: number): { improved: boolean; stop: boolean } {
    const improved = this.mode === 'min' ? value < this.best - this.minDelta : value > this.best + this.minDelta;
    if (improved) {
      this.best = value;
      this.bestStep = step;
      this.wait = 0;
    } else {
      this.wait++;
    }
    return { improved, stop: this.wait >= this.patience };
  }
  state(): Record<string, number> {
    return { best: this.best, bestStep: this.bestStep, wait: this.wait };
  }
  load(s: Record<string, number>): void {
    Object.assign(this, s);
  }
}
