/**
 * A pool of `worker_threads`, each with its own backend instance (wasm by default: it runs one
 * thread per instance in Node) and model copy, running batches in parallel. Pixels go to a worker
 * by transferring their buffer, probabilities come back the same way: no copies of slice data.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { BackendName } from './backend.js';
import type { FromWorker, ModelSource, ToWorker } from './pool-protocol.js';
import { DEFAULT_BATCH_SIZE, type Probabilities, packBatch, toProbabilities } from './predict.js';

export type { ModelSource } from './pool-protocol.js';

/** Options of {@link PredictionPool.create}. */
export interface PoolOptions {
  /** Worker count; default the machine's available cores. */
  readonly size?: number;
  /** Backend each worker uses; default wasm (the pool exists for it; tfjs-node is multi-threaded itself). */
  readonly backend?: BackendName;
}

/**
 * The worker's compiled script. From `dist/` it sits beside this module; under vitest this module
 * is the TypeScript source, which a worker thread cannot run, so the build's copy in `dist/` is used.
 */
export function workerScript(): URL {
  const here = fileURLToPath(import.meta.url);
  const beside = join(dirname(here), 'pool-worker.js');
  if (existsSync(beside)) return pathToFileURL(beside);
  const built = join(dirname(here), '..', 'dist', 'models', 'pool-worker.js');
  if (existsSync(built)) return pathToFileURL(built);
  throw new Error(
    `the prediction worker is not built: run 'npm run build' (looked for ${beside} and ${built})`,
  );
}

interface Job {
  readonly pixels: Float32Array;
  readonly count: number;
  readonly resolve: (probabilities: Float32Array) => void;
  readonly reject: (error: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  job: Job | undefined;
  /** Crashed or exited: gets no more jobs. */
  dead: boolean;
}

/** A started pool; {@link PredictionPool.close} it when done, or the process will not exit. */
export class PredictionPool {
  private readonly queue: Job[] = [];
  private nextId = 0;
  private closed = false;

  private constructor(
    private readonly slots: Slot[],
    /** Backend the workers run. */
    readonly backend: string,
    /** The model's input `[height, width, channels]`, as the workers reported it. */
    readonly inputShape: readonly [number, number, number],
  ) {
    for (const slot of slots) {
      slot.worker.on('message', (message: FromWorker) => this.onMessage(slot, message));
      slot.worker.on('error', (error) => this.fail(slot, error));
      slot.worker.on('exit', (code) => {
        if (!this.closed) this.fail(slot, new Error(`prediction worker exited (code ${code})`));
      });
    }
  }

  /** Worker count. */
  get size(): number {
    return this.slots.length;
  }

  /** Start `size` workers and load the model into each; resolves when all are ready. */
  static async create(source: ModelSource, options: PoolOptions = {}): Promise<PredictionPool> {
    const backend = options.backend ?? 'wasm';
    return PredictionPool.start(
      options.size ?? availableParallelism(),
      { type: 'init', source, backend },
      true,
    );
  }

  /**
   * Start `size` workers, each opening the ONNX graph (a path, or its bytes) in its own ONNX Runtime
   * session of `threads` threads (models/onnx/runtime.ts).
   */
  static async createOrt(
    graph: string | Uint8Array,
    options: { readonly size: number; readonly threads: number },
  ): Promise<PredictionPool> {
    // Quiet: the backend line already says ONNX Runtime, and its sessions are an internal layout.
    return PredictionPool.start(options.size, { type: 'init-ort', graph, threads: options.threads }, false);
  }

  private static async start(size: number, init: ToWorker, announce: boolean): Promise<PredictionPool> {
    if (!Number.isInteger(size) || size < 1)
      throw new RangeError(`pool size must be a whole number ≥ 1, got ${size}`);
    const script = workerScript();
    const workers = Array.from({ length: size }, () => new Worker(script));
    try {
      const ready = await Promise.all(
        workers.map(
          (worker) =>
            new Promise<{ backend: string; inputShape: [number, number, number] }>((resolve, reject) => {
              const onMessage = (message: FromWorker) => {
                worker.off('error', reject);
                worker.off('message', onMessage);
                if (message.type === 'ready') resolve(message);
                else
                  reject(
                    new Error(
                      `prediction worker failed to start: ${message.type === 'error' ? message.message : message.type}`,
                    ),
                  );
              };
              worker.on('message', onMessage);
              worker.once('error', reject);
              worker.postMessage(init);
            }),
        ),
      );
      const first = ready[0]!;
      if (announce) process.stderr.write(`covidct: prediction pool of ${size} ${first.backend} worker(s)\n`);
      return new PredictionPool(
        workers.map((worker) => ({ worker, job: undefined, dead: false })),
        first.backend,
        first.inputShape,
      );
    } catch (error) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw error;
    }
  }

  /**
   * Run one batch (`count` slices, NHWC float32) on the next free worker; resolves to `count × 2`
   * probabilities. The buffer of `pixels` is transferred: the caller's array is empty afterwards.
   */
  predictBatch(pixels: Float32Array, count: number): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new Error('the prediction pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ pixels, count, resolve, reject });
      this.dispatch();
    });
  }

  /** Classify slices in batches spread over the workers; results in input order. Slices are copied, not consumed. */
  async predictSlices(
    slices: readonly (Float32Array | Uint16Array)[],
    batchSize = DEFAULT_BATCH_SIZE,
  ): Promise<Probabilities[]> {
    const batches: Promise<Float32Array>[] = [];
    for (let start = 0; start < slices.length; start += batchSize) {
      const packed = packBatch(slices, start, batchSize, this.inputShape);
      batches.push(this.predictBatch(packed, Math.min(batchSize, slices.length - start)));
    }
    return (await Promise.all(batches)).flatMap((flat) => toProbabilities(flat));
  }

  /** Stop every worker; queued and running batches are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    const error = new Error('the prediction pool was closed');
    for (const job of this.queue.splice(0)) job.reject(error);
    for (const slot of this.slots) slot.job?.reject(error);
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()));
  }

  private dispatch(): void {
    if (this.slots.every((slot) => slot.dead)) {
      const error = new Error('every prediction worker has stopped');
      for (const job of this.queue.splice(0)) job.reject(error);
      return;
    }
    for (const slot of this.slots) {
      if (slot.job !== undefined || slot.dead) continue;
      const job = this.queue.shift();
      if (job === undefined) return;
      slot.job = job;
      const message: ToWorker = { type: 'predict', id: this.nextId++, pixels: job.pixels, count: job.count };
      slot.worker.postMessage(message, [job.pixels.buffer as ArrayBuffer]);
    }
  }

  private onMessage(slot: Slot, message: FromWorker): void {
    const job = slot.job;
    slot.job = undefined;
    if (message.type === 'result') job?.resolve(message.probabilities);
    else if (message.type === 'error') job?.reject(new Error(`prediction worker: ${message.message}`));
    this.dispatch();
  }

  private fail(slot: Slot, error: Error): void {
    slot.dead = true;
    slot.job?.reject(error);
    slot.job = undefined;
    this.dispatch();
  }
}
