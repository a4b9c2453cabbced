/**
 * A discrete-event simulation of the deployed pipeline, from a manifest landing to the result
 * being published:
 *
 *   S3 event ──▶ ingest queue ──▶ select Lambda (reserved concurrency, batches of studies)
 *     ──▶ inference queue (selected slices, a few per message) ──▶ GPU worker tasks (one per host,
 *     each receive holds up to `receiveBatch` messages invisible and classifies them in turn)
 *     ──▶ votes ──▶ aggregate ──▶ result.
 *
 * The GPU service scales as the stack's policies do (cdk/constructs/inference.ts, numbers from
 * GPU_SCALING): every metric period the queue's visible messages and the running tasks are
 * sampled; a step policy sets one task while messages wait and none runs; target tracking on
 * visible ÷ running scales out after 3 datapoints above the target and in after 15 below 90 % of
 * it, to ⌈desired × metric ÷ target⌉ within [min, max], each direction after its cooldown. Tasks
 * need a host (one GPU each, at most `maxTasks`): a new host takes `instanceStartSeconds`, a task
 * on a ready host `taskStartSeconds`; a host without a task is terminated after
 * `hostScaleInSeconds`. A task told to stop finishes the messages it holds.
 *
 * Simplifications (stated so nobody reads more into the figures): SQS is served first in, first
 * out; Lambda cold starts, throttling and S3/DynamoDB latency spikes are not modelled (their
 * average cost is in the per-slice and per-study times); the aggregate step is a fixed delay;
 * GPU-hours are billed from a host's launch to its termination.
 *
 * Pure and deterministic: the same arrivals and parameters give the same result. The run is a
 * {@link Simulation}: one method per kind of event (an arrival, a select batch, a study's messages
 * enqueued, a GPU batch, a host ready or idle, a task started, a metric period), the scaling
 * policies in scaling.ts, the figures of the run in result.ts.
 */
import { createRng, hash32 } from '../core/phantom/random.js';
import type { Arrival } from './arrivals.js';
import { GpuCluster, type Task } from './cluster.js';
import { checkParams, type SimulationParams, type SliceDistribution } from './params.js';
import { EventQueue, Fifo } from './queues.js';
import { type SimulatedStudy, type SimulationResult, summarize, type TimelinePoint } from './result.js';
import { type ScalingEvent, ScalingPolicies } from './scaling.js';

// What importers of the engine read from it, defined beside it.
export {
  type CostFigures,
  type Percentiles,
  percentiles,
  type SimulatedStudy,
  type SimulationResult,
  type TimelinePoint,
} from './result.js';
export type { ScalingEvent } from './scaling.js';

/** Options of {@link simulate}. */
export interface SimulateOptions {
  /** Run at least this long (a profile's length), seconds. @default the last arrival */
  readonly horizonSeconds?: number;
  /** Return every study's record. */
  readonly keepStudies?: boolean;
  /** Stop this long after the last arrival even if work remains. @default 30 days */
  readonly limitSeconds?: number;
}

/** A study as the engine tracks it: its record plus its messages not yet classified. */
type Study = SimulatedStudy & { pending: number; lastDone: number };

interface Message {
  readonly study: Study;
  readonly slices: number;
  readonly enqueuedAt: number;
}

function drawSlices(d: SliceDistribution, next: () => number): number {
  switch (d.kind) {
    case 'fixed':
      return d.slices;
    case 'uniform':
      return d.min + Math.min(d.max - d.min, Math.floor(next() * (d.max - d.min + 1)));
    case 'geometric': {
      // P(k) = (1 − q) q^(k−1), mean 1 / (1 − q).
      if (d.mean <= 1) return 1;
      const q = 1 - 1 / d.mean;
      return 1 + Math.floor(Math.log(1 - next()) / Math.log(q));
    }
  }
}

