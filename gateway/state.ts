/**
 * The gateway's state folder (`--state`, mode 0700, on the hospital's side only): what was
 * received, each run of a study, and the results waiting to be delivered. Everything the gateway
 * acknowledged or still owes a PACS is here, synced, so a restart (or a SIGKILL) resumes from it.
 *
 * ```
 * STATE/secret                    32 random bytes (0600): keys the folder and file names below
 * STATE/incoming/                 files being received (.part), removed on start
 * STATE/studies/<study>/instances/<instance>.dcm   received instances, as they came
 * STATE/runs/<run>/run.json       a run's phase and what it learnt (cloud study id, result)
 * STATE/runs/<run>/source/        the run's instances (hard links: later arrivals do not change it)
 * STATE/runs/<run>/map.json       the de-identification map (original ↔ new UIDs)
 * STATE/runs/<run>/outbox/        result objects to deliver; moved to sent/ once stored
 * ```
 *
 * `<study>` and `<instance>` are HMACs of the StudyInstanceUID and SOPInstanceUID under the
 * secret: names and logs can say which study without holding or revealing its UIDs.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writePrivateFile } from '../core/deidentify.js';
import { fileSystemError, InputError } from '../core/errors.js';

/** Sync a folder, so a rename or a new file in it survives a crash. */
export async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Create `path` (and parents) with mode 0700 and sync its parent. */
async function privateDir(path: string, parent?: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  if (parent !== undefined) await syncDir(parent);
}

/** A run's phase: what is left to do. */
export type RunPhase = 'upload' | 'wait' | 'build' | 'deliver' | 'done';

/**
 * A run's record (`run.json`): keys, the cloud's ids and figures, and the UIDs of the SR it wrote
 * (the original StudyInstanceUID among them: the state folder never leaves the hospital).
 */
export interface RunRecord {
  readonly runId: string;
  readonly studyKey: string;
  /** When the run was made (ISO 8601). */
  readonly createdAt: string;
  /**
   * The newest arrival in the run (ms): the later of its files' modification times and the clock
   * when the newest was stored. Later arrivals start a new run.
   */
  readonly snapshotMs: number;
  readonly phase: RunPhase;
  /** The cloud's study id, once the upload finished. */
  readonly cloudStudyId?: string;
  /** Why the run ended without a cloud result (a study that could not be de-identified or sent). */
  readonly localFailure?: string;
  /** Result objects written to the outbox. */
  readonly results?: {
    readonly runDigest: string;
    /** The SR's UIDs (the next run of the study names it as predecessor). */
    readonly sr: {
      readonly studyInstanceUid: string;
      readonly seriesInstanceUid: string;
      readonly sopClassUid: string;
      readonly sopInstanceUid: string;
    };
    readonly overlays: number;
    readonly status: 'COMPLETE' | 'FAILED';
  };
  /** Delivery attempts so far and the last error. */
  readonly deliveryAttempts?: number;
  readonly lastDeliveryError?: string;
  readonly deliveredAt?: string;
}

/** The state folder. */
export class GatewayState {
  private constructor(
    readonly root: string,
    private readonly secret: Buffer,
  ) {}

  /** Open (or make) the state folder: 0700, a secret, no leftovers of interrupted receives. */
  static async open(root: string): Promise<GatewayState> {
    try {
      await mkdir(root, { recursive: true, mode: 0o700 });
      await chmod(root, 0o700);
      const secretPath = join(root, 'secret');
      let secret: Buffer;
      try {
        secret = await readFile(secretPath);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        secret = randomBytes(32);
        const handle = await open(secretPath, 'wx', 0o600);
        await handle.writeFile(secret);
        await handle.sync();
        await handle.close();
        await syncDir(root);
      }
      if (secret.length !== 32) throw new InputError(secretPath, 'expected 32 bytes (the gateway wrote it)');
      for (const dir of ['incoming', 'studies', 'runs']) await privateDir(join(root, dir));
      // A purge a crash interrupted: finish it.
      for (const name of await readdir(join(root, 'studies'))) {
        if (name.startsWith('.purge-'))
          await rm(join(root, 'studies', name), { recursive: true, force: true });
      }
      // A receive that did not finish was never acknowledged: the sender sends it again.
      await rm(join(root, 'incoming'), { recursive: true, force: true });
      await privateDir(join(root, 'incoming'), root);
      return new GatewayState(root, secret);
    } catch (error) {
      if (error instanceof InputError) throw error;
      throw fileSystemError(root, error);
    }
  }

