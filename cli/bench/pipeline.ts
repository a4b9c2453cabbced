/**
 * `covidct bench pipeline`: one study at a time through the whole local pipeline, as `covidct dev`
 * runs it (startLocalStack: local S3/SQS/SNS/DynamoDB, the select and aggregate Lambdas, the worker
 * as a child process), from the first upload request to the decision, with the share of each stage;
 * next to it, the same study diagnosed in one process (`covidct diagnose`: no queues, no S3) in
 * the same run and with the same model, the floor the pipeline's overheads are measured against.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { SQSEvent } from 'aws-lambda';
import { writePhantomSeries } from '../../core/phantom/series.js';
import type { SqsEventHandler } from '../../local/event-source.js';
import { type LocalStack, loadPipelineHandlers, startLocalStack } from '../../local/stack.js';
import { initBackend } from '../../models/backend.js';
import { loadClassifier } from '../../models/classifier.js';
import { diagnoseStudy } from '../../models/diagnose.js';
import { uploadStudy, waitForStudy } from '../../pipeline/api-client.js';
import { quietPowertools, repoRoot, round } from './common.js';
import { saveTinyModel } from './tiny-model.js';

/**
 * Where the wall-clock time of one study went, ms, on its critical path: the stages partition the
 * time from the first upload request to the decision (they add up to `totalMs`; work that ran in
 * the shadow of another stage, such as aggregating early votes while the worker classifies, is not
 * counted again: see the `busy` figures of {@link PipelineStudyFigures}).
 */
export interface PipelineStages {
  /** Client: create the study, PUT every slice, PUT the manifest. */
  readonly uploadMs: number;
  /** The select Lambda: SELECTING until CLASSIFYING (reading selection rows from S3, selecting, queueing). */
  readonly selectMs: number;
  /** The worker had a batch of the study in hand (fetch + decode + forward passes). */
  readonly classifyMs: number;
  /** From the worker's last batch to the decision: the aggregate Lambda's last invocation. */
  readonly aggregateMs: number;
  /** The rest: the manifest event and ingest queue, the inference queue, long polls, gaps between batches. */
  readonly queueWaitMs: number;
  /** First upload request to the decision (completedAt). */
  readonly totalMs: number;
  /** Each stage over totalMs (they add up to 1). */
  readonly share: {
    readonly upload: number;
    readonly select: number;
    readonly classify: number;
    readonly aggregate: number;
    readonly queueWait: number;
  };
}

/** One study's figures. */
export interface PipelineStudyFigures {
  readonly name: string;
  readonly slices: number;
  readonly selected: number;
  readonly decision: string | null;
  readonly stages: PipelineStages;
  /**
   * Work summed over invocations and batches, overlapping or not, ms: the worker's batches (and in
   * them fetch + decode and forward passes, which overlap) and the aggregate Lambda's invocations.
   */
  readonly busy: {
    readonly workerBatches: number;
    readonly workerMs: number;
    readonly fetchDecodeMs: number;
    readonly forwardMs: number;
    readonly aggregateInvocations: number;
    readonly aggregateMs: number;
  };
  /** Baseline: `diagnoseStudy` on the same files in this process, same model and pool size. */
  readonly baseline: {
    readonly name: 'diagnose in one process';
    readonly ms: number;
    readonly decision: string | null;
  };
  /** totalMs over the baseline's ms: what the distributed pipeline costs on one machine. */
  readonly overhead: number;
  /** The decision of both agrees (same model, same selection). */
  readonly decisionsMatch: boolean;
}

/** What `bench pipeline --json` prints. */
export interface BenchPipelineResult {
  readonly model: { readonly id: string; readonly tiny: boolean };
  readonly workerPool: number;
  readonly studies: readonly PipelineStudyFigures[];
}

/** Options of {@link benchPipeline}. */
export interface BenchPipelineOptions {
  /** Phantom series length. @default 300 */
  readonly phantomSlices?: number;
  /** A model folder; default the tiny model (see tiny-model.ts). */
  readonly modelDir?: string;
  /** Worker pool size in the worker and the baseline. @default the available cores */
  readonly workers?: number;
  /** Only this series of the real sample study (quick runs: `B70f`, 30 slices). @default both */
  readonly realSeries?: string;
  /** Give up on a study after this long. @default 600 */
  readonly timeoutSeconds?: number;
}

interface WorkerBatch {
  readonly at: number;
  readonly fetchDecodeMs: number;
  readonly classifyMs: number;
  readonly totalMs: number;
}

