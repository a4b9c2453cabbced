/**
 * A run's way to the cloud: de-identify its instances and upload them through the API (the
 * upload phase), then ask the API about the study until it is finished (the wait). A study that
 * can never be sent (nothing readable, burned-in annotation, an API answer that sending again
 * cannot change) ends the upload with a local failure, which the run reports as its result.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { deidentifyStudy } from '../core/deidentify.js';
import { describeError, FileSystemError } from '../core/errors.js';
import {
  ApiError,
  getReport,
  getStudy,
  isFinished,
  type StudyReport,
  type StudyStatus,
  uploadStudy,
} from '../pipeline/api-client.js';
import type { RunContext } from './run-context.js';
import type { RunRecord } from './state.js';

/** A study the de-identification cannot send (nothing readable, burned-in annotation): reported, not retried. */
class UnsendableStudyError extends Error {
  override name = 'UnsendableStudyError';
}

/**
 * An API answer that sending again cannot change: a 4xx about the study itself (too many slices,
 * a slice too large, a malformed request). Not 401/403 (a key to fix), 408 or 429 (try later).
 */
export function refusedForGood(error: unknown): error is ApiError {
  return (
    error instanceof ApiError &&
    error.status >= 400 &&
    error.status < 500 &&
    ![401, 403, 408, 429].includes(error.status)
  );
}

/** Remove what an interrupted upload of the run left: the map and the de-identified spools. */
async function clearUpload(dir: string): Promise<void> {
  await rm(join(dir, 'map.json'), { force: true });
  for (const leftover of await readdir(dir)) {
    if (leftover.startsWith('covidct-upload-'))
      await rm(join(dir, leftover), { recursive: true, force: true });
  }
}

/**
 * The upload phase: de-identify the run's `source/` into a spool in its folder and upload it,
 * keeping the de-identification map (`map.json`) for the way back. Resolves with the run saved in
 * its next phase: `wait` with the cloud's study id, or `build` with a local failure when the
 * study can never be sent; rejects (to be retried) on anything else.
 */
export async function upload(ctx: RunContext, run: RunRecord): Promise<RunRecord> {
  const dir = ctx.state.runDir(run.runId);
  const source = join(dir, 'source');
  await clearUpload(dir);
  let skipped = 0;
  try {
    const sent = await uploadStudy({
      ...ctx.api,
      path: source,
      mapFile: join(dir, 'map.json'),
      spoolParent: dir,
      handleSignals: false,
      onSkip: () => skipped++,
      deidentify: async (...args) => {
        try {
          return await deidentifyStudy(...args);
        } catch (error) {
          // The machine (disk full, I/O error) is retried; the content cannot change.
          if (error instanceof FileSystemError) throw error;
          // The reason goes into the patient's record: name the file, not the gateway's folders.
          throw new UnsendableStudyError(describeError(error).replaceAll(`${source}/`, ''));
        }
      },
    });
    ctx.log.info('study sent', { run: run.runId, studyId: sent.studyId, slices: sent.slices, skipped });
    return ctx.save({ ...run, phase: 'wait', cloudStudyId: sent.studyId });
  } catch (error) {
    if (error instanceof UnsendableStudyError || refusedForGood(error)) {
      const reason = error.message;
      ctx.log.warn('study cannot be analysed', { run: run.runId, error: reason });
      return ctx.save({ ...run, phase: 'build', localFailure: reason });
    }
    throw error;
  }
}

/** What the cloud said about a run's study once it finished: its status and, when COMPLETE, its report. */
export interface CloudResult {
  readonly status: StudyStatus;
  readonly report?: StudyReport;
}

/**
 * The wait: ask the API about the run's study every `pollMs` until it is finished. A study the
 * cloud no longer has ends FAILED; rejects (to be retried) on other errors and when stopping.
 */
export async function waitForResult(ctx: RunContext, run: RunRecord): Promise<CloudResult> {
  const id = run.cloudStudyId!;
  for (;;) {
    let status: StudyStatus;
    try {
      status = await getStudy(ctx.api, id);
    } catch (error) {
      // The cloud no longer has the study (gone, another hospital's key): asking again cannot help.
      if (!refusedForGood(error)) throw error;
      ctx.log.warn('study no longer in the cloud', {
        run: run.runId,
        studyId: id,
        error: describeError(error),
      });
      return { status: { studyId: id, status: 'FAILED', reason: `the cloud no longer has study ${id}` } };
    }
    if (isFinished(status)) {
      const report = status.status === 'COMPLETE' ? await getReport(ctx.api, id) : undefined;
      ctx.log.info('result received', {
        run: run.runId,
        studyId: id,
        status: status.status,
        decision: status.decision ?? null,
      });
      return { status, ...(report ? { report } : {}) };
    }
    if (ctx.stopping()) throw new Error('stopping');
    await sleep(ctx.pollMs);
  }
}