  /** Where files being received are written before they are stored. */
  get incomingDir(): string {
    return join(this.root, 'incoming');
  }

  /** Per study, the operation in progress: storing an instance and purging the study never overlap. */
  private readonly locks = new Map<string, Promise<unknown>>();

  /** Run `step` once every earlier step on the same study has finished. */
  private withStudy<T>(studyKey: string, step: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(studyKey) ?? Promise.resolve();
    const next = previous.then(step, step);
    const settled = next.catch(() => undefined);
    this.locks.set(studyKey, settled);
    void settled.then(() => {
      if (this.locks.get(studyKey) === settled) this.locks.delete(studyKey);
    });
    return next;
  }

  /** A short keyed name for a UID or a patient (32 hex digits); each kind its own domain. */
  keyOf(kind: 'study' | 'instance' | 'patient', uid: string): string {
    return createHmac('sha256', this.secret).update(`${kind}\u0000${uid}`).digest('hex').slice(0, 32);
  }

  /** A study's folder: `studies/<study>`. */
  studyDir(studyKey: string): string {
    return join(this.root, 'studies', studyKey);
  }

  /** A run's folder: `runs/<run>`. */
  runDir(runId: string): string {
    return join(this.root, 'runs', runId);
  }

  /**
   * Make a received file (already synced) durable as an instance of its study: renamed into
   * `studies/<study>/instances/` (replacing an earlier copy of the same instance) and the folder
   * synced. Resolves when a crash can no longer lose it.
   */
  storeInstance(received: string, studyKey: string, instanceKey: string): Promise<string> {
    return this.withStudy(studyKey, () => this.moveIntoStudy(received, studyKey, instanceKey));
  }

  private async moveIntoStudy(received: string, studyKey: string, instanceKey: string): Promise<string> {
    const dir = join(this.studyDir(studyKey), 'instances');
    try {
      await stat(dir);
    } catch {
      await privateDir(this.studyDir(studyKey), join(this.root, 'studies'));
      await privateDir(dir, this.studyDir(studyKey));
    }
    const target = join(dir, `${instanceKey}.dcm`);
    await rename(received, target);
    await syncDir(dir);
    return target;
  }

  /** Every study key with its instance files and their modification times (ms). */
  async studies(): Promise<Map<string, { file: string; mtimeMs: number }[]>> {
    const out = new Map<string, { file: string; mtimeMs: number }[]>();
    for (const studyKey of await readdir(join(this.root, 'studies'))) {
      if (studyKey.startsWith('.')) continue;
      out.set(studyKey, await this.studyFiles(studyKey));
    }
    return out;
  }