/** The studies of `arrivals` in arrival order, their slices drawn where not given. */
function studiesOf(arrivals: readonly Arrival[], p: SimulationParams): Study[] {
  const rng = createRng(hash32(p.seed, 0x51ce));
  const sorted = [...arrivals].sort((a, b) => a.time - b.time);
  return sorted.map((a) => {
    const slices = a.slices ?? drawSlices(p.slices, rng.next);
    const selected = Math.max(1, Math.round(slices * p.selectedFraction));
    return {
      hospital: a.hospital,
      arrival: a.time,
      slices,
      selected,
      messages: Math.ceil(selected / p.slicesPerMessage),
      selectedAt: Number.NaN,
      firstMessageWait: Number.NaN,
      resultAt: Number.NaN,
      pending: 0,
      lastDone: 0,
    };
  });
}

/** One run: the pipeline's state, and one method per kind of event. */
class Simulation {
  private readonly events = new EventQueue();
  private now = 0;
  private readonly horizon: number;
  private readonly limit: number;
  private open = 0;
  private arrived = 0;
  // Select stage.
  private readonly ingest = new Fifo<Study>();
  private selectSlots: number;
  // Inference stage.
  private readonly queue = new Fifo<Message>();
  private inFlight = 0;
  private readonly cluster: GpuCluster;
  /** The service's desired count (read by the scaling policies). */
  desired: number;
  private busySeconds = 0;
  // Peaks between samples count too.
  private peakDesired: number;
  // Scaling.
  private readonly policies: ScalingPolicies;
  private readonly timeline: TimelinePoint[] = [];
  private readonly scalingEvents: ScalingEvent[] = [];
  private stopped = false;
  private end = 0;

  constructor(
    private readonly p: SimulationParams,
    private readonly studies: readonly Study[],
    options: SimulateOptions,
  ) {
    const lastArrival = studies.length === 0 ? 0 : (studies[studies.length - 1]?.arrival ?? 0);
    this.horizon = Math.max(options.horizonSeconds ?? 0, lastArrival);
    this.limit = lastArrival + (options.limitSeconds ?? 30 * 24 * 3600);
    this.selectSlots = p.selectConcurrency;
    this.desired = p.minTasks;
    this.peakDesired = p.minTasks;
    this.cluster = new GpuCluster(
      p,
      this.events,
      () => this.now,
      () => this.dispatch(),
    );
    this.policies = new ScalingPolicies(p);
  }

  /** Run to the end: every study published and the service quiet, or the time limit. */
  run(keepStudies: boolean): SimulationResult {
    this.cluster.startMinimum();
    for (const study of this.studies) {
      this.events.push(study.arrival + this.p.eventSeconds, () => this.arrive(study));
    }
    this.events.push(0, () => this.tick());
    while (!this.stopped) {
      const e = this.events.pop();
      if (e === undefined) break;
      this.now = e.t;
      e.run();
    }
    return summarize({
      params: this.p,
      studies: this.studies,
      hosts: this.cluster.hosts,
      peaks: { tasks: this.cluster.peakTasks, desired: this.peakDesired, hosts: this.cluster.peakHosts },
      busySeconds: this.busySeconds,
      endSeconds: this.end,
      scalingEvents: this.scalingEvents,
      timeline: this.timeline,
      // The records without the engine's own bookkeeping.
      ...(keepStudies
        ? { studyRecords: this.studies.map(({ pending: _p, lastDone: _l, ...record }) => record) }
        : {}),
    });
  }

  /** Event: a manifest's S3 event reaches the ingest queue. */
  private arrive(study: Study): void {
    this.arrived++;
    this.open++;
    this.ingest.push(study);
    this.startSelects();
  }

  /** Free select concurrency takes batches of studies off the ingest queue. */
  private startSelects(): void {
    const p = this.p;
    while (this.selectSlots > 0 && this.ingest.length > 0) {
      this.selectSlots--;
      let end = this.now;
      for (let i = 0; i < p.selectBatchSize && this.ingest.length > 0; i++) {
        const study = this.ingest.shift();
        if (study === undefined) break;
        const done = this.now + p.selectOverheadSeconds + study.slices * p.selectSecondsPerSlice;
        end = Math.max(end, done);
        this.events.push(done, () => this.enqueue(study));
      }
      this.events.push(end, () => this.selectDone());
    }
  }

