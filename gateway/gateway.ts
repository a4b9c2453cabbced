/**
 * The DICOM gateway (`covidct gateway`), on the hospital's side: receive CT studies from a PACS
 * or scanner, send each, de-identified, through the API once no instance of it has arrived for
 * the quiet period, wait for the decision, and return a Structured Report and the Grad-CAM
 * overlays, re-identified, into the patient's study on the destination PACS.
 *
 * Every step is a phase of a run recorded in the state folder (./state.ts), so a restart resumes
 * where the gateway stopped: a run that was uploading uploads again (the half-made cloud study is
 * failed by the cloud's sweeper), one that was waiting waits again, results not yet stored at the
 * destination are sent again with backoff. Result UIDs derive from the run's content, so sending
 * a result twice gives the PACS the same instances.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type DeidentifyMap, deidentifyStudy, writePrivateFile } from '../core/deidentify.js';
import { readTopLevelValues, trimmed } from '../core/dicom/deidentify.js';
import { describeError, FileSystemError } from '../core/errors.js';
import {
  ApiError,
  type ApiTarget,
  getReport,
  getStudy,
  isFinished,
  type StudyReport,
  type StudyStatus,
  uploadStudy,
} from '../pipeline/api-client.js';
import {
  type AllowedCaller,
  type DicomPeer,
  type ReceivedInstance,
  STATUS_CANNOT_UNDERSTAND,
  type StoreScp,
  type StoreVerdict,
  setUpDimse,
  startStoreScp,
  storeInstances,
} from './dimse.js';
import type { GatewayLog } from './log.js';
import { buildRunResults, filesIn, overlaySources, resultOf } from './results.js';
import { GatewayState, type RunRecord, syncDir } from './state.js';

const STUDY_INSTANCE_UID = 0x0020000d;
const PATIENT_ID = 0x00100020;
const ISSUER_OF_PATIENT_ID = 0x00100021;
/** Asked for so that the read walks every element up to and through the pixel data. */
const PIXEL_DATA = 0x7fe00010;

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  readonly port: number;
  readonly aeTitle: string;
  readonly allow: readonly AllowedCaller[];
  readonly destination: DicomPeer;
  readonly api: ApiTarget;
  readonly stateDir: string;
  /** A study is complete when none of its instances arrived for this long. @default 30 */
  readonly quietSeconds?: number;
  /** Received data and finished runs are purged after this many days. @default 7 */
  readonly retainDays?: number;
  /** Refuse storage SOP classes other than CT at association. @default false */
  readonly refuseOtherSopClasses?: boolean;
  /** How often the API is asked about a study. @default 2 */
  readonly pollSeconds?: number;
  /** First retry delay of a failed upload or delivery; doubles up to `maxRetrySeconds`. @default 1 */
  readonly retrySeconds?: number;
  /** @default 60 */
  readonly maxRetrySeconds?: number;
  readonly log: GatewayLog;
}

/** A running gateway. */
export interface Gateway {
  readonly port: number;
  /** Resolves when no run is in progress and none is due (tests and benchmarks wait on it). */
  idle(): Promise<void>;
  /** Stop receiving, let the current steps reach a saved phase, stop. */
  stop(): Promise<void>;
}

/** Delivery attempts a destination may refuse an object (a failure status other than A7xx) before it is set aside. */
const REFUSALS_BEFORE_SET_ASIDE = 5;

