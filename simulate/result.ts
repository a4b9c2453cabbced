/**
 * What a surge simulation reports: each study's way through the pipeline, the state every metric
 * period, and the summary of a run ({@link summarize}: time to result per study and hospital,
 * peaks, GPU-hours and their cost).
 */
import type { SimulationParams } from './params.js';
import type { ScalingEvent } from './scaling.js';

/** One study's way through the pipeline, seconds from the start of the run. */
export interface SimulatedStudy {
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
  readonly studyRecords?: readonly SimulatedStudy[];
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

/** What a run leaves for {@link summarize}. */
export interface RunRecord {
  readonly params: SimulationParams;
  /** Every study, arrived or not, in arrival order. */
  readonly studies: readonly SimulatedStudy[];
  /** When each host was launched and, if it was, terminated. */
  readonly hosts: readonly { readonly launchedAt: number; readonly terminatedAt: number | undefined }[];
  /** The most tasks running, desired and hosts live at any moment. */
  readonly peaks: { readonly tasks: number; readonly desired: number; readonly hosts: number };
  /** Seconds tasks spent classifying. */
  readonly busySeconds: number;
  readonly endSeconds: number;
  readonly scalingEvents: readonly ScalingEvent[];
  readonly timeline: readonly TimelinePoint[];
  /** The studies' records to report (only with `keepStudies`). */
  readonly studyRecords?: readonly SimulatedStudy[];
}

/** The figures of a finished run. */
export function summarize(run: RunRecord): SimulationResult {
  const { params: p, studies, hosts, timeline } = run;
  const end = run.endSeconds;
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
    peakTasks: run.peaks.tasks,
    peakDesired: run.peaks.desired,
    peakHosts: run.peaks.hosts,
    peakVisible: timeline.reduce((a, t) => Math.max(a, t.visible), 0),
    gpuHours,
    busyGpuHours: run.busySeconds / 3600,
    onDemand: cost(p.onDemandUsdPerHour),
    ...(p.spotUsdPerHour === undefined ? {} : { spot: cost(p.spotUsdPerHour) }),
    endSeconds: end,
    scalingEvents: run.scalingEvents,
    timeline,
    ...(run.studyRecords === undefined ? {} : { studyRecords: run.studyRecords }),
  };
}
