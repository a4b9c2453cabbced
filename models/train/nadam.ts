/**
 * Nadam as Keras 2.3 implements it (the authors' `optimizers.nadam(lr=0.0001)`): Adam with
 * Nesterov momentum and Dozat's momentum schedule (`schedule_decay` 0.004). TensorFlow.js has no
 * Nadam, so this is one, as a tfjs {@link Optimizer} so that a compiled layers model can train with
 * it, and with its whole state (moments, step count, schedule product) exportable for checkpoints.
 */
import {
  add,
  div,
  engine,
  mul,
  type NamedTensorMap,
  Optimizer,
  sqrt,
  square,
  sub,
  type Tensor,
  tensor,
  tidy,
  type Variable,
  zerosLike,
} from '@tensorflow/tfjs-core';

/** A named gradient, as tfjs hands them over in list form. */
interface NamedTensor {
  readonly name: string;
  readonly tensor: Tensor;
}

/** Keras 2.3's Nadam defaults. */
export const NADAM_DEFAULTS = {
  learningRate: 1e-4,
  beta1: 0.9,
  beta2: 0.999,
  /** Keras's `K.epsilon()`. */
  epsilon: 1e-7,
  scheduleDecay: 0.004,
} as const;

/** Nadam's state outside its variables. */
export interface NadamScalars {
  /** Steps taken. */
  readonly iterations: number;
  /** Keras's `m_schedule`: the product of the momentum cache so far. */
  readonly mSchedule: number;
}

/** The optimizer state of one trainable variable, as plain arrays (for checkpoints). */
export interface NadamSlot {
  readonly m: Float32Array;
  readonly v: Float32Array;
}

/** Keras 2.3 Nadam. */
export class NadamOptimizer extends Optimizer {
  /** The name tfjs serialises optimizers by. */
  static get className(): string {
    return 'Nadam';
  }

  #mSchedule = 1;
  #steps = 0;
  readonly #slots = new Map<string, { m: Variable; v: Variable }>();

  constructor(
    readonly learningRate: number = NADAM_DEFAULTS.learningRate,
    readonly beta1: number = NADAM_DEFAULTS.beta1,
    readonly beta2: number = NADAM_DEFAULTS.beta2,
    readonly epsilon: number = NADAM_DEFAULTS.epsilon,
    readonly scheduleDecay: number = NADAM_DEFAULTS.scheduleDecay,
  ) {
    super();
  }

  /** One update. Scalars of the schedule are computed in float64 on the JS side. */
  override applyGradients(variableGradients: NamedTensorMap | NamedTensor[]): void {
    const entries: [string, Tensor][] = Array.isArray(variableGradients)
      ? variableGradients.map((g) => [g.name, g.tensor] as [string, Tensor])
      : Object.entries(variableGradients);
    const t = this.#steps + 1;
    const cacheT = this.beta1 * (1 - 0.5 * 0.96 ** (t * this.scheduleDecay));
    const cacheT1 = this.beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * this.scheduleDecay));
    const mScheduleNew = this.#mSchedule * cacheT;
    const mScheduleNext = mScheduleNew * cacheT1;
    const b1 = this.beta1;
    const b2 = this.beta2;
    const vCorrection = 1 - b2 ** t;
    tidy(() => {
      for (const [name, gradient] of entries) {
        if (gradient == null) continue;
        const value = engine().registeredVariables[name];
        if (value === undefined) throw new Error(`Nadam: no variable named '${name}'`);
        const slot = this.#slot(name, value);
        const gPrime = div(gradient, 1 - mScheduleNew);
        const m = add(mul(slot.m, b1), mul(gradient, 1 - b1));
        const mPrime = div(m, 1 - mScheduleNext);
        const v = add(mul(slot.v, b2), mul(square(gradient), 1 - b2));
        const vPrime = div(v, vCorrection);
        const mBar = add(mul(gPrime, 1 - cacheT), mul(mPrime, cacheT1));
        slot.m.assign(m);
        slot.v.assign(v);
        value.assign(sub(value, div(mul(mBar, this.learningRate), add(sqrt(vPrime), this.epsilon))));
      }
    });
    this.#mSchedule = mScheduleNew;
    this.#steps = t;
    this.incrementIterations();
  }

  #slot(name: string, value: Variable): { m: Variable; v: Variable } {
    let slot = this.#slots.get(name);
    if (slot === undefined) {
      slot = tidy(() => ({ m: zerosLike(value).variable(false), v: zerosLike(value).variable(false) }));
      this.#slots.set(name, slot);
    }
    return slot;
  }

  /** Steps and schedule product. */
  get scalars(): NadamScalars {
    return { iterations: this.#steps, mSchedule: this.#mSchedule };
  }

  /** The moments of `variables` (zeros for one not updated yet), in their order. */
  async exportSlots(variables: readonly Variable[]): Promise<NadamSlot[]> {
    const out: NadamSlot[] = [];
    for (const variable of variables) {
      const slot = this.#slots.get(variable.name);
      const size = variable.size;
      out.push({
        m: slot ? ((await slot.m.data()) as Float32Array) : new Float32Array(size),
        v: slot ? ((await slot.v.data()) as Float32Array) : new Float32Array(size),
      });
    }
    return out;
  }

  /** Restore moments for `variables` (same order as exported) and the scalars. */
  importState(variables: readonly Variable[], slots: readonly NadamSlot[], scalars: NadamScalars): void {
    if (slots.length !== variables.length) {
      throw new Error(`Nadam: ${slots.length} saved slots for ${variables.length} variables`);
    }
    for (const slot of this.#slots.values()) {
      slot.m.dispose();
      slot.v.dispose();
    }
    this.#slots.clear();
    variables.forEach((variable, i) => {
      const saved = slots[i]!;
      if (saved.m.length !== variable.size || saved.v.length !== variable.size) {
        throw new Error(
          `Nadam: saved moments of ${saved.m.length} values for '${variable.name}' (${variable.size})`,
        );
      }
      this.#slots.set(variable.name, {
        m: tidy(() => tensor(saved.m, variable.shape, 'float32').variable(false)),
        v: tidy(() => tensor(saved.v, variable.shape, 'float32').variable(false)),
      });
    });
    this.#steps = scalars.iterations;
    this.#mSchedule = scalars.mSchedule;
    this.iterations_ = scalars.iterations;
  }

  override dispose(): void {
    for (const slot of this.#slots.values()) {
      slot.m.dispose();
      slot.v.dispose();
    }
    this.#slots.clear();
    super.dispose();
  }

  override getConfig() {
    return {
      learningRate: this.learningRate,
      beta1: this.beta1,
      beta2: this.beta2,
      epsilon: this.epsilon,
      scheduleDecay: this.scheduleDecay,
    };
  }
}