/** A study the de-identification cannot send (nothing readable, burned-in annotation): reported, not retried. */
class UnsendableStudyError extends Error {
  override name = 'UnsendableStudyError';
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The wait before retry number `attempt + 1` of a step: `first` doubled per failure, at most `max`. */
export function retryDelay(attempt: number, first: number, max: number): number {
  return Math.min(max, first * 2 ** Math.min(attempt, 30));
}

/**
 * An API answer that sending again cannot change: a 4xx about the study itself (too many slices,
 * a slice too large, a malformed request). Not 401/403 (a key to fix), 408 or 429 (try later).
 */
export function refusedForGood(error: unknown): boolean {
  return (
    error instanceof ApiError &&
    error.status >= 400 &&
    error.status < 500 &&
    ![401, 403, 408, 429].includes(error.status)
  );
}

/** Start the gateway: open the state, resume what was left, listen. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { log } = options;
  setUpDimse(log);
  const quietMs = (options.quietSeconds ?? 30) * 1000;
  const retainDays = options.retainDays ?? 7;
  const retryMs = (options.retrySeconds ?? 1) * 1000;
  const maxRetryMs = (options.maxRetrySeconds ?? 60) * 1000;
  const state = await GatewayState.open(options.stateDir);

  /** Per study: when its newest instance arrived and the patient it belongs to. */
  const studies = new Map<string, { lastArrivalMs: number; patient: string; snapshotMs: number }>();
  /** Which patient an instance is of, keyed like the folders (issuer and patient id). */
  const patientOf = (values: ReadonlyMap<number, Uint8Array>) => {
    const text = (tag: number) => trimmed(values.get(tag) ?? new Uint8Array());
    return state.keyOf('patient', `${text(ISSUER_OF_PATIENT_ID)}\u0000${text(PATIENT_ID)}`);
  };
  for (const [studyKey, files] of await state.studies()) {
    if (files.length === 0) continue;
    // The study's patient, from one of its instances: a restart keeps refusing another patient's.
    let patient = '';
    try {
      const first = files[0]!.file;
      patient = patientOf(
        readTopLevelValues(await readFile(first), first, [PATIENT_ID, ISSUER_OF_PATIENT_ID]).values,
      );
    } catch {
      // Stored instances were readable when they arrived; if one is not now, the next arrival decides.
    }
    studies.set(studyKey, {
      lastArrivalMs: Math.max(...files.map((f) => f.mtimeMs)),
      patient,
      snapshotMs: 0,
    });
  }
  const runs = new Map<string, RunRecord>();
  for (const run of await state.runs()) {
    runs.set(run.runId, run);
    const s = studies.get(run.studyKey);
    if (s) s.snapshotMs = Math.max(s.snapshotMs, run.snapshotMs);
  }

  let stopping = false;
  const busy = new Set<string>();
  const retryAt = new Map<string, number>();
  /** Consecutive failed steps per run (the backoff's exponent). */
  const failures = new Map<string, number>();
  const inFlight = new Set<Promise<void>>();

  async function accept(instance: ReceivedInstance): Promise<StoreVerdict> {
    let values: ReadonlyMap<number, Uint8Array>;
    let hasPixels: boolean;
    try {
      const read = readTopLevelValues(
        instance.bytes ?? (await readFile(instance.path)),
        'received instance',
        [
          PATIENT_ID,
          ISSUER_OF_PATIENT_ID,
          STUDY_INSTANCE_UID,
          // A data set cut short or damaged anywhere up to the end of its pixels is refused here,
          // before C-STORE answers success (the read stops after the last tag asked for).
          PIXEL_DATA,
        ],
      );
      values = read.values;
      hasPixels = read.present.has(PIXEL_DATA);
    } catch (error) {
      log.warn('instance refused: cannot be read', {
        association: instance.association,
        error: describeError(error),
      });
      return { stored: false, status: STATUS_CANNOT_UNDERSTAND, reason: 'not a readable DICOM data set' };
    }
    if (!hasPixels) {
      // Also a data set cut exactly before its pixel data: nothing covidct could analyse.
      log.warn('instance refused: a CT image without pixel data', { association: instance.association });
      return { stored: false, status: STATUS_CANNOT_UNDERSTAND, reason: 'CT image without pixel data' };
    }
    const studyUid = trimmed(values.get(STUDY_INSTANCE_UID) ?? new Uint8Array());
    if (studyUid === '') {
      log.warn('instance refused: no StudyInstanceUID', { association: instance.association });
      return { stored: false, status: STATUS_CANNOT_UNDERSTAND, reason: 'no StudyInstanceUID' };
    }
    const studyKey = state.keyOf('study', studyUid);
    const patient = patientOf(values);
    const known = studies.get(studyKey);
    if (known && known.patient !== '' && known.patient !== patient) {
      log.warn('instance refused: its study holds another patient', {
        association: instance.association,
        study: studyKey,
      });
      return {
        stored: false,
        status: STATUS_CANNOT_UNDERSTAND,
        reason: 'study UID already holds another patient',
      };
    }
    // Claimed before the first await: another association bringing the same study for another
    // patient meanwhile is refused above, not stored beside it.
    const entry = known ?? { lastArrivalMs: 0, patient, snapshotMs: 0 };
    entry.patient ||= patient;
    if (!known) studies.set(studyKey, entry);
    try {
      await state.storeInstance(instance.path, studyKey, state.keyOf('instance', instance.sopInstanceUid));
    } catch (error) {
      if (!known && entry.lastArrivalMs === 0 && studies.get(studyKey) === entry) studies.delete(studyKey);
      throw error;
    }
    // After the file's own time: a run's snapshot takes the later of the two (see startDueRuns).
    entry.lastArrivalMs = Math.max(entry.lastArrivalMs, Date.now());
    if (!known) log.info('study arriving', { study: studyKey, association: instance.association });
    return { stored: true };
  }

