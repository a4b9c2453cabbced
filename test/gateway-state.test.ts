/**
 * The gateway's state folder (gateway/state.ts) without a network: the folder is private and keyed
 * by its own secret, a receive that never finished is dropped on open, a run exists whole or not
 * at all, and the purge removes what is old and finished but keeps what still owes a result.
 */
import { mkdirSync, mkdtempSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GatewayState } from '../gateway/state.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-gw-state-unit-');
/** A fresh folder inside `work` (tempDir registers its cleanup with afterAll: not from inside a hook or test). */
const scratch = (prefix: string) => mkdtempSync(join(work, prefix));

const DAY = 86_400_000;

/** Receive `count` instances of `studyUid` as the SCP does: a synced file, then storeInstance. */
async function receive(state: GatewayState, studyUid: string, count: number, mtimeMs?: number) {
  const studyKey = state.keyOf('study', studyUid);
  for (let i = 0; i < count; i++) {
    const part = join(state.incomingDir, `.rx-${studyKey}-${i}.part`);
    writeFileSync(part, `instance ${i}`);
    const stored = await state.storeInstance(part, studyKey, state.keyOf('instance', `${studyUid}.${i}`));
    if (mtimeMs !== undefined) utimesSync(stored, mtimeMs / 1000, mtimeMs / 1000);
  }
  return studyKey;
}

describe('GatewayState', () => {
  it('is private, keeps its secret across opens, and drops unfinished receives', async () => {
    const root = join(scratch('state-unit-'), 'state');
    const first = await GatewayState.open(root);
    expect(statSync(root).mode & 0o777).toBe(0o700);
    expect(statSync(join(root, 'secret')).mode & 0o777).toBe(0o600);
    writeFileSync(join(first.incomingDir, '.rx-half.part'), 'half a file');
    const again = await GatewayState.open(root);
    // Keys are 128-bit hex: safe as file names, nothing of the UID in them.
    expect(first.keyOf('study', '1.2.3')).toMatch(/^[0-9a-f]{32}$/);
    expect(again.keyOf('study', '1.2.3')).toBe(first.keyOf('study', '1.2.3'));
    expect(again.keyOf('study', '1.2.3')).not.toBe(again.keyOf('instance', '1.2.3'));
    expect(readdirSync(again.incomingDir)).toEqual([]);
    // Another folder, another secret: keys do not link studies across gateways.
    const other = await GatewayState.open(join(scratch('state-unit-'), 'state'));
    expect(other.keyOf('study', '1.2.3')).not.toBe(first.keyOf('study', '1.2.3'));
  });

  it('stores the same instance once and makes runs of a snapshot; half-made runs are dropped', async () => {
    const state = await GatewayState.open(scratch('state-unit-'));
    const studyKey = await receive(state, '1.2.826.0.1.3680043.9.7133.9', 3);
    await receive(state, '1.2.826.0.1.3680043.9.7133.9', 2); // instances 0 and 1 again
    const files = (await state.studies()).get(studyKey)!;
    expect(files).toHaveLength(3);
    const run = await state.createRun(studyKey, files);
    expect(readdirSync(join(state.runDir(run.runId), 'source'))).toHaveLength(3);
    // A later arrival does not change the run (hard links of the snapshot).
    await receive(state, '1.2.826.0.1.3680043.9.7133.10', 1);
    expect(readdirSync(join(state.runDir(run.runId), 'source'))).toHaveLength(3);
    mkdirSync(join(state.root, 'runs', '.new-interrupted', 'source'), { recursive: true });
    const runs = await state.runs();
    expect(runs.map((r) => r.runId)).toEqual([run.runId]);
    expect(readdirSync(join(state.root, 'runs'))).toEqual([run.runId]);
  });

  it('purges old finished runs and old studies, keeps what still owes a result', async () => {
    const state = await GatewayState.open(scratch('state-unit-'));
    const now = Date.now();
    const old = now - 10 * DAY;
    const doneStudy = await receive(state, '1.2.826.0.1.3680043.9.7133.20', 2, old);
    const owingStudy = await receive(state, '1.2.826.0.1.3680043.9.7133.21', 2, old);
    const freshStudy = await receive(state, '1.2.826.0.1.3680043.9.7133.22', 2);
    const studies = await state.studies();
    const done = await state.createRun(doneStudy, studies.get(doneStudy)!);
    await state.saveRun({ ...done, phase: 'done', deliveredAt: new Date(old).toISOString() });
    const owing = await state.createRun(owingStudy, studies.get(owingStudy)!);
    await state.saveRun({ ...owing, phase: 'deliver', createdAt: new Date(old).toISOString() });

    expect(await state.purge(7, now)).toEqual({ runs: 1, studies: 1 });
    expect((await state.runs()).map((r) => r.runId)).toEqual([owing.runId]);
    expect([...(await state.studies()).keys()].sort()).toEqual([owingStudy, freshStudy].sort());
    // Nothing is old enough at 30 days.
    expect(await state.purge(30, now)).toEqual({ runs: 0, studies: 0 });
  });
});

describe('GatewayState purge against a receive', () => {
  it('never removes an instance stored while the purge removes its study (a PACS re-sending an old study)', async () => {
    const state = await GatewayState.open(scratch('state-race-'));
    const uid = '1.2.826.0.1.3680043.9.7133.50';
    const studyKey = await receive(state, uid, 3, Date.now() - 30 * DAY);
    const part = join(state.incomingDir, '.rx-race.part');
    writeFileSync(part, 'a new instance of the old study');
    let stored: Promise<string> | undefined;
    // The instance arrives after the purge decided the study is old, before it is removed; it is
    // answered as stored when storeInstance resolves, so it must still be there afterwards.
    await state.purge(7, Date.now(), async (key) => {
      if (key !== studyKey) return;
      stored = state.storeInstance(part, studyKey, state.keyOf('instance', `${uid}.new`));
      await new Promise((r) => setTimeout(r, 50));
    });
    expect(stored).toBeDefined();
    expect(statSync(await stored!).isFile()).toBe(true);
  });

  it('finishes a purge a crash interrupted, and removes a run folder without a readable record', async () => {
    const root = scratch('state-aside-');
    const state = await GatewayState.open(root);
    mkdirSync(join(root, 'studies', '.purge-abc', 'instances'), { recursive: true });
    const orphan = join(root, 'runs', 'orphan-run');
    mkdirSync(join(orphan, 'source'), { recursive: true });
    const old = (Date.now() - 30 * DAY) / 1000;
    utimesSync(orphan, old, old);
    await GatewayState.open(root);
    expect(readdirSync(join(root, 'studies'))).toEqual([]);
    expect(await state.purge(7)).toEqual({ runs: 1, studies: 0 });
    expect(readdirSync(join(root, 'runs'))).toEqual([]);
  });
});
