/**
 * Load on the whole local stack: studies (the real sample series and phantoms) uploaded at once by
 * three hospitals through the API as their client sends them (POST /studies, presigned PUTs, the
 * manifest last; pipeline/api-client.ts), processed by the real handlers and one worker process with the
 * rule model. All must complete, each selected slice counted once, DLQs empty; time to result
 * (upload start → COMPLETE seen in the table, polled every 200 ms) p50/p95 and throughput are
 * printed as one JSON line (`load: {...}`).
 *
 * Short form (npm test): 9 studies of small phantoms and the real series. `COVIDCT_LONG=1`: the
 * issue's 50 studies (10 real series of 30 slices, 40 phantoms of 40 slices).
 */
import { cpus } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalStack, startLocalStack } from '../local/stack.js';
import { uploadStudy } from '../pipeline/api-client.js';
import { StudyStore } from '../pipeline/index.js';
import { collectStackErrors } from './helpers/stack-errors.js';
import {
  accountSlices,
  dlqDepths,
  percentile,
  phantomStudy,
  realStudy,
  saveRuleModel,
  settle,
  type Uploaded,
  waitFinished,
} from './helpers/studies.js';
import { tempDir } from './helpers/tmp.js';

const LONG = process.env.COVIDCT_LONG === '1';
const STUDIES = LONG ? 50 : 9;
/** Every fifth study is the real sample series (30 slices, 12 selected); the rest phantoms. */
const REAL_EVERY = LONG ? 5 : 3;
const PHANTOM_SLICES = LONG ? 40 : 16;
const POOL = process.env.COVIDCT_POOL_SIZE ?? '1';
const HOSPITALS = ['hospital-a', 'hospital-b', 'hospital-c'].map((hospital) => ({
  hospital,
  apiKey: `load-key-${hospital}-0123456789`,
}));

const work = tempDir('covidct-load-');
let stack: LocalStack;
let store: StudyStore;
const errors: string[] = [];
const folders: string[] = [];

beforeAll(async () => {
  await saveRuleModel(join(work, 'model'));
  for (let i = 0; i < STUDIES; i++) {
    folders.push(
      i % REAL_EVERY === 0
        ? await realStudy(work, `study-${i}`)
        : await phantomStudy(work, `study-${i}`, 5000 + i, PHANTOM_SLICES),
    );
  }
  stack = await startLocalStack({
    hospitals: HOSPITALS,
    uploadModel: { dir: join(work, 'model'), name: 'rule', version: '1' },
    workerEnv: {
      COVIDCT_POOL_SIZE: POOL,
      COVIDCT_WORKER_BATCH_SLICES: '16',
      COVIDCT_WORKER_WAIT_SECONDS: '1',
      COVIDCT_HEATMAPS: 'none',
    },
    onWorkerLine: () => {},
    pollWaitSeconds: 1,
    sweeper: false,
    onError: collectStackErrors(errors),
  });
  store = new StudyStore(stack.clients.dynamo, stack.resources.tableName);
}, 300_000);

afterAll(async () => {
  await stack?.stop();
});

describe('load', () => {
  it(`completes ${STUDIES} studies uploaded at once by three hospitals through the API, each slice counted once`, {
    timeout: LONG ? 1_800_000 : 120_000,
  }, async () => {
    const t0 = performance.now();
    const uploaded: Uploaded[] = await Promise.all(
      folders.map(async (path, i) => {
        const h = HOSPITALS[i % HOSPITALS.length]!;
        const startedAt = performance.now();
        const { studyId } = await uploadStudy({ api: stack.apiUrl, key: h.apiKey, path });
        return { hospital: h.hospital, studyId, startedAt, uploadedAt: performance.now() };
      }),
    );
    const uploadsDone = performance.now();
    const finishedAt = new Map<string, number>();
    const records = await waitFinished(store, uploaded, LONG ? 1_700_000 : 110_000, (s, _r, at) =>
      finishedAt.set(s.studyId, at),
    );
    const end = performance.now();

    let selected = 0;
    for (const s of uploaded) {
      const record = records.get(s.studyId)!;
      expect(record.status, `${s.studyId} ${record.reason ?? ''}`).toBe('COMPLETE');
      const account = await accountSlices(store, s.hospital, s.studyId);
      expect(account, s.studyId).toMatchObject({ missing: 0, extra: 0, repeated: 0, failures: 0 });
      expect(account.votes).toBe(record.expectedVotes);
      selected += account.selected;
    }
    await settle(stack.clients, stack.resources);
    expect(await dlqDepths(stack.clients, stack.resources)).toEqual({ ingest: 0, inference: 0, votes: 0 });
    expect(errors).toEqual([]);

    const toResult = uploaded.map((s) => (finishedAt.get(s.studyId)! - s.startedAt) / 1000);
    const serverSide = uploaded.map((s) => {
      const t = records.get(s.studyId)!.timings;
      return (Date.parse(t.completedAt!) - Date.parse(t.createdAt)) / 1000;
    });
    const seconds = (end - t0) / 1000;
    const round = (x: number) => Math.round(x * 100) / 100;
    const figures = {
      studies: STUDIES,
      hospitals: HOSPITALS.length,
      realSeries: uploaded.filter((_, i) => i % REAL_EVERY === 0).length,
      phantomSlices: PHANTOM_SLICES,
      selectedSlices: selected,
      complete: [...records.values()].filter((r) => r.status === 'COMPLETE').length,
      lostSlices: 0,
      doubleCounted: 0,
      uploadSeconds: round((uploadsDone - t0) / 1000),
      timeToResultSeconds: {
        p50: round(percentile(toResult, 50)),
        p95: round(percentile(toResult, 95)),
        max: round(Math.max(...toResult)),
      },
      serverSideSeconds: { p50: round(percentile(serverSide, 50)), p95: round(percentile(serverSide, 95)) },
      wallSeconds: round(seconds),
      studiesPerMinute: round((STUDIES / seconds) * 60),
      slicesPerSecond: round(selected / seconds),
      worker: { pool: Number(POOL), heatmaps: 'none', model: 'rule (test/helpers/rule-model.ts)' },
      machine: `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), shared`,
    };
    console.info(`load: ${JSON.stringify(figures)}`);
  });
});
