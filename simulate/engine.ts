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
 * Pure and deterministic: the same arrivals and parameters give the same result.
 */
import { createRng, hash32 } from '../core/phantom/random.js';
import type { Arrival } from './arrivals.js';
import { checkParams, type SimulationParams, type SliceDistribution } from './params.js';

/** One study's way through the pipeline, seconds from the start of the run. */
export interface StudyRecord {
  readonly hospital: string;
  readonly arrival: number;
  readonly slices: number;
  readonly selected: number;
  readonly messages: number;
  /** Its inference messages were enqueued. */
  selectedAt: number;
  /** Waiting of its first message in the inference queue. */
  firstMessageWait: number;
  /** Result published; NaN if the run ended first. */
  resultAt: number;
}

/** The state every metric period. */
export interface TimelinePoint {
  readonly t: number;
  /** Visible inference messages (the scaling metric's numerator). */
  readonly visible: number;
  /** Messages held by tasks. */
  readonly inFlight: number;
  /** Tasks polling or classifying (RunningTaskCount). */
  readonly running: number;
  /** The service's desired count. */
  readonly desired: number;
  /** GPU hosts launched and not terminated. */
  readonly hosts: number;
  /** Studies arrived and not yet published. */
  readonly open: number;
}

/** A change of the desired count and the policy that made it. */
export interface ScalingEvent {
  readonly t: number;
  readonly from: number;
  readonly to: number;
  readonly policy: 'start-from-zero' | 'scale-out' | 'scale-in';
}

/** Percentiles of a set of durations, seconds (nearest rank). */
export interface Percentiles {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly mean: number;
  readonly max: number;
}

/** Cost of the GPU hosts at one price. */
export interface CostFigures {
  readonly usdPerHour: number;
  readonly totalUsd: number;
  readonly perStudyUsd: number;
}

/** What {@link simulate} returns. */
export interface SimulationResult {
  readonly params: SimulationParams;
  readonly studies: number;
  /** Studies still open when the run stopped (only if it hit its time limit). */
  readonly unfinished: number;
  readonly slices: number;
  readonly selectedSlices: number;
  readonly messages: number;
  /** Manifest landing → result published. */
  readonly timeToResultSeconds: Percentiles;
  readonly byHospital: readonly {
    readonly hospital: string;
    readonly studies: number;
    readonly p50: number;
    readonly p95: number;
  }[];
  readonly peakTasks: number;
  readonly peakDesired: number;
  readonly peakHosts: number;
  readonly peakVisible: number;
  /** Host-hours launched (one GPU each): what is billed. */
  readonly gpuHours: number;
  /** Hours tasks spent classifying. */
  readonly busyGpuHours: number;
  readonly onDemand: CostFigures;
  readonly spot?: CostFigures;
  /** When the run stopped (every study published and, with no minimum, every host gone). */
  readonly endSeconds: number;
  readonly scalingEvents: readonly ScalingEvent[];
  readonly timeline: readonly TimelinePoint[];
  /** Per study (only with `keepStudies`). */
  readonly studyRecords?: readonly StudyRecord[];
}

/** Options of {@link simulate}. */
export interface SimulateOptions {
  /** Run at least this long (a profile's length), seconds. @default the last arrival */
  readonly horizonSeconds?: number;
  /** Return every study's record. */
  readonly keepStudies?: boolean;
  /** Stop this long after the last arrival even if work remains. @default 30 days */
  readonly limitSeconds?: number;
}

/** Nearest-rank percentiles of `values` (seconds); zeros for none. */
export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { p50: 0, p95: 0, p99: 0, mean: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
  return {
    p50: rank(50),
    p95: rank(95),
    p99: rank(99),
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    max: sorted[sorted.length - 1] ?? 0,
  };
}

/** A minimal binary heap of timed callbacks; ties run in the order they were scheduled. */
class EventQueue {
  private readonly heap: { t: number; seq: number; run: () => void }[] = [];
  private seq = 0;
  get size(): number {
    return this.heap.length;
  }
  push(t: number, run: () => void): void {
    const h = this.heap;
    h.push({ t, seq: this.seq++, run });
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }
  pop(): { t: number; run: () => void } | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined) return undefined;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(l, m)) m = l;
        if (r < h.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
  private less(a: number, b: number): boolean {
    const x = this.heap[a];
    const y = this.heap[b];
    if (x === undefined || y === undefined) return false;
    return x.t < y.t || (x.t === y.t && x.seq < y.seq);
  }
  private swap(a: number, b: number): void {
    const h = this.heap;
    const x = h[a];
    const y = h[b];
    if (x === undefined || y === undefined) return;
    h[a] = y;
    h[b] = x;
  }
}