  /** Event: a select invocation finished its batch. */
  private selectDone(): void {
    this.selectSlots++;
    this.startSelects();
  }

  /** Event: a study's selection is done; its inference messages are enqueued. */
  private enqueue(study: Study): void {
    study.selectedAt = this.now;
    study.pending = study.messages;
    let left = study.selected;
    for (let m = 0; m < study.messages; m++) {
      const slices = Math.min(this.p.slicesPerMessage, left);
      left -= slices;
      this.queue.push({ study, slices, enqueuedAt: this.now });
    }
    this.dispatch();
  }

  /** Idle tasks receive messages and classify them in turn. */
  private dispatch(): void {
    for (const task of this.cluster.tasks) {
      if (this.queue.length === 0) return;
      if (task.state !== 'idle' || task.stopping) continue;
      this.startBatch(task);
    }
  }

  private startBatch(task: Task): void {
    const p = this.p;
    const start = this.now;
    let clock = this.now + p.batchOverheadSeconds;
    let taken = 0;
    for (let i = 0; i < p.receiveBatch && this.queue.length > 0; i++) {
      const m = this.queue.shift();
      if (m === undefined) break;
      taken++;
      const study = m.study;
      if (Number.isNaN(study.firstMessageWait)) study.firstMessageWait = start - m.enqueuedAt;
      clock += m.slices / p.gpuSlicesPerSecond;
      study.lastDone = Math.max(study.lastDone, clock);
      study.pending--;
      if (study.pending === 0) {
        this.events.push(study.lastDone + p.aggregateSeconds, () => this.publish(study));
      }
    }
    this.inFlight += taken;
    task.state = 'busy';
    this.busySeconds += clock - start;
    this.events.push(clock, () => this.batchDone(task, taken));
  }

  /** Event: a study's last votes were aggregated; its result is published. */
  private publish(study: Study): void {
    study.resultAt = this.now;
    this.open--;
  }

  /** Event: a task finished the messages it held. */
  private batchDone(task: Task, taken: number): void {
    this.inFlight -= taken;
    task.state = 'idle';
    if (task.stopping) this.cluster.removeTask(task);
    this.dispatch();
  }

  /** A scaling policy changes the desired count (called by {@link ScalingPolicies}). */
  setDesired(to: number, policy: ScalingEvent['policy']): void {
    if (to === this.desired) return;
    this.scalingEvents.push({ t: this.now, from: this.desired, to, policy });
    this.desired = to;
    this.peakDesired = Math.max(this.peakDesired, to);
    this.cluster.reconcile(this.desired);
  }

  /** Event: a metric period: sample, let the policies act, record the timeline, stop when quiet. */
  private tick(): void {
    const p = this.p;
    const backlog = this.queue.length + (p.scalingMetric === 'visible+in-flight' ? this.inFlight : 0);
    this.policies.sample(this.now, { visible: backlog, running: this.cluster.running() }, this);
    const liveCount = this.cluster.liveHosts().length;
    this.timeline.push({
      t: this.now,
      visible: this.queue.length,
      inFlight: this.inFlight,
      running: this.cluster.running(),
      desired: this.desired,
      hosts: liveCount,
      open: this.open,
    });
    const quiet =
      this.arrived === this.studies.length &&
      this.open === 0 &&
      this.now >= this.horizon &&
      (p.minTasks > 0 ? true : liveCount === 0 && this.desired === 0);
    if (quiet || this.now >= this.limit) {
      this.stopped = true;
      this.end = this.now;
      return;
    }
    this.events.push(this.now + p.metricPeriodSeconds, () => this.tick());
  }
}

/** Run the pipeline over `arrivals` with `params` (see the module comment). */
export function simulate(
  arrivals: readonly Arrival[],
  params: SimulationParams,
  options: SimulateOptions = {},
): SimulationResult {
  const p = checkParams(params);
  return new Simulation(p, studiesOf(arrivals, p), options).run(options.keepStudies ?? false);
}
