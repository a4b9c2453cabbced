/**
 * The simulation's parameters. Everything the deployment decides comes from the definitions the
 * CDK stack is built from, imported: the settings (pipeline/deployment.ts DEFAULT_SETTINGS), the
 * scaling policies' cooldowns and alarm (GPU_SCALING, which cdk/constructs/inference.ts builds from), and the queues'
 * consumers (pipeline/resources.ts). What AWS does on its own (target tracking's alarms) and
 * what the hardware does (start times, GPU rate) are stated here with their sources.
 */

import { parseBoundedInt } from '../core/bounded-int.js';
import { InputError } from '../core/errors.js';
import { DEFAULT_SETTINGS, GPU_SCALING, PIPELINE_DEFAULTS, QUEUES } from '../pipeline/index.js';
import { estimatedSlicesPerSecond, GPU_INSTANCE_TYPES } from './gpu.js';

/** How many slices a study has. */
export type SliceDistribution =
  | { readonly kind: 'fixed'; readonly slices: number }
  /** Whole numbers from `min` to `max`, each equally likely. */
  | { readonly kind: 'uniform'; readonly min: number; readonly max: number }
  /** Geometric on 1, 2, …: the whole-number counterpart of an exponential (M/M/c checks). */
  | { readonly kind: 'geometric'; readonly mean: number };

/**
 * Application Auto Scaling's target tracking alarms (AWS-managed, not set by the stack): scale out
 * after 3 one-minute datapoints above the target, scale in after 15 below 90 % of it
 * (AWS docs, "Target tracking scaling policies for Application Auto Scaling").
 */
export const TARGET_TRACKING_ALARMS = {
  scaleOutDatapoints: 3,
  scaleInDatapoints: 15,
  scaleInRatio: 0.9,
} as const;

/**
 * ECS managed scaling (capacity provider) scales the GPU hosts in once they have run no task for
 * about 15 minutes (its CapacityProviderReservation alarm needs 15 one-minute datapoints).
 */
export const HOST_SCALE_IN_SECONDS = 15 * 60;

/** Every parameter of a run (see {@link defaultParams}). Times in seconds. */
export interface SimulationParams {
  /** Seed of every random draw (slices per study when not given, Poisson arrivals of a profile). */
  readonly seed: number;
  // The deployment (cdk/settings.ts).
  readonly instanceType: string;
  /** Most tasks (the scalable target's and the host group's maximum). */
  readonly maxTasks: number;
  /** Fewest tasks (0 as deployed; above 0 models a scheduled minimum or an always-on task). */
  readonly minTasks: number;
  /** Target visible inference messages per running task. */
  readonly backlogPerTask: number;
  /**
   * What the backlog counts: `visible` (ApproximateNumberOfMessagesVisible, as deployed) or
   * `visible+in-flight` (plus ApproximateNumberOfMessagesNotVisible: the messages tasks hold), a
   * what-if: with `visible` alone, tasks that keep up see a backlog near zero and scale in.
   */
  readonly scalingMetric: 'visible' | 'visible+in-flight';
  readonly spot: boolean;
  // Scaling (GPU_SCALING and AWS's behaviour).
  readonly metricPeriodSeconds: number;
  /** Periods between a datapoint and the alarm acting on it (CloudWatch's ingestion delay). */
  readonly metricLagPeriods: number;
  readonly scaleOutCooldownSeconds: number;
  readonly scaleInCooldownSeconds: number;
  readonly scaleOutDatapoints: number;
  readonly scaleInDatapoints: number;
  readonly scaleInRatio: number;
  readonly startFromZero: {
    readonly tasks: number;
    readonly cooldownSeconds: number;
    readonly evaluationPeriods: number;
    readonly thresholdMessages: number;
  };
  // Capacity.
  /** A new GPU host until it can start a task: capacity provider reaction, boot, ECS agent, image pull. */
  readonly instanceStartSeconds: number;
  /** Stopped hosts kept ready in an Auto Scaling warm pool (0 as deployed). */
  readonly warmPoolSize: number;
  /** A warm-pool host until it can start a task (image already on its disk). */
  readonly warmStartSeconds: number;
  /** A task on a ready host until it polls: container start, CUDA init, model load and warm-up. */
  readonly taskStartSeconds: number;
  /** A host without a task is terminated after this long. */
  readonly hostScaleInSeconds: number;
  // Work.
  readonly slices: SliceDistribution;
  /** Share of a study's slices that selection keeps (12 of 30 in each real sample series). */
  readonly selectedFraction: number;
  /** Select Lambda: time per slice read and counted (S3 GET, decode, count). */
  readonly selectSecondsPerSlice: number;
  /** Select Lambda: time per study besides the slices (manifest, DynamoDB writes, enqueueing). */
  readonly selectOverheadSeconds: number;
  /** Concurrent select invocations (its reserved concurrency). */
  readonly selectConcurrency: number;
  /** Studies per select invocation (the event source mapping's batch size), handled in parallel. */
  readonly selectBatchSize: number;
  readonly slicesPerMessage: number;
  /** Messages one worker receive takes (and holds invisible) at most. */
  readonly receiveBatch: number;
  /** Slices per second of one task on its GPU. */
  readonly gpuSlicesPerSecond: number;
  /** Per receive: S3 reads and decode not overlapped with the GPU, votes sent. */
  readonly batchOverheadSeconds: number;
  /** Manifest upload → S3 event on the ingest queue. */
  readonly eventSeconds: number;
  /** Last vote sent → result published (votes queue window, aggregate Lambda, SNS). */
  readonly aggregateSeconds: number;
  // Prices.
  readonly onDemandUsdPerHour: number;
  /** Spot price per hour; undefined: no spot cost reported. */
  readonly spotUsdPerHour?: number;
}