  const scp: StoreScp = await startStoreScp({
    port: options.port,
    aeTitle: options.aeTitle,
    allow: options.allow,
    incomingDir: state.incomingDir,
    refuseOtherSopClasses: options.refuseOtherSopClasses ?? false,
    accept,
    log,
  });
  log.info('gateway listening', {
    port: scp.port,
    aeTitle: options.aeTitle,
    studies: studies.size,
    runs: runs.size,
  });

  /** Start runs for studies that have been quiet long enough. */
  async function startDueRuns(): Promise<void> {
    const now = Date.now();
    for (const [studyKey, s] of studies) {
      if (s.lastArrivalMs <= s.snapshotMs || now - s.lastArrivalMs < quietMs) continue;
      const files = await state.studyFiles(studyKey);
      if (files.length === 0) continue;
      const run = await state.createRun(studyKey, files, s.lastArrivalMs);
      s.snapshotMs = run.snapshotMs;
      runs.set(run.runId, run);
      log.info('study complete: run started', { study: studyKey, run: run.runId, instances: files.length });
    }
  }

  async function save(run: RunRecord): Promise<RunRecord> {
    await state.saveRun(run);
    runs.set(run.runId, run);
    return run;
  }

  async function upload(run: RunRecord): Promise<RunRecord> {
    const dir = state.runDir(run.runId);
    const mapFile = join(dir, 'map.json');
    await rm(mapFile, { force: true });
    for (const leftover of await readdir(dir)) {
      if (leftover.startsWith('covidct-upload-'))
        await rm(join(dir, leftover), { recursive: true, force: true });
    }
    let skipped = 0;
    try {
      const sent = await uploadStudy({
        ...options.api,
        path: join(dir, 'source'),
        mapFile,
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
            throw new UnsendableStudyError(describeError(error).replaceAll(`${join(dir, 'source')}/`, ''));
          }
        },
      });
      log.info('study sent', { run: run.runId, studyId: sent.studyId, slices: sent.slices, skipped });
      return save({ ...run, phase: 'wait', cloudStudyId: sent.studyId });
    } catch (error) {
      if (error instanceof UnsendableStudyError || refusedForGood(error)) {
        const reason = (error as Error).message;
        log.warn('study cannot be analysed', { run: run.runId, error: reason });
        return save({ ...run, phase: 'build', localFailure: reason });
      }
      throw error;
    }
  }

  async function wait(run: RunRecord): Promise<{ status: StudyStatus; report?: StudyReport }> {
    const id = run.cloudStudyId!;
    for (;;) {
      let status: StudyStatus;
      try {
        status = await getStudy(options.api, id);
      } catch (error) {
        // The cloud no longer has the study (gone, another hospital's key): asking again cannot help.
        if (!refusedForGood(error)) throw error;
        log.warn('study no longer in the cloud', {
          run: run.runId,
          studyId: id,
          error: describeError(error),
        });
        return { status: { studyId: id, status: 'FAILED', reason: `the cloud no longer has study ${id}` } };
      }
      if (isFinished(status)) {
        const report = status.status === 'COMPLETE' ? await getReport(options.api, id) : undefined;
        log.info('result received', {
          run: run.runId,
          studyId: id,
          status: status.status,
          decision: status.decision ?? null,
        });
        return { status, ...(report ? { report } : {}) };
      }
      if (stopping) throw new Error('stopping');
      await sleep((options.pollSeconds ?? 2) * 1000);
    }
  }

  function previousSr(run: RunRecord) {
    let latest: RunRecord | undefined;
    for (const r of runs.values()) {
      if (r.studyKey === run.studyKey && r.results && r.createdAt < run.createdAt) {
        if (!latest || r.createdAt > latest.createdAt) latest = r;
      }
    }
    return latest?.results?.sr;
  }

  async function build(run: RunRecord): Promise<RunRecord> {
    const dir = state.runDir(run.runId);
    const sourceFiles = await filesIn(join(dir, 'source'));
    let result: ReturnType<typeof resultOf>;
    let decidedAt: Date;
    const overlays: { file: string; png: Uint8Array }[] = [];
    if (run.localFailure !== undefined) {
      result = { status: 'FAILED', studyId: run.runId, reason: `not sent for analysis: ${run.localFailure}` };
      decidedAt = new Date(run.createdAt);
    } else {
      const { status, report } = await wait(run);
      result = resultOf(status, report);
      decidedAt = new Date(
        (report?.timings?.decidedAt as string | undefined) ??
          (status.updatedAt as string | undefined) ??
          run.createdAt,
      );
      if (report) {
        const map = JSON.parse(await readFile(join(dir, 'map.json'), 'utf8')) as DeidentifyMap;
        for (const o of overlaySources(report, map, join(dir, 'source'))) {
          const res = await fetch(o.heatmapUrl);
          // A 5xx is retried with the step; a 4xx (the overlay is gone) leaves that overlay out.
          if (res.status >= 500) throw new Error(`overlay GET answered ${res.status}`);
          if (!res.ok) {
            log.warn('overlay left out', { run: run.runId, status: res.status });
            continue;
          }
          overlays.push({ file: o.file, png: new Uint8Array(await res.arrayBuffer()) });
        }
      }
    }
    const predecessor = previousSr(run);
    const built = await buildRunResults({
      sourceFiles,
      result,
      decidedAt,
      overlays,
      ...(predecessor ? { predecessor } : {}),
    });
    const outbox = join(dir, 'outbox');
    await rm(outbox, { recursive: true, force: true });
    await mkdir(outbox, { recursive: true, mode: 0o700 });
    const objects = [built.sr, ...built.overlays];
    for (const [i, o] of objects.entries()) {
      const path = join(outbox, `${String(i).padStart(4, '0')}.dcm`);
      await writePrivateFile(path, o.bytes);
    }
    await syncDir(outbox);
    // Marks the end of the gateway's own work on the result (bench gateway splits the time by it).
    log.info('results built', { run: run.runId, objects: objects.length, status: result.status });
    return save({
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

  async function deliver(run: RunRecord): Promise<RunRecord> {
    const dir = state.runDir(run.runId);
    const outbox = join(dir, 'outbox');
    const sentDir = join(dir, 'sent');
    await mkdir(sentDir, { recursive: true, mode: 0o700 });
    const files = await filesIn(outbox);
    if (files.length > 0) {
      const instances = await Promise.all(
        files.map(async (f) => ({ bytes: await readFile(f), name: f.slice(f.lastIndexOf('/') + 1) })),
      );
      let outcomes: Awaited<ReturnType<typeof storeInstances>>;
      try {
        outcomes = await storeInstances(options.destination, options.aeTitle, instances);
      } catch (error) {
        await save({
          ...run,
          deliveryAttempts: (run.deliveryAttempts ?? 0) + 1,
          lastDeliveryError: describeError(error),
        });
        throw error;
      }
      let failed = 0;
      const refused: string[] = [];
      for (const [i, outcome] of outcomes.entries()) {
        const file = files[i]!;
        const name = file.slice(file.lastIndexOf('/') + 1);
        // Success, or a warning (0xB000–0xBFFF: stored, with coercion): the destination has it.
        const ok =
          outcome.status !== undefined && (outcome.status === 0 || (outcome.status & 0xf000) === 0xb000);
        if (ok) await rename(file, join(sentDir, name));
        else {
          failed++;
          // Answered with a failure other than "out of resources" (A7xx): the destination says no.
          if (outcome.status !== undefined && (outcome.status & 0xff00) !== 0xa700) refused.push(file);
        }
      }
      await syncDir(outbox);
      await syncDir(sentDir);
      if (failed > 0) {
        const statuses = outcomes.map((o) =>
          o.status === undefined ? 'not sent' : `0x${o.status.toString(16)}`,
        );
        const error = `${failed} of ${files.length} objects not stored (${statuses.join(', ')})`;
        const attempts = (run.deliveryAttempts ?? 0) + 1;
        if (attempts < REFUSALS_BEFORE_SET_ASIDE || refused.length < failed) {
          await save({ ...run, deliveryAttempts: attempts, lastDeliveryError: error });
          throw new Error(error);
        }
        // Refused every time: kept in refused/ for the administrator, and the run ends, so the
        // study's later runs are not held up behind it.
        const refusedDir = join(dir, 'refused');
        await mkdir(refusedDir, { recursive: true, mode: 0o700 });
        for (const file of refused)
          await rename(file, join(refusedDir, file.slice(file.lastIndexOf('/') + 1)));
        await syncDir(refusedDir);
        log.error('destination refuses result objects; set aside', {
          run: run.runId,
          objects: refused.length,
          attempts,
          error,
        });
      }
    }
    log.info('result delivered', {
      run: run.runId,
      studyId: run.cloudStudyId ?? null,
      objects: files.length,
      status: run.results?.status,
    });
    return save({ ...run, phase: 'done', deliveredAt: new Date().toISOString() });
  }

  /** Advance a run through its phases until done, or until a step fails (retried later). */
  async function advance(runId: string): Promise<void> {
    let run = runs.get(runId)!;
    while (run.phase !== 'done' && !stopping) {
      try {
        if (run.phase === 'upload') run = await upload(run);
        else if (run.phase === 'wait' || run.phase === 'build') run = await build(run);
        else if (run.phase === 'deliver') run = await deliver(run);
        failures.delete(runId);
        retryAt.delete(runId);
      } catch (error) {
        if (stopping) return;
        run = runs.get(runId)!;
        // Consecutive failures of this run double the wait: 1 s, 2 s, 4 s … up to the maximum.
        const attempt = failures.get(runId) ?? 0;
        failures.set(runId, attempt + 1);
        const delay = retryDelay(attempt, retryMs, maxRetryMs);
        log.warn('run step failed; retrying', {
          run: runId,
          phase: run.phase,
          error: describeError(error),
          retryInSeconds: delay / 1000,
        });
        retryAt.set(runId, Date.now() + delay);
        return;
      }
    }
  }

  function earlierUnfinished(run: RunRecord): boolean {
    for (const r of runs.values()) {
      if (r.studyKey === run.studyKey && r.phase !== 'done' && r.createdAt < run.createdAt) return true;
    }
    return false;
  }

  function schedule(): void {
    const now = Date.now();
    for (const run of runs.values()) {
      if (run.phase === 'done' || busy.has(run.runId) || (retryAt.get(run.runId) ?? 0) > now) continue;
      // Runs of a study go one after the other: a later one names the earlier one's SR as predecessor.
      if (earlierUnfinished(run)) continue;
      busy.add(run.runId);
      const p = advance(run.runId).finally(() => {
        busy.delete(run.runId);
        inFlight.delete(p);
      });
      inFlight.add(p);
    }
  }

  /** Drop what the purge removed from memory too (a gateway runs for months). */
  function forgetPurged(): void {
    for (const [id, r] of runs) if (r.phase === 'done' && !existsSync(state.runDir(id))) runs.delete(id);
    const withRuns = new Set([...runs.values()].map((r) => r.studyKey));
    for (const [key, s] of studies) {
      if (s.lastArrivalMs <= s.snapshotMs && !withRuns.has(key) && !existsSync(state.studyDir(key))) {
        studies.delete(key);
      }
    }
  }

  let lastPurge = 0;
  let ticking = false;
  const tick = async () => {
    if (ticking || stopping) return;
    ticking = true;
    try {
      await startDueRuns();
      schedule();
      if (Date.now() - lastPurge > 3_600_000) {
        lastPurge = Date.now();
        const purged = await state.purge(retainDays);
        if (purged.runs + purged.studies > 0) {
          log.info('purged old data', purged);
          forgetPurged();
        }
      }
    } catch (error) {
      log.error('gateway step failed', { error: describeError(error) });
    } finally {
      ticking = false;
    }
  };
  const timer = setInterval(() => void tick(), Math.max(100, Math.min(1000, quietMs / 4)));
  void tick();

  return {
    port: scp.port,
    async idle() {
      for (;;) {
        const pending =
          busy.size > 0 ||
          [...runs.values()].some((r) => r.phase !== 'done') ||
          [...studies.values()].some((s) => s.lastArrivalMs > s.snapshotMs);
        if (!pending) return;
        await sleep(100);
      }
    },
    async stop() {
      stopping = true;
      clearInterval(timer);
      scp.close();
      await Promise.allSettled([...inFlight]);
      log.info('gateway stopped');
    },
  };
}
