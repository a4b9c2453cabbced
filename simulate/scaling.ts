/**
 * The GPU service's scaling policies as the surge simulation applies them (cdk/constructs/inference.ts
 * builds the real ones from GPU_SCALING): one sample of the backlog and the running tasks per metric
 * period; a step policy sets `startFromZero.tasks` while messages wait and none runs; target
 * tracking on backlog ÷ running scales out after `scaleOutDatapoints` above the target and in after
 * `scaleInDatapoints` below `scaleInRatio` of it, to ⌈desired × metric ÷ target⌉ within
 * [min, max], each direction after its cooldown. Policies act on datapoints `metricLagPeriods` old.
 */
import type { SimulationParams } from './params.js';

/** A change of the desired count and the policy that made it. */
export interface ScalingEvent {
  readonly t: number;
  readonly from: number;
  readonly to: number;
  readonly policy: 'start-from-zero' | 'scale-out' | 'scale-in';
}

/** One metric period's datapoint: the backlog (the metric's numerator) and the running tasks. */
export interface ScalingSample {
  readonly visible: number;
  readonly running: number;
}

/** The service the policies act on: its desired count now, and how to change it. */
export interface ScaledService {
  readonly desired: number;
  setDesired(to: number, policy: ScalingEvent['policy']): void;
}

/** The three policies, with the datapoints they have seen and when each last acted. */
export class ScalingPolicies {
  private readonly samples: ScalingSample[] = [];
  private lastStep = Number.NEGATIVE_INFINITY;
  private lastOut = Number.NEGATIVE_INFINITY;
  private lastIn = Number.NEGATIVE_INFINITY;

  constructor(private readonly p: SimulationParams) {}

  /** Record this period's datapoint, then let each policy act on the (lagged) datapoints at `now`. */
  sample(now: number, sample: ScalingSample, service: ScaledService): void {
    this.samples.push(sample);
    const last = this.samples.length - 1 - this.p.metricLagPeriods;
    if (last < 0) return;
    this.startFromZero(now, last, service);
    const metric = this.perTask(last);
    if (metric === undefined) return;
    this.targetTracking(now, last, metric, service);
  }

  /** The step policy: messages waiting while no task runs. */
  private startFromZero(now: number, last: number, service: ScaledService): void {
    const z = this.p.startFromZero;
    const waitingAtZero = this.window(last, z.evaluationPeriods, (j) => {
      const s = this.samples[j];
      return s !== undefined && s.running < 1 && s.visible >= z.thresholdMessages;
    });
    if (waitingAtZero && now - this.lastStep >= z.cooldownSeconds) {
      this.lastStep = now;
      service.setDesired(this.clamp(z.tasks), 'start-from-zero');
    }
  }

  /** Target tracking on backlog per running task, out and in. */
  private targetTracking(now: number, last: number, metric: number, service: ScaledService): void {
    const p = this.p;
    const target = p.backlogPerTask;
    const high = this.window(
      last,
      p.scaleOutDatapoints,
      (j) => (this.perTask(j) ?? Number.NEGATIVE_INFINITY) > target,
    );
    if (high && now - this.lastOut >= p.scaleOutCooldownSeconds) {
      const want = this.clamp(Math.ceil((service.desired * metric) / target));
      if (want > service.desired) {
        this.lastOut = now;
        service.setDesired(want, 'scale-out');
      }
    }
    const low = this.window(
      last,
      p.scaleInDatapoints,
      (j) => (this.perTask(j) ?? Number.POSITIVE_INFINITY) < p.scaleInRatio * target,
    );
    if (low && now - this.lastIn >= p.scaleInCooldownSeconds) {
      const want = this.clamp(Math.ceil((service.desired * metric) / target));
      if (want < service.desired) {
        this.lastIn = now;
        service.setDesired(want, 'scale-in');
      }
    }
  }

  private clamp(n: number): number {
    return Math.min(this.p.maxTasks, Math.max(this.p.minTasks, n));
  }

  /** Backlog per running task of datapoint `j`; undefined when none ran. */
  private perTask(j: number): number | undefined {
    const s = this.samples[j];
    return s === undefined || s.running === 0 ? undefined : s.visible / s.running;
  }

  /** Whether the `n` datapoints up to `last` all pass `test` (false while fewer exist). */
  private window(last: number, n: number, test: (j: number) => boolean): boolean {
    if (last + 1 < n) return false;
    for (let j = last - n + 1; j <= last; j++) if (!test(j)) return false;
    return true;
  }
}
