/**
 * Warm-up before the worker declares itself healthy: the first forward pass on any backend pays
 * for kernel compilation, weight upload (GPU) and memory growth, so one dummy batch per predictor
 * worker runs before the first real slice. Optionally the warm-up also measures which forward
 * batch size gives the most slices per second on this machine (`COVIDCT_FORWARD_BATCH=auto`).
 */
import type { SlicePredictor } from '../models/predictor.js';

/** One batch size as measured at start. */
export interface BatchMeasurement {
  readonly batch: number;
  readonly slicesPerSecond: number;
}

/** What {@link warmUp} did. */
export interface WarmUpReport {
  /** The dummy passes that warmed every worker, ms. */
  readonly warmUpMs: number;
  /** The forward batch size chosen by measurement; absent when none was asked for. */
  readonly chosenBatch?: number;
  readonly measured: readonly BatchMeasurement[];
}

/** Dummy slices: soft tissue (raw 1064 = 40 HU), the same cost as any slice on every backend. */
function dummy(predictor: SlicePredictor, count: number): Float32Array {
  const [h, w, c] = predictor.inputShape;
  return new Float32Array(count * h * w * c).fill(1064);
}

/** `predictor.workers` forward passes of `batch` slices at once (the pool consumes its buffers). */
async function round(predictor: SlicePredictor, batch: number): Promise<void> {
  const n = Math.max(1, predictor.workers);
  await Promise.all(Array.from({ length: n }, () => predictor.predictBatch(dummy(predictor, batch), batch)));
}

/** Options of {@link warmUp}. */
export interface WarmUpOptions {
  /** Batch sizes to time; none: only warm. */
  readonly candidates?: readonly number[];
  /** Timed rounds per candidate. @default 2 */
  readonly rounds?: number;
  /** The clock, ms (tests inject one so the choice does not hang on timer jitter). @default performance.now */
  readonly now?: () => number;
}

/**
 * Warm every worker of `predictor` with one dummy pass; with `candidates`, also time each
 * candidate batch size (`rounds` rounds of one pass per worker after a warm pass) and choose the one
 * with the most slices per second, the smaller one when two are within 5 % (less memory, less latency).
 */
export async function warmUp(predictor: SlicePredictor, options: WarmUpOptions = {}): Promise<WarmUpReport> {
  const now = options.now ?? (() => performance.now());
  const start = now();
  await round(predictor, 1);
  const warmUpMs = now() - start;
  const candidates = [...new Set(options.candidates ?? [])].filter((b) => b >= 1).sort((a, b) => a - b);
  if (candidates.length === 0) return { warmUpMs, measured: [] };
  const rounds = options.rounds ?? 2;
  const measured: BatchMeasurement[] = [];
  for (const batch of candidates) {
    if (batch > 1) await round(predictor, batch); // the first pass at a new shape is slower
    const t = now();
    for (let i = 0; i < rounds; i++) await round(predictor, batch);
    const slices = rounds * batch * Math.max(1, predictor.workers);
    measured.push({ batch, slicesPerSecond: (slices * 1000) / (now() - t) });
  }
  return { warmUpMs, chosenBatch: chooseBatch(measured), measured };
}

/** The batch size with the most slices per second; the smallest within 5 % of the best. */
export function chooseBatch(measured: readonly BatchMeasurement[]): number {
  if (measured.length === 0) throw new RangeError('no batch size was measured');
  const best = Math.max(...measured.map((m) => m.slicesPerSecond));
  return [...measured].sort((a, b) => a.batch - b.batch).find((m) => m.slicesPerSecond >= best * 0.95)!.batch;
}

/** Batch sizes `auto` tries: powers of two up to `max` (the slices a worker batch gathers). */
export function autoCandidates(max: number): number[] {
  const out: number[] = [];
  for (let b = 1; b <= Math.min(max, 32); b *= 2) out.push(b);
  return out;
}
