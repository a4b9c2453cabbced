/**
 * A run's way back to the hospital: turn what the cloud decided (or why the run could not be
 * sent) into a Structured Report and the Grad-CAM overlays, re-identified, in the run's outbox
 * (the build phase), then C-STORE them to the destination (the deliver phase). Objects the
 * destination stored move to `sent/`; what it refuses every time is set aside in `refused/` so the
 * study's later runs are not held up behind it.
 */
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type DeidentifyMap, writePrivateFile } from '../core/deidentify.js';
import type { CovidctResult } from '../core/dicom/result-objects.js';
import { describeError } from '../core/errors.js';
import { buildRunResults, filesIn, overlaySources, type RunResults, resultOf } from './results.js';
import type { RunContext } from './run-context.js';
import { waitForResult } from './send.js';
import { type RunRecord, syncDir } from './state.js';
import { type StoreOutcome, storeInstances } from './store-scu.js';

/** Delivery attempts a destination may refuse an object (a failure status other than A7xx) before it is set aside. */
const REFUSALS_BEFORE_SET_ASIDE = 5;

/** What a run's SR states and the overlays it comes with, before they are built. */
interface RunOutcome {
  readonly result: CovidctResult;
  readonly decidedAt: Date;
  readonly overlays: { file: string; png: Uint8Array }[];
}

/** The run's outcome: its local failure, or the cloud's result with the COVID slices' overlays fetched. */
async function outcomeOf(ctx: RunContext, run: RunRecord, dir: string): Promise<RunOutcome> {
  if (run.localFailure !== undefined) {
    return {
      result: { status: 'FAILED', studyId: run.runId, reason: `not sent for analysis: ${run.localFailure}` },
      decidedAt: new Date(run.createdAt),
      overlays: [],
    };
  }
  const { status, report } = await waitForResult(ctx, run);
  const decidedAt = new Date(
    (report?.timings?.decidedAt as string | undefined) ??
      (status.updatedAt as string | undefined) ??
      run.createdAt,
  );
  const overlays: RunOutcome['overlays'] = [];
  if (report) {
    const map = JSON.parse(await readFile(join(dir, 'map.json'), 'utf8')) as DeidentifyMap;
    for (const o of overlaySources(report, map, join(dir, 'source'))) {
      const res = await fetch(o.heatmapUrl);
      // A 5xx is retried with the step; a 4xx (the overlay is gone) leaves that overlay out.
      if (res.status >= 500) throw new Error(`overlay GET answered ${res.status}`);
      if (!res.ok) {
        ctx.log.warn('overlay left out', { run: run.runId, status: res.status });
        continue;
      }
      overlays.push({ file: o.file, png: new Uint8Array(await res.arrayBuffer()) });
    }
  }
  return { result: resultOf(status, report), decidedAt, overlays };
}

/** Write the run's objects into a fresh `outbox/`, numbered in delivery order, and sync it. */
async function writeOutbox(dir: string, built: RunResults): Promise<number> {
  const outbox = join(dir, 'outbox');
  await rm(outbox, { recursive: true, force: true });
  await mkdir(outbox, { recursive: true, mode: 0o700 });
  const objects = [built.sr, ...built.overlays];
  for (const [i, o] of objects.entries()) {
    await writePrivateFile(join(outbox, `${String(i).padStart(4, '0')}.dcm`), o.bytes);
  }
  await syncDir(outbox);
  return objects.length;
}

/**
 * The build phase (a run in `wait` waits for the cloud first): the SR and overlays, re-identified
 * from the run's original instances, in the outbox. Resolves with the run saved in `deliver`.
 */
export async function build(ctx: RunContext, run: RunRecord): Promise<RunRecord> {
  const dir = ctx.state.runDir(run.runId);
  const sourceFiles = await filesIn(join(dir, 'source'));
  const { result, decidedAt, overlays } = await outcomeOf(ctx, run, dir);
  const predecessor = ctx.previousSr(run);
  const built = await buildRunResults({
    sourceFiles,
    result,
    decidedAt,
    overlays,
    ...(predecessor ? { predecessor } : {}),
  });
  const objects = await writeOutbox(dir, built);
  // Marks the end of the gateway's own work on the result (bench gateway splits the time by it).
  ctx.log.info('results built', { run: run.runId, objects, status: result.status });
  return ctx.save({
    ...run,
    phase: 'deliver',
    results: {
      runDigest: built.sr.runDigest,
      sr: {
        studyInstanceUid: built.sr.studyInstanceUid,
        seriesInstanceUid: built.sr.seriesInstanceUid,
        sopClassUid: built.sr.sopClassUid,
        sopInstanceUid: built.sr.sopInstanceUid,
      },
      overlays: built.overlays.length,
      status: result.status,
    },
  });
}