/** Time the real sample series and a phantom series (see the module comment). */
export async function benchPipeline(options: BenchPipelineOptions = {}): Promise<BenchPipelineResult> {
  await initBackend({ log: () => {} });
  const tiny = options.modelDir === undefined;
  const modelDir = options.modelDir ?? (await saveTinyModel());
  const work = await mkdtemp(join(tmpdir(), 'covidct-bench-pipeline-'));
  const pool = options.workers ?? availableParallelism();
  const phantomSlices = options.phantomSlices ?? 300;
  const sample = join(repoRoot(), 'samples', 'lung-pet-ct-dx-A0002');
  const studies = [
    options.realSeries === undefined
      ? { name: 'Lung-PET-CT-Dx A0002 (2 series, 60 slices, .dcm.gz)', path: sample }
      : {
          name: `Lung-PET-CT-Dx A0002 ${options.realSeries} (.dcm.gz)`,
          path: join(sample, options.realSeries),
        },
    { name: `phantom (DICOM, ${phantomSlices} slices)`, path: join(work, 'phantom') },
  ];
  await writePhantomSeries(join(work, 'phantom', 'SR_2'), {
    covid: true,
    seed: 8001,
    slices: phantomSlices,
    format: 'dicom',
    force: false,
  });

  const batches: WorkerBatch[] = [];
  const aggregateCalls: { at: number; ms: number }[] = [];
  let realAggregate: Promise<SqsEventHandler> | undefined;
  let stack: LocalStack | undefined;
  const hospital = { hospital: 'bench', apiKey: randomBytes(18).toString('base64url') };
  let aggregating = 0;
  const timedAggregate: SqsEventHandler = async (event: SQSEvent, context) => {
    const handler = await realAggregate!;
    const t = performance.now();
    aggregating++;
    try {
      return await handler(event, context);
    } finally {
      aggregating--;
      aggregateCalls.push({ at: Date.now(), ms: performance.now() - t });
    }
  };
  // One JSON object per line (not dev mode's indented logs), so the worker's batch reports can be read.
  const quiet = {
    POWERTOOLS_LOG_LEVEL: 'INFO',
    POWERTOOLS_METRICS_DISABLED: 'true',
    POWERTOOLS_DEV: 'false',
  };
  const restore = quietPowertools();
  try {
    stack = await startLocalStack({
      hospitals: [hospital],
      uploadModel: { dir: modelDir, name: 'bench', version: '1' },
      handlers: { aggregate: timedAggregate },
      pollWaitSeconds: 1,
      workerEnv: {
        ...quiet,
        COVIDCT_HEATMAPS: 'none',
        COVIDCT_POOL_SIZE: String(pool),
        COVIDCT_WORKER_WAIT_SECONDS: '1',
      },
      onWorkerLine: (line) => {
        if (!line.includes('"batch done"')) return;
        try {
          const r = JSON.parse(line) as Partial<WorkerBatch>;
          batches.push({
            at: Date.now(),
            fetchDecodeMs: r.fetchDecodeMs ?? 0,
            classifyMs: r.classifyMs ?? 0,
            totalMs: r.totalMs ?? 0,
          });
        } catch {
          // not a JSON log line
        }
      },
      onError: () => {},
    });
    const started = stack;
    realAggregate = loadPipelineHandlers(started.clients, started.env, ['aggregate']).then(
      (h) => h.aggregate!,
    );
    await realAggregate;
    await waitHealthy(started);

    const classifier = await loadClassifier(modelDir);
    const modelId = classifier.id;
    const out: PipelineStudyFigures[] = [];
    try {
      for (const study of studies) {
        const target = { api: started.apiUrl, key: hospital.apiKey };
        const firstBatch = batches.length;
        const firstAggregate = aggregateCalls.length;
        const t0 = Date.now();
        // Upload ends when the manifest is stored (the pipeline starts then), not when the client
        // has also removed its de-identified spool: that overlaps selection.
        let manifestAt: number | undefined;
        const upload = await uploadStudy({
          ...target,
          path: study.path,
          onManifestSent: () => {
            manifestAt = Date.now();
          },
        });
        const uploadMs = (manifestAt ?? Date.now()) - t0;
        const { status, timedOut } = await waitForStudy({
          ...target,
          studyId: upload.studyId,
          timeoutSeconds: options.timeoutSeconds ?? 600,
          intervalSeconds: 0.1,
        });
        if (timedOut || status.status !== 'COMPLETE') {
          throw new Error(
            `${study.name}: the study ended ${status.status}${status.reason ? ` (${status.reason})` : ''}${timedOut ? ', timed out' : ''}`,
          );
        }
        // The poll can see COMPLETE before the deciding aggregate call returns, or the worker's last line arrives.
        await new Promise((r) => setTimeout(r, 300));
        while (aggregating > 0) await new Promise((r) => setTimeout(r, 20));
        const timings = status.timings as
          | { selectingAt?: string; classifyingAt?: string; completedAt?: string }
          | undefined;
        const at = (iso: string | undefined) => Date.parse(iso ?? '') || Date.now();
        const selectingAt = at(timings?.selectingAt);
        const classifyingAt = at(timings?.classifyingAt);
        const completedAt = at(timings?.completedAt);
        const mine = batches.slice(firstBatch).filter((b) => b.at - b.totalMs <= completedAt);
        const calls = aggregateCalls.slice(firstAggregate);
        const selectMs = Math.max(0, classifyingAt - selectingAt);
        const classifyMs = unionMs(
          mine.map((b) => [b.at - b.totalMs, b.at] as const),
          classifyingAt,
          completedAt,
        );
        const lastBatchEnd = Math.max(classifyingAt, ...mine.map((b) => Math.min(b.at, completedAt)));
        const aggregateMs = Math.max(0, completedAt - lastBatchEnd);
        const totalMs = completedAt - t0;
        const queueWaitMs = Math.max(0, totalMs - uploadMs - selectMs - classifyMs - aggregateMs);
        const share = (ms: number) => round(ms / totalMs);

        const b0 = performance.now();
        const direct = await diagnoseStudy(study.path, { model: classifier, poolSize: pool });
        const baselineMs = performance.now() - b0;
        out.push({
          name: study.name,
          slices: upload.slices,
          selected: (status.selectedCount as number | undefined) ?? 0,
          decision: status.decision ?? null,
          stages: {
            uploadMs: round(uploadMs),
            selectMs: round(selectMs),
            classifyMs: round(classifyMs),
            aggregateMs: round(aggregateMs),
            queueWaitMs: round(queueWaitMs),
            totalMs: round(totalMs),
            share: {
              upload: share(uploadMs),
              select: share(selectMs),
              classify: share(classifyMs),
              aggregate: share(aggregateMs),
              queueWait: share(queueWaitMs),
            },
          },
          busy: {
            workerBatches: mine.length,
            workerMs: round(mine.reduce((n, b) => n + b.totalMs, 0)),
            fetchDecodeMs: round(mine.reduce((n, b) => n + b.fetchDecodeMs, 0)),
            forwardMs: round(mine.reduce((n, b) => n + b.classifyMs, 0)),
            aggregateInvocations: calls.length,
            aggregateMs: round(calls.reduce((n, c) => n + c.ms, 0)),
          },
          baseline: {
            name: 'diagnose in one process',
            ms: round(baselineMs),
            decision: direct.study.decision,
          },
          overhead: round(totalMs / baselineMs),
          decisionsMatch: direct.study.decision === status.decision,
        });
      }
    } finally {
      classifier.dispose();
    }
    return { model: { id: modelId, tiny }, workerPool: pool, studies: out };
  } finally {
    restore();
    await stack?.stop();
    await rm(work, { recursive: true, force: true });
    if (tiny) await rm(dirname(modelDir), { recursive: true, force: true });
  }
}

/** Length of the union of intervals `[start, end]`, clipped to `[from, to]`. */
export function unionMs(intervals: readonly (readonly [number, number])[], from: number, to: number): number {
  const clipped = intervals
    .map(([a, b]) => [Math.max(a, from), Math.min(b, to)] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let end = -Infinity;
  for (const [a, b] of clipped) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return total;
}

/** Wait until the worker's health check says ready (model loaded and warmed up). */
export async function waitHealthy(stack: LocalStack, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const port = stack.worker().healthPort;
    if (port !== undefined) {
      const ok = await fetch(`http://127.0.0.1:${port}/health`)
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) return;
    }
    if (!stack.worker().running && stack.worker().starts > 0)
      throw new Error('the worker exited while starting');
    if (Date.now() > deadline) throw new Error('the worker did not become healthy');
    await new Promise((r) => setTimeout(r, 200));
  }
}
