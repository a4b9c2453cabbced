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
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../core/errors.js';
import type { ApiTarget } from '../pipeline/api-client.js';
import { build, deliver } from './deliver.js';
import { type AllowedCaller, type DicomPeer, setUpDimse } from './dimse.js';
import type { GatewayLog } from './log.js';
import { instanceReceiver, loadStudies, type StudyEntry } from './receive.js';
import type { RunContext } from './run-context.js';
import { upload } from './send.js';
import { GatewayState, type RunRecord } from './state.js';
import { type StoreScp, startStoreScp } from './store-scp.js';

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

/** The wait before retry number `attempt + 1` of a step: `first` doubled per failure, at most `max`. */
export function retryDelay(attempt: number, first: number, max: number): number {
  return Math.min(max, first * 2 ** Math.min(attempt, 30));
}

/**
 * The runs of the gateway's studies: starts one for each study that went quiet, advances each
 * through its phases (one run of a study at a time, in order), retries failed steps with backoff,
 * and purges what is older than the retention. It is also what the steps see of the gateway.
 */
class RunScheduler implements RunContext {
  readonly log: GatewayLog;
  readonly api: ApiTarget;
  readonly pollMs: number;
  readonly destination: DicomPeer;
  readonly aeTitle: string;
  private readonly quietMs: number;
  private readonly retainDays: number;
  private readonly retryMs: number;
  private readonly maxRetryMs: number;
  private halted = false;
  /** Runs with a step in progress. */
  private readonly busy = new Set<string>();
  /** When a run whose step failed may be tried again (ms). */
  private readonly retryAt = new Map<string, number>();
  /** Consecutive failed steps per run (the backoff's exponent). */
  private readonly failures = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private lastPurge = 0;
  private ticking = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    options: GatewayOptions,
    readonly state: GatewayState,
    private readonly studies: Map<string, StudyEntry>,
    private readonly runs: Map<string, RunRecord>,
  ) {
    this.log = options.log;
    this.api = options.api;
    this.pollMs = (options.pollSeconds ?? 2) * 1000;
    this.destination = options.destination;
    this.aeTitle = options.aeTitle;
    this.quietMs = (options.quietSeconds ?? 30) * 1000;
    this.retainDays = options.retainDays ?? 7;
    this.retryMs = (options.retrySeconds ?? 1) * 1000;
    this.maxRetryMs = (options.maxRetrySeconds ?? 60) * 1000;
  }

  stopping(): boolean {
    return this.halted;
  }

  async save(run: RunRecord): Promise<RunRecord> {
    await this.state.saveRun(run);
    this.runs.set(run.runId, run);
    return run;
  }

  previousSr(run: RunRecord) {
    let latest: RunRecord | undefined;
    for (const r of this.runs.values()) {
      if (r.studyKey === run.studyKey && r.results && r.createdAt < run.createdAt) {
        if (!latest || r.createdAt > latest.createdAt) latest = r;
      }
    }
    return latest?.results?.sr;
  }

  /** Tick now and then: a quarter of the quiet period, between 0.1 and 1 s. */
  start(): void {
    this.timer = setInterval(() => void this.tick(), Math.max(100, Math.min(1000, this.quietMs / 4)));
    void this.tick();
  }

  /** Start no more steps. */
  halt(): void {
    this.halted = true;
    clearInterval(this.timer);
  }

  /** Resolves when the steps in progress have reached a saved phase. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  /** Resolves when no run is in progress and none is due. */
  async idle(): Promise<void> {
    for (;;) {
      const pending =
        this.busy.size > 0 ||
        [...this.runs.values()].some((r) => r.phase !== 'done') ||
        [...this.studies.values()].some((s) => s.lastArrivalMs > s.snapshotMs);
      if (!pending) return;
      await sleep(100);
    }
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.halted) return;
    this.ticking = true;
    try {
      await this.startDueRuns();
      this.schedule();
      if (Date.now() - this.lastPurge > 3_600_000) {
        this.lastPurge = Date.now();
        const purged = await this.state.purge(this.retainDays);
        if (purged.runs + purged.studies > 0) {
          this.log.info('purged old data', purged);
          this.forgetPurged();
        }
      }
    } catch (error) {
      this.log.error('gateway step failed', { error: describeError(error) });
    } finally {
      this.ticking = false;
    }
  }

  /** Start runs for studies that have been quiet long enough. */
  private async startDueRuns(): Promise<void> {
    const now = Date.now();
    for (const [studyKey, s] of this.studies) {
      if (s.lastArrivalMs <= s.snapshotMs || now - s.lastArrivalMs < this.quietMs) continue;
      const files = await this.state.studyFiles(studyKey);
      if (files.length === 0) continue;
      const run = await this.state.createRun(studyKey, files, s.lastArrivalMs);
      s.snapshotMs = run.snapshotMs;
      this.runs.set(run.runId, run);
      this.log.info('study complete: run started', {
        study: studyKey,
        run: run.runId,
        instances: files.length,
      });
    }
  }

  private earlierUnfinished(run: RunRecord): boolean {
    for (const r of this.runs.values()) {
      if (r.studyKey === run.studyKey && r.phase !== 'done' && r.createdAt < run.createdAt) return true;
    }
    return false;
  }

  private schedule(): void {
    const now = Date.now();
    for (const run of this.runs.values()) {
      if (run.phase === 'done' || this.busy.has(run.runId) || (this.retryAt.get(run.runId) ?? 0) > now)
        continue;
      // Runs of a study go one after the other: a later one names the earlier one's SR as predecessor.
      if (this.earlierUnfinished(run)) continue;
      this.busy.add(run.runId);
      const p = this.advance(run.runId).finally(() => {
        this.busy.delete(run.runId);
        this.inFlight.delete(p);
      });
      this.inFlight.add(p);
    }
  }

  /** Advance a run through its phases until done, or until a step fails (retried later). */
  private async advance(runId: string): Promise<void> {
    let run = this.runs.get(runId)!;
    while (run.phase !== 'done' && !this.halted) {
      try {
        if (run.phase === 'upload') run = await upload(this, run);
        else if (run.phase === 'wait' || run.phase === 'build') run = await build(this, run);
        else if (run.phase === 'deliver') run = await deliver(this, run);
        this.failures.delete(runId);
        this.retryAt.delete(runId);
      } catch (error) {
        if (this.halted) return;
        this.retryLater(this.runs.get(runId)!, error);
        return;
      }
    }
  }

  /** Consecutive failures of a run double the wait before its next try: 1 s, 2 s, 4 s … up to the maximum. */
  private retryLater(run: RunRecord, error: unknown): void {
    const attempt = this.failures.get(run.runId) ?? 0;
    this.failures.set(run.runId, attempt + 1);
    const delay = retryDelay(attempt, this.retryMs, this.maxRetryMs);
    this.log.warn('run step failed; retrying', {
      run: run.runId,
      phase: run.phase,
      error: describeError(error),
      retryInSeconds: delay / 1000,
    });
    this.retryAt.set(run.runId, Date.now() + delay);
  }

  /** Drop what the purge removed from memory too (a gateway runs for months). */
  private forgetPurged(): void {
    for (const [id, r] of this.runs) {
      if (r.phase === 'done' && !existsSync(this.state.runDir(id))) this.runs.delete(id);
    }
    const withRuns = new Set([...this.runs.values()].map((r) => r.studyKey));
    for (const [key, s] of this.studies) {
      if (s.lastArrivalMs <= s.snapshotMs && !withRuns.has(key) && !existsSync(this.state.studyDir(key))) {
        this.studies.delete(key);
      }
    }
  }
}

/** Start the gateway: open the state, resume what was left, listen. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { log } = options;
  setUpDimse(log);
  const state = await GatewayState.open(options.stateDir);
  const studies = await loadStudies(state);
  const runs = new Map<string, RunRecord>();
  for (const run of await state.runs()) {
    runs.set(run.runId, run);
    const s = studies.get(run.studyKey);
    if (s) s.snapshotMs = Math.max(s.snapshotMs, run.snapshotMs);
  }
  const scp: StoreScp = await startStoreScp({
    port: options.port,
    aeTitle: options.aeTitle,
    allow: options.allow,
    incomingDir: state.incomingDir,
    refuseOtherSopClasses: options.refuseOtherSopClasses ?? false,
    accept: instanceReceiver(state, studies, log),
    log,
  });
  log.info('gateway listening', {
    port: scp.port,
    aeTitle: options.aeTitle,
    studies: studies.size,
    runs: runs.size,
  });
  const scheduler = new RunScheduler(options, state, studies, runs);
  scheduler.start();
  return {
    port: scp.port,
    idle: () => scheduler.idle(),
    async stop() {
      scheduler.halt();
      scp.close();
      await scheduler.settled();
      log.info('gateway stopped');
    },
  };
}