/** A first-in first-out queue with O(1) shift. */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head++];
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

interface Message {
  readonly study: StudyRecord & { pending: number; lastDone: number };
  readonly slices: number;
  readonly enqueuedAt: number;
}

interface Host {
  readonly launchedAt: number;
  ready: boolean;
  task: Task | undefined;
  idleSince: number;
  terminatedAt: number | undefined;
}

interface Task {
  state: 'pending' | 'starting' | 'idle' | 'busy';
  host: Host | undefined;
  stopping: boolean;
  gone: boolean;
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

/** Run the pipeline over `arrivals` with `params` (see the module comment). */
export function simulate(
  arrivals: readonly Arrival[],
  params: SimulationParams,
  options: SimulateOptions = {},
): SimulationResult {
  const p = checkParams(params);
  const events = new EventQueue();
  let now = 0;
  const rng = createRng(hash32(p.seed, 0x51ce));

  // Studies, in arrival order.
  const sorted = [...arrivals].sort((a, b) => a.time - b.time);
  const studies = sorted.map((a) => {
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
  const lastArrival = studies.length === 0 ? 0 : (studies[studies.length - 1]?.arrival ?? 0);
  const horizon = Math.max(options.horizonSeconds ?? 0, lastArrival);
  const limit = lastArrival + (options.limitSeconds ?? 30 * 24 * 3600);
  let open = 0;
  let arrived = 0;

  // Select stage.
  const ingest = new Fifo<(typeof studies)[number]>();
  let selectSlots = p.selectConcurrency;
  // Inference stage.
  const queue = new Fifo<Message>();
  let inFlight = 0;
  const tasks: Task[] = [];
  const hosts: Host[] = [];
  let warmPool = p.warmPoolSize;
  let desired = p.minTasks;
  let busySeconds = 0;
  // Peaks between samples count too.
  let peakTasks = p.minTasks;
  let peakDesired = p.minTasks;
  let peakHosts = p.minTasks;

  const running = () => tasks.filter((t) => t.state === 'idle' || t.state === 'busy').length;

  const startSelects = () => {
    while (selectSlots > 0 && ingest.length > 0) {
      selectSlots--;
      let end = now;
      for (let i = 0; i < p.selectBatchSize && ingest.length > 0; i++) {
        const study = ingest.shift();
        if (study === undefined) break;
        const done = now + p.selectOverheadSeconds + study.slices * p.selectSecondsPerSlice;
        end = Math.max(end, done);
        events.push(done, () => enqueue(study));
      }
      events.push(end, () => {
        selectSlots++;
        startSelects();
      });
    }
  };

  const enqueue = (study: (typeof studies)[number]) => {
    study.selectedAt = now;
    study.pending = study.messages;
    let left = study.selected;
    for (let m = 0; m < study.messages; m++) {
      const slices = Math.min(p.slicesPerMessage, left);
      left -= slices;
      queue.push({ study, slices, enqueuedAt: now });
    }
    dispatch();
  };

  const dispatch = () => {
    for (const task of tasks) {
      if (queue.length === 0) return;
      if (task.state !== 'idle' || task.stopping) continue;
      const start = now;
      let clock = now + p.batchOverheadSeconds;
      let taken = 0;
      for (let i = 0; i < p.receiveBatch && queue.length > 0; i++) {
        const m = queue.shift();
        if (m === undefined) break;
        taken++;
        const study = m.study;
        if (Number.isNaN(study.firstMessageWait)) study.firstMessageWait = start - m.enqueuedAt;
        clock += m.slices / p.gpuSlicesPerSecond;
        study.lastDone = Math.max(study.lastDone, clock);
        study.pending--;
        if (study.pending === 0) {
          const resultAt = study.lastDone + p.aggregateSeconds;
          events.push(resultAt, () => {
            study.resultAt = now;
            open--;
          });
        }
      }
      inFlight += taken;
      task.state = 'busy';
      busySeconds += clock - start;
      events.push(clock, () => {
        inFlight -= taken;
        task.state = 'idle';
        if (task.stopping) removeTask(task);
        dispatch();
      });
    }
  };

  const removeTask = (task: Task) => {
    task.gone = true;
    const i = tasks.indexOf(task);
    if (i >= 0) tasks.splice(i, 1);
    const host = task.host;
    task.host = undefined;
    if (host !== undefined) {
      host.task = undefined;
      hostIdle(host);
    }
    place();
  };

  const hostIdle = (host: Host) => {
    host.idleSince = now;
    const stamp = now;
    events.push(now + p.hostScaleInSeconds, () => {
      if (host.task === undefined && host.terminatedAt === undefined && host.idleSince === stamp) {
        host.terminatedAt = now;
        if (warmPool < p.warmPoolSize) warmPool++;
      }
    });
  };

  const assign = (task: Task, host: Host) => {
    host.task = task;
    task.host = host;
    task.state = 'starting';
    events.push(now + p.taskStartSeconds, () => {
      if (task.gone) return;
      task.state = 'idle';
      peakTasks = Math.max(peakTasks, running());
      dispatch();
    });
  };

  const launch = () => {
    const warm = warmPool > 0;
    if (warm) warmPool--;
    const host: Host = {
      launchedAt: now,
      ready: false,
      task: undefined,
      idleSince: now,
      terminatedAt: undefined,
    };
    hosts.push(host);
    peakHosts = Math.max(peakHosts, liveHosts().length);
    events.push(now + (warm ? p.warmStartSeconds : p.instanceStartSeconds), () => {
      host.ready = true;
      hostIdle(host);
      place();
    });
  };

  const liveHosts = () => hosts.filter((h) => h.terminatedAt === undefined);

  /** ECS places waiting tasks on free hosts; managed scaling launches hosts for the rest. */
  const place = () => {
    const live = liveHosts();
    let waiting = 0;
    for (const task of tasks) {
      if (task.state !== 'pending') continue;
      const host = live.find((h) => h.ready && h.task === undefined);
      if (host === undefined) waiting++;
      else assign(task, host);
    }
    let launching = live.filter((h) => !h.ready).length;
    let count = live.length;
    while (waiting > launching && count < p.maxTasks) {
      launch();
      launching++;
      count++;
    }
  };

  /** Start or stop tasks until the service runs `desired` (stopping waiting ones first). */
  const reconcile = () => {
    const active = tasks.filter((t) => !t.stopping);
    for (let n = active.length; n < desired; n++) {
      tasks.push({ state: 'pending', host: undefined, stopping: false, gone: false });
    }
    let extra = active.length - desired;
    for (const state of ['pending', 'starting', 'idle', 'busy'] as const) {
      for (let i = active.length - 1; i >= 0 && extra > 0; i--) {
        const task = active[i];
        if (task === undefined || task.state !== state) continue;
        extra--;
        if (state === 'busy') task.stopping = true;
        else removeTask(task);
      }
    }
    place();
  };

  // Scaling: one sample per period, policies act on datapoints `metricLagPeriods` old.
  const samples: { visible: number; running: number }[] = [];
  const timeline: TimelinePoint[] = [];
  const scalingEvents: ScalingEvent[] = [];
  let lastStep = Number.NEGATIVE_INFINITY;
  let lastOut = Number.NEGATIVE_INFINITY;
  let lastIn = Number.NEGATIVE_INFINITY;
  const clamp = (n: number) => Math.min(p.maxTasks, Math.max(p.minTasks, n));
  const setDesired = (to: number, policy: ScalingEvent['policy']) => {
    if (to === desired) return;
    scalingEvents.push({ t: now, from: desired, to, policy });
    desired = to;
    peakDesired = Math.max(peakDesired, to);
    reconcile();
  };
  const perTask = (j: number): number | undefined => {
    const s = samples[j];
    return s === undefined || s.running === 0 ? undefined : s.visible / s.running;
  };
  const window = (last: number, n: number, test: (j: number) => boolean): boolean => {
    if (last + 1 < n) return false;
    for (let j = last - n + 1; j <= last; j++) if (!test(j)) return false;
    return true;
  };
  const evaluatePolicies = () => {
    const last = samples.length - 1 - p.metricLagPeriods;
    if (last < 0) return;
    const z = p.startFromZero;
    const waitingAtZero = window(last, z.evaluationPeriods, (j) => {
      const s = samples[j];
      return s !== undefined && s.running < 1 && s.visible >= z.thresholdMessages;
    });
    if (waitingAtZero && now - lastStep >= z.cooldownSeconds) {
      lastStep = now;
      setDesired(clamp(z.tasks), 'start-from-zero');
    }
    const metric = perTask(last);
    if (metric === undefined) return;
    const target = p.backlogPerTask;
    const high = window(last, p.scaleOutDatapoints, (j) => (perTask(j) ?? Number.NEGATIVE_INFINITY) > target);
    if (high && now - lastOut >= p.scaleOutCooldownSeconds) {
      const want = clamp(Math.ceil((desired * metric) / target));
      if (want > desired) {
        lastOut = now;
        setDesired(want, 'scale-out');
      }
    }
    const low = window(
      last,
      p.scaleInDatapoints,
      (j) => (perTask(j) ?? Number.POSITIVE_INFINITY) < p.scaleInRatio * target,
    );
    if (low && now - lastIn >= p.scaleInCooldownSeconds) {
      const want = clamp(Math.ceil((desired * metric) / target));
      if (want < desired) {
        lastIn = now;
        setDesired(want, 'scale-in');
      }
    }
  };

  let stopped = false;
  let end = 0;
  const tick = () => {
    const backlog = queue.length + (p.scalingMetric === 'visible+in-flight' ? inFlight : 0);
    samples.push({ visible: backlog, running: running() });
    evaluatePolicies();
    const liveCount = liveHosts().length;
    timeline.push({
      t: now,
      visible: queue.length,
      inFlight,
      running: running(),
      desired,
      hosts: liveCount,
      open,
    });
    const quiet =
      arrived === studies.length &&
      open === 0 &&
      now >= horizon &&
      (p.minTasks > 0 ? true : liveCount === 0 && desired === 0);
    if (quiet || now >= limit) {
      stopped = true;
      end = now;
      return;
    }
    events.push(now + p.metricPeriodSeconds, tick);
  };

  // A minimum starts the run already up (the steady state of an always-on service).
  for (let i = 0; i < p.minTasks; i++) {
    const host: Host = { launchedAt: 0, ready: true, task: undefined, idleSince: 0, terminatedAt: undefined };
    const task: Task = { state: 'idle', host, stopping: false, gone: false };
    host.task = task;
    hosts.push(host);
    tasks.push(task);
  }
  for (const study of studies) {
    events.push(study.arrival + p.eventSeconds, () => {
      arrived++;
      open++;
      ingest.push(study);
      startSelects();
    });
  }
  events.push(0, tick);
  while (!stopped) {
    const e = events.pop();
    if (e === undefined) break;
    now = e.t;
    e.run();
  }

  const done = studies.filter((s) => !Number.isNaN(s.resultAt));
  const times = done.map((s) => s.resultAt - s.arrival);
  const hospitals = new Map<string, number[]>();
  for (const s of done) {
    const list = hospitals.get(s.hospital) ?? [];
    list.push(s.resultAt - s.arrival);
    hospitals.set(s.hospital, list);
  }
  const gpuSeconds = hosts.reduce((a, h) => a + ((h.terminatedAt ?? end) - h.launchedAt), 0);
  const gpuHours = gpuSeconds / 3600;
  const cost = (usdPerHour: number): CostFigures => ({
    usdPerHour,
    totalUsd: gpuHours * usdPerHour,
    perStudyUsd: studies.length === 0 ? 0 : (gpuHours * usdPerHour) / studies.length,
  });
  return {
    params: p,
    studies: studies.length,
    unfinished: studies.length - done.length,
    slices: studies.reduce((a, s) => a + s.slices, 0),
    selectedSlices: studies.reduce((a, s) => a + s.selected, 0),
    messages: studies.reduce((a, s) => a + s.messages, 0),
    timeToResultSeconds: percentiles(times),
    byHospital: [...hospitals.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([hospital, list]) => {
        const q = percentiles(list);
        return { hospital, studies: list.length, p50: q.p50, p95: q.p95 };
      }),
    peakTasks,
    peakDesired,
    peakHosts,
    peakVisible: timeline.reduce((a, t) => Math.max(a, t.visible), 0),
    gpuHours,
    busyGpuHours: busySeconds / 3600,
    onDemand: cost(p.onDemandUsdPerHour),
    ...(p.spotUsdPerHour === undefined ? {} : { spot: cost(p.spotUsdPerHour) }),
    endSeconds: end,
    scalingEvents,
    timeline,
    ...(options.keepStudies
      ? {
          studyRecords: studies.map(({ pending: _p, lastDone: _l, ...record }) => record),
        }
      : {}),
  };
}