  /** One study's instance files and their modification times (ms); none when it has no folder. */
  async studyFiles(studyKey: string): Promise<{ file: string; mtimeMs: number }[]> {
    const dir = join(this.studyDir(studyKey), 'instances');
    const files: { file: string; mtimeMs: number }[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.endsWith('.dcm')) continue;
      const s = await stat(join(dir, name)).catch(() => undefined);
      if (s) files.push({ file: join(dir, name), mtimeMs: s.mtimeMs });
    }
    return files;
  }

  /**
   * Start a run of a study over `files` (its instances now): hard links into a new run folder,
   * made under a temporary name and renamed, so a run exists whole or not at all. `lastArrivalMs`:
   * when the newest instance was stored, by the clock.
   */
  async createRun(
    studyKey: string,
    files: readonly { file: string; mtimeMs: number }[],
    lastArrivalMs = 0,
  ): Promise<RunRecord> {
    const now = new Date();
    const runId = `${studyKey.slice(0, 12)}-${now.getTime().toString(36)}-${randomBytes(3).toString('hex')}`;
    const tmp = join(this.root, 'runs', `.new-${runId}`);
    await privateDir(join(tmp, 'source'));
    for (const f of files) await link(f.file, join(tmp, 'source', f.file.slice(f.file.lastIndexOf('/') + 1)));
    const record: RunRecord = {
      runId,
      studyKey,
      createdAt: now.toISOString(),
      snapshotMs: Math.max(lastArrivalMs, ...files.map((f) => f.mtimeMs)),
      phase: 'upload',
    };
    await writePrivateFile(join(tmp, 'run.json'), `${JSON.stringify(record, null, 2)}\n`);
    await syncDir(join(tmp, 'source'));
    await rename(tmp, this.runDir(runId));
    await syncDir(join(this.root, 'runs'));
    return record;
  }

  /** Save a run's record (atomic, synced). */
  async saveRun(record: RunRecord): Promise<void> {
    const dir = this.runDir(record.runId);
    await writePrivateFile(join(dir, 'run.json'), `${JSON.stringify(record, null, 2)}\n`);
    await syncDir(dir);
  }

  /** Every run, oldest first; half-made ones (`.new-…`) are removed. */
  async runs(): Promise<RunRecord[]> {
    const runs: RunRecord[] = [];
    for (const name of await readdir(join(this.root, 'runs'))) {
      if (name.startsWith('.new-') || name.startsWith('.purge-')) {
        await rm(join(this.root, 'runs', name), { recursive: true, force: true });
        continue;
      }
      try {
        runs.push(JSON.parse(await readFile(join(this.runDir(name), 'run.json'), 'utf8')) as RunRecord);
      } catch {
        // A run folder without a readable record cannot be resumed; it is left for the purge.
      }
    }
    return runs.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /**
   * Remove what is older than `days`: finished runs, run folders without a readable record, and
   * studies none of whose instances arrived since (and that no unfinished run uses). Unfinished
   * runs are kept: they still owe a result. Each folder is first renamed aside (`.purge-…`, removed
   * at the next open if a crash interrupts), so a half-removed run never looks like a run; a study
   * is checked again and removed under its lock, so an instance stored meanwhile is never lost.
   */
  async purge(
    days: number,
    now = Date.now(),
    /** For tests: called under the study's lock just before it is removed. */
    beforeRemove?: (studyKey: string) => Promise<void>,
  ): Promise<{ runs: number; studies: number }> {
    const cutoff = now - days * 86_400_000;
    const records = new Map((await this.runs()).map((r) => [r.runId, r]));
    const active = new Set([...records.values()].filter((r) => r.phase !== 'done').map((r) => r.studyKey));
    let purgedRuns = 0;
    let purgedStudies = 0;
    const runsDir = join(this.root, 'runs');
    for (const name of await readdir(runsDir)) {
      if (name.startsWith('.')) continue;
      const r = records.get(name);
      const old = r
        ? r.phase === 'done' && Date.parse(r.deliveredAt ?? r.createdAt) < cutoff
        : ((await stat(this.runDir(name)).catch(() => undefined))?.mtimeMs ?? now) < cutoff;
      if (!old) continue;
      await this.removeAside(this.runDir(name), join(runsDir, `.purge-${name}`));
      purgedRuns++;
    }
    for (const studyKey of (await readdir(join(this.root, 'studies'))).filter((n) => !n.startsWith('.'))) {
      if (active.has(studyKey)) continue;
      const removed = await this.withStudy(studyKey, async () => {
        const files = await this.studyFiles(studyKey);
        if (!files.every((f) => f.mtimeMs < cutoff)) return false;
        await beforeRemove?.(studyKey);
        await this.removeAside(this.studyDir(studyKey), join(this.root, 'studies', `.purge-${studyKey}`));
        return true;
      });
      if (removed) purgedStudies++;
    }
    return { runs: purgedRuns, studies: purgedStudies };
  }

  private async removeAside(dir: string, aside: string): Promise<void> {
    await rename(dir, aside);
    await rm(aside, { recursive: true, force: true });
  }
}