/**
 * The default GPU rate of one task: the FLOP-based estimate for the default instance type
 * (simulate/gpu.ts; bench/GPU.md). ≈ 59 slices/s on g4dn.xlarge (T4).
 */
export const DEFAULT_GPU_SLICES_PER_SECOND: number =
  estimatedSlicesPerSecond(DEFAULT_SETTINGS.gpuInstanceType) ?? Number.NaN;

/** The parameters of the deployed defaults (what `cdk deploy` with no `-c` builds). */
export function defaultParams(): SimulationParams {
  const s = DEFAULT_SETTINGS;
  return {
    seed: 1,
    instanceType: s.gpuInstanceType,
    maxTasks: s.maxGpuTasks,
    minTasks: DEFAULT_SETTINGS.minGpuTasks,
    backlogPerTask: s.backlogPerTask,
    scalingMetric: 'visible',
    spot: s.spot,
    metricPeriodSeconds: GPU_SCALING.metricPeriodSeconds,
    metricLagPeriods: 1,
    scaleOutCooldownSeconds: GPU_SCALING.targetTracking.scaleOutCooldownSeconds,
    scaleInCooldownSeconds: GPU_SCALING.targetTracking.scaleInCooldownSeconds,
    scaleOutDatapoints: TARGET_TRACKING_ALARMS.scaleOutDatapoints,
    scaleInDatapoints: TARGET_TRACKING_ALARMS.scaleInDatapoints,
    scaleInRatio: TARGET_TRACKING_ALARMS.scaleInRatio,
    startFromZero: { ...GPU_SCALING.startFromZero },
    instanceStartSeconds: 300,
    warmPoolSize: 0,
    warmStartSeconds: 90,
    taskStartSeconds: 60,
    hostScaleInSeconds: HOST_SCALE_IN_SECONDS,
    slices: { kind: 'uniform', min: 100, max: 400 },
    selectedFraction: 0.4,
    selectSecondsPerSlice: 0.005,
    selectOverheadSeconds: 0.5,
    selectConcurrency: s.selectReservedConcurrency,
    selectBatchSize: QUEUES.ingest.consumer.batchSize,
    slicesPerMessage: PIPELINE_DEFAULTS.slicesPerInferenceMessage,
    receiveBatch: QUEUES.inference.consumer.batchSize,
    gpuSlicesPerSecond: DEFAULT_GPU_SLICES_PER_SECOND,
    batchOverheadSeconds: 0.1,
    eventSeconds: 1,
    aggregateSeconds: 2,
    onDemandUsdPerHour: GPU_INSTANCE_TYPES[s.gpuInstanceType]?.onDemandUsdPerHour ?? Number.NaN,
  };
}