/** Whether a C-STORE status means the destination has the object: success, or a warning (0xB000–0xBFFF: stored, with coercion). */
function storedStatus(status: number | undefined): boolean {
  return status !== undefined && (status === 0 || (status & 0xf000) === 0xb000);
}

/** Answered with a failure other than "out of resources" (A7xx): the destination says no. */
function refusedStatus(status: number | undefined): boolean {
  return status !== undefined && !storedStatus(status) && (status & 0xff00) !== 0xa700;
}

/** Move `files` into `dir` (made 0700 if need be) and sync it. */
async function moveInto(dir: string, files: readonly string[]): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const file of files) await rename(file, join(dir, basename(file)));
  await syncDir(dir);
}

/**
 * Send the outbox's objects over one association; those stored move to `sent/`. Resolves with
 * the outcomes; rejects, with the attempt counted in the run's record, when nothing came back.
 */
async function sendOutbox(
  ctx: RunContext,
  run: RunRecord,
  files: readonly string[],
): Promise<StoreOutcome[]> {
  const instances = await Promise.all(
    files.map(async (f) => ({ bytes: await readFile(f), name: basename(f) })),
  );
  let outcomes: StoreOutcome[];
  try {
    outcomes = await storeInstances(ctx.destination, ctx.aeTitle, instances);
  } catch (error) {
    await ctx.save({
      ...run,
      deliveryAttempts: (run.deliveryAttempts ?? 0) + 1,
      lastDeliveryError: describeError(error),
    });
    throw error;
  }
  const dir = ctx.state.runDir(run.runId);
  await moveInto(
    join(dir, 'sent'),
    files.filter((_, i) => storedStatus(outcomes[i]!.status)),
  );
  await syncDir(join(dir, 'outbox'));
  return outcomes;
}

/**
 * After an attempt in which some objects were not stored: throw (the step is retried, the attempt
 * counted) unless the destination has refused every one of them for {@link REFUSALS_BEFORE_SET_ASIDE}
 * attempts; then they are set aside in `refused/` for the administrator and the run may end.
 */
async function setAsideOrRetry(
  ctx: RunContext,
  run: RunRecord,
  files: readonly string[],
  outcomes: readonly StoreOutcome[],
): Promise<void> {
  const failed = outcomes.filter((o) => !storedStatus(o.status)).length;
  const refused = files.filter((_, i) => refusedStatus(outcomes[i]!.status));
  const statuses = outcomes.map((o) => (o.status === undefined ? 'not sent' : `0x${o.status.toString(16)}`));
  const error = `${failed} of ${files.length} objects not stored (${statuses.join(', ')})`;
  const attempts = (run.deliveryAttempts ?? 0) + 1;
  if (attempts < REFUSALS_BEFORE_SET_ASIDE || refused.length < failed) {
    await ctx.save({ ...run, deliveryAttempts: attempts, lastDeliveryError: error });
    throw new Error(error);
  }
  await moveInto(join(ctx.state.runDir(run.runId), 'refused'), refused);
  ctx.log.error('destination refuses result objects; set aside', {
    run: run.runId,
    objects: refused.length,
    attempts,
    error,
  });
}

/**
 * The deliver phase: C-STORE the outbox to the destination. Resolves with the run saved `done`
 * once every object is stored (or set aside); rejects, to be retried with backoff, otherwise.
 */
export async function deliver(ctx: RunContext, run: RunRecord): Promise<RunRecord> {
  const dir = ctx.state.runDir(run.runId);
  await mkdir(join(dir, 'sent'), { recursive: true, mode: 0o700 });
  const files = await filesIn(join(dir, 'outbox'));
  if (files.length > 0) {
    const outcomes = await sendOutbox(ctx, run, files);
    if (outcomes.some((o) => !storedStatus(o.status))) await setAsideOrRetry(ctx, run, files, outcomes);
  }
  ctx.log.info('result delivered', {
    run: run.runId,
    studyId: run.cloudStudyId ?? null,
    objects: files.length,
    status: run.results?.status,
  });
  return ctx.save({ ...run, phase: 'done', deliveredAt: new Date().toISOString() });
}