/** A parameter that cannot be simulated: the subject is the parameter (a one-line message for the CLI). */
export class SimulationParamError extends InputError {
  override name = 'SimulationParamError';
}

/** Check a parameter set; throws {@link SimulationParamError} naming the first bad one. */
export function checkParams(p: SimulationParams): SimulationParams {
  const whole = (name: string, v: number, min: number) => {
    // The one bounded-integer rule (core/bounded-int.ts), unbounded above.
    if (parseBoundedInt(String(v), min, Number.POSITIVE_INFINITY) === undefined)
      throw new SimulationParamError(name, `must be a whole number ≥ ${min}, got ${v}`);
  };
  const positive = (name: string, v: number) => {
    if (!Number.isFinite(v) || v <= 0) throw new SimulationParamError(name, `must be a number > 0, got ${v}`);
  };
  const nonNegative = (name: string, v: number) => {
    if (!Number.isFinite(v) || v < 0) throw new SimulationParamError(name, `must be a number ≥ 0, got ${v}`);
  };
  whole('maxTasks', p.maxTasks, 1);
  whole('minTasks', p.minTasks, 0);
  if (p.minTasks > p.maxTasks)
    throw new SimulationParamError('minTasks', `${p.minTasks} is above maxTasks ${p.maxTasks}`);
  positive('backlogPerTask', p.backlogPerTask);
  positive('metricPeriodSeconds', p.metricPeriodSeconds);
  whole('metricLagPeriods', p.metricLagPeriods, 0);
  whole('scaleOutDatapoints', p.scaleOutDatapoints, 1);
  whole('scaleInDatapoints', p.scaleInDatapoints, 1);
  whole('warmPoolSize', p.warmPoolSize, 0);
  whole('selectConcurrency', p.selectConcurrency, 1);
  whole('selectBatchSize', p.selectBatchSize, 1);
  whole('slicesPerMessage', p.slicesPerMessage, 1);
  whole('receiveBatch', p.receiveBatch, 1);
  if (!Number.isFinite(p.gpuSlicesPerSecond) || p.gpuSlicesPerSecond <= 0) {
    throw new SimulationParamError(
      'gpuSlicesPerSecond',
      `no estimate for instance type '${p.instanceType}': give the GPU rate (slices per second per task)`,
    );
  }
  if (!Number.isFinite(p.onDemandUsdPerHour) || p.onDemandUsdPerHour < 0) {
    throw new SimulationParamError(
      'onDemandUsdPerHour',
      `no price for instance type '${p.instanceType}': give the on-demand price per hour`,
    );
  }
  if (p.spotUsdPerHour !== undefined) nonNegative('spotUsdPerHour', p.spotUsdPerHour);
  if (!(p.selectedFraction > 0 && p.selectedFraction <= 1)) {
    throw new SimulationParamError('selectedFraction', `must be in (0, 1], got ${p.selectedFraction}`);
  }
  for (const [name, v] of [
    ['instanceStartSeconds', p.instanceStartSeconds],
    ['warmStartSeconds', p.warmStartSeconds],
    ['taskStartSeconds', p.taskStartSeconds],
    ['hostScaleInSeconds', p.hostScaleInSeconds],
    ['selectSecondsPerSlice', p.selectSecondsPerSlice],
    ['selectOverheadSeconds', p.selectOverheadSeconds],
    ['batchOverheadSeconds', p.batchOverheadSeconds],
    ['eventSeconds', p.eventSeconds],
    ['aggregateSeconds', p.aggregateSeconds],
    ['scaleOutCooldownSeconds', p.scaleOutCooldownSeconds],
    ['scaleInCooldownSeconds', p.scaleInCooldownSeconds],
  ] as const) {
    nonNegative(name, v);
  }
  const d = p.slices;
  if (d.kind === 'fixed') whole('slices', d.slices, 1);
  else if (d.kind === 'uniform') {
    whole('slices min', d.min, 1);
    whole('slices max', d.max, d.min);
  } else if (!(d.mean >= 1)) throw new SimulationParamError('slices mean', `must be ≥ 1, got ${d.mean}`);
  return p;
}
