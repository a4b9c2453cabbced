/**
 * The gateway under faults, as real processes: `covidct gateway` (dist, a child process that is
 * SIGKILLed), DCMTK's storescu as the PACS sending, storescp as the destination, the local stack
 * (in-process, the rule model in its worker) as the API. Expected each time: nothing acknowledged
 * is lost, and each study gives exactly one run (one "run started" log line, its run.json done at
 * the end) and one SR (one SOP Instance UID) at the destination, carrying its own patient.
 *
 * - two patients in one association → two runs, two SRs, each with its patient;
 * - SIGKILL while receiving (a 240-instance series, so that storescu is always mid-series): every
 *   instance storescu saw acknowledged is in the state after the restart, and the study completes
 *   with one SR;
 * - SIGKILL while delivering (the destination down, the run in its deliver phase; and the
 *   destination holding the C-STORE open): after the restart the result is delivered, one SR UID;
 * - the destination down for a few seconds: delivered, with the retries logged;
 * - the API unreachable for a few seconds: the run completes afterwards.
 *
 * `COVIDCT_LONG=1` (npm run test:reliability) makes the outages last a minute and more.
 */
import { type Dirent, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayState } from '../gateway/state.js';
import { freePort } from '../local/ports.js';
import { type LocalStack, startLocalStack } from '../local/stack.js';
import { sleep } from './helpers/gateway.js';
import {
  acknowledged,
  deliveredSr,
  expectDeliveredOnce,
  expectOneRun,
  failedStep,
  type GatewayProc,
  logLine,
  makeStudy,
  type Proc,
  resultDelivered,
  sendStudy,
  sopInstanceOf,
  srsOf,
  startDestination,
  startGatewayProc as startGatewayProcess,
  startProc,
  stopProc,
  storescu,
  until,
} from './helpers/gateway-procs.js';
import { saveRuleModel } from './helpers/studies.js';
import { tempDir } from './helpers/tmp.js';

const LONG = process.env.COVIDCT_LONG === '1';
/** How long an outage lasts. */
const OUTAGE_MS = LONG ? 70_000 : 3_000;
const KEY = 'gateway-faults-key';

const work = tempDir('covidct-gw-faults-');
/** A fresh folder inside `work` (tempDir registers its cleanup with afterAll: not from inside a test). */
const scratch = (prefix: string) => mkdtempSync(join(work, prefix));
let stack: LocalStack;

beforeAll(async () => {
  await saveRuleModel(join(work, 'model'));
  stack = await startLocalStack({
    dataDir: join(work, 'data'),
    hospitals: [{ hospital: 'gw', apiKey: KEY }],
    uploadModel: { dir: join(work, 'model'), name: 'rule', version: '1' },
    workerEnv: { COVIDCT_POOL_SIZE: '1', COVIDCT_WORKER_WAIT_SECONDS: '1', COVIDCT_HEATMAPS: 'none' },
    onWorkerLine: () => {},
    pollWaitSeconds: 1,
  });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

let studyCount = 0;
/** Every patient's identity the tests sent (names, ids, study UIDs): none may reach the stack. */
const identities: string[] = [];
/** Every gateway process started. */
const gateways: Proc[] = [];

/** A study of `slices` instances of its own for `patient` ({@link makeStudy}); its identity is noted. */
async function newStudy(patient: { id: string; name: string }, slices: number) {
  const n = ++studyCount;
  const studyUid = `1.2.826.0.1.3680043.9.7133.${process.pid}.${n}`;
  identities.push(patient.id, patient.name, studyUid);
  return { studyUid, files: await makeStudy(join(work, `study-${n}`), studyUid, patient, slices) };
}

/** A fault test's study, and a destination folder, port and state folder of its own. */
async function faultCase(patient: { id: string; name: string }, slices: number) {
  const study = await newStudy(patient, slices);
  const destDir = scratch('dest-');
  const destPort = await freePort();
  const stateDir = scratch('state-');
  return { study, destDir, destPort, stateDir };
}

/** `covidct gateway` against the stack's API (or `api`), noted for the identity scan at the end. */
async function startGatewayProc(options: {
  stateDir: string;
  destinationPort: number;
  api?: string;
}): Promise<GatewayProc> {
  const gateway = await startGatewayProcess({ ...options, api: options.api ?? stack.apiUrl, apiKey: KEY });
  gateways.push(gateway);
  return gateway;
}

describe('gateway faults', () => {
  it('two patients in one association: two runs, each SR with its own patient', async () => {
    const a = await newStudy({ id: 'PID-ALPHA', name: 'ALPHA^ONE' }, 6);
    const b = await newStudy({ id: 'PID-BETA', name: 'BETA^TWO' }, 6);
    const destDir = scratch('dest-');
    const destPort = await freePort();
    const dest = startDestination(destPort, destDir);
    const stateDir = scratch('state-');
    const gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
    try {
      await sendStudy(gateway, [...a.files, ...b.files]);
      const srA = await until('the SR of patient A', async () => {
        const s = await srsOf(destDir, a.studyUid);
        return s.copies > 0 ? s : undefined;
      });
      const srB = await until('the SR of patient B', async () => {
        const s = await srsOf(destDir, b.studyUid);
        return s.copies > 0 ? s : undefined;
      });
      expect(srA.objects.map((o) => [o.patientId, o.patientName])).toEqual([['PID-ALPHA', 'ALPHA^ONE']]);
      expect(srB.objects.map((o) => [o.patientId, o.patientName])).toEqual([['PID-BETA', 'BETA^TWO']]);
      const started = gateway.logs().filter((l) => l.message === 'study complete: run started');
      expect(started).toHaveLength(2);
      await sleep(1500);
      expect((await srsOf(destDir, a.studyUid)).copies).toBe(1);
      expect((await srsOf(destDir, b.studyUid)).copies).toBe(1);
      await expectOneRun(stateDir, [gateway], a.studyUid);
      await expectOneRun(stateDir, [gateway], b.studyUid);
    } finally {
      await stopProc(gateway);
      await stopProc(dest);
    }
  }, 50_000);

  it('SIGKILL while receiving: every acknowledged instance survives; the study completes with one SR', async () => {
    // Far more instances than storescu can send between the 8th answer and the kill, however
    // loaded the machine: it is always killed mid-series (only those received are in the run).
    const { study, destDir, destPort, stateDir } = await faultCase(
      { id: 'PID-KILLRX', name: 'KILL^RECEIVE' },
      240,
    );
    const dest = startDestination(destPort, destDir);
    let gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
    const first = gateway;
    try {
      let acks = 0;
      const send = storescu(gateway.port, study.files, (line) => {
        // Killed from the output handler: storescu is mid-series, not done.
        if (/^I: Received Store Response \(Success\)/.test(line) && ++acks === 8)
          gateway.child.kill('SIGKILL');
      });
      await send.exited;
      await gateway.exited;
      expect(gateway.child.signalCode).toBe('SIGKILL');
      const acked = acknowledged(send.lines);
      expect(acked.length).toBeGreaterThanOrEqual(8);
      expect(acked.length, 'storescu finished before the kill').toBeLessThan(study.files.length);
      expect(send.child.exitCode).not.toBe(0);

      // Every instance storescu saw acknowledged is in the state folder.
      const state = await GatewayState.open(stateDir);
      const instances = join(state.studyDir(state.keyOf('study', study.studyUid)), 'instances');
      const stored = new Set(readdirSync(instances));
      for (const file of acked) {
        expect(stored.has(`${state.keyOf('instance', await sopInstanceOf(file))}.dcm`), file).toBe(true);
      }

      gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
      const run = await logLine(gateway, 'the run', (l) => l.message === 'study complete: run started');
      expect(run.instances).toBeGreaterThanOrEqual(acked.length);
      await resultDelivered(gateway);
      const srs = await expectDeliveredOnce(destDir, stateDir, [first, gateway], study.studyUid);
      expect(srs.objects[0]!.patientId).toBe('PID-KILLRX');
    } finally {
      await stopProc(gateway);
      await stopProc(dest);
    }
  }, 90_000);

  it('SIGKILL while delivering to a destination that is down: delivered after the restart, one SR', async () => {
    const { study, destDir, destPort, stateDir } = await faultCase(
      { id: 'PID-KILLTX', name: 'KILL^DELIVER' },
      6,
    );
    let gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
    const first = gateway;
    let dest: Proc | undefined;
    try {
      await sendStudy(gateway, study.files);
      await failedStep(gateway, 'a failed delivery', 'deliver');
      gateway.child.kill('SIGKILL');
      await gateway.exited;
      dest = startDestination(destPort, destDir);
      gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
      await resultDelivered(gateway);
      // The restart resumed the run; it did not start a new one.
      expect(gateway.logs().filter((l) => l.message === 'study complete: run started')).toEqual([]);
      await expectDeliveredOnce(destDir, stateDir, [first, gateway], study.studyUid);
    } finally {
      await stopProc(gateway);
      await stopProc(dest);
    }
  }, 60_000);

  it('SIGKILL while the destination holds the C-STORE: redelivered after the restart as the same SR', async () => {
    const { study, destDir, destPort, stateDir } = await faultCase(
      { id: 'PID-KILLMID', name: 'KILL^MIDSTORE' },
      6,
    );
    let gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
    const first = gateway;
    // storescp sleeps in each C-STORE before it answers: the gateway is killed in that window.
    let killed = false;
    const dest = startProc(
      'storescp',
      ['-v', '-aet', 'DEST', '+xa', '+uf', '--sleep-during', '1', '-od', destDir, String(destPort)],
      {},
      (line) => {
        // The first gateway only; the restarted one delivers.
        if (/Received Store Request/.test(line) && !killed) {
          killed = true;
          gateway.child.kill('SIGKILL');
        }
      },
    );
    try {
      await sendStudy(gateway, study.files);
      await until('the kill', () => (gateway.child.signalCode === 'SIGKILL' ? true : undefined));
      await gateway.exited;
      expect(gateway.logs().some((l) => l.message === 'result delivered')).toBe(false);
      gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
      await resultDelivered(gateway, 45_000);
      const srs = await deliveredSr(destDir, study.studyUid);
      // Sent again after the restart: the same SOP Instance UID, which the PACS keeps once.
      expect(srs.uids).toHaveLength(1);
      expect(srs.copies).toBeGreaterThanOrEqual(1);
      await expectOneRun(stateDir, [first, gateway], study.studyUid);
    } finally {
      await stopProc(gateway);
      await stopProc(dest);
    }
  }, 90_000);

  it(
    `the destination down for ${OUTAGE_MS / 1000} s: delivered afterwards, retries logged`,
    async () => {
      const { study, destDir, destPort, stateDir } = await faultCase(
        { id: 'PID-DESTDOWN', name: 'DEST^DOWN' },
        6,
      );
      const gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
      let dest: Proc | undefined;
      try {
        await sendStudy(gateway, study.files);
        await failedStep(gateway, 'a failed delivery', 'deliver');
        await sleep(OUTAGE_MS);
        dest = startDestination(destPort, destDir);
        await resultDelivered(gateway, OUTAGE_MS + 70_000);
        const retries = gateway
          .logs()
          .filter((l) => l.message === 'run step failed; retrying' && l.phase === 'deliver');
        expect(retries.length).toBeGreaterThanOrEqual(2);
        await expectDeliveredOnce(destDir, stateDir, [gateway], study.studyUid);
      } finally {
        await stopProc(gateway);
        await stopProc(dest);
      }
    },
    OUTAGE_MS + 120_000,
  );

  it(
    `the API unreachable for ${OUTAGE_MS / 1000} s: the run completes afterwards`,
    async () => {
      const { study, destDir, destPort, stateDir } = await faultCase(
        { id: 'PID-APIDOWN', name: 'API^DOWN' },
        6,
      );
      const dest = startDestination(destPort, destDir);
      // The gateway's API is a port where nothing listens until the outage ends; then a TCP relay to
      // the stack's API.
      const apiPort = await freePort();
      const target = new URL(stack.apiUrl);
      const gateway = await startGatewayProc({
        stateDir,
        destinationPort: destPort,
        api: `http://127.0.0.1:${apiPort}${target.pathname.replace(/\/$/, '')}`,
      });
      let relay: Server | undefined;
      try {
        await sendStudy(gateway, study.files);
        await failedStep(gateway, 'a failed upload', 'upload');
        await sleep(OUTAGE_MS);
        relay = createServer((socket) => {
          const upstream = connect(Number(target.port), target.hostname);
          socket.pipe(upstream).pipe(socket);
          socket.on('error', () => upstream.destroy());
          upstream.on('error', () => socket.destroy());
        });
        await new Promise<void>((resolve) => relay!.listen(apiPort, '127.0.0.1', resolve));
        await resultDelivered(gateway, OUTAGE_MS + 70_000);
        expect(gateway.logs().find((l) => l.message === 'result received')?.status).toBe('COMPLETE');
        await expectDeliveredOnce(destDir, stateDir, [gateway], study.studyUid);
      } finally {
        await stopProc(gateway);
        await stopProc(dest);
        relay?.close();
      }
    },
    OUTAGE_MS + 120_000,
  );

  it("after a clean stop, the stack's data folder and the gateways' logs hold none of the identities", async () => {
    expect(identities.length).toBeGreaterThan(0);
    /** Files under `dir` whose bytes hold one of the identities, with the identity. */
    const hits = (dir: string) =>
      (readdirSync(dir, { recursive: true, withFileTypes: true }) as Dirent[])
        .filter((e) => e.isFile())
        .flatMap((e) => {
          const text = readFileSync(join(e.parentPath, e.name)).toString('latin1');
          return identities
            .filter((id) => text.includes(id))
            .map((id) => `${join(e.parentPath, e.name)}: ${id}`);
        });
    await stack.stop();
    expect(hits(join(work, 'data'))).toEqual([]);
    // The folder holds the uploaded slices as their bytes: a leak of identity into them would show.
    const files = (
      readdirSync(join(work, 'data'), { recursive: true, withFileTypes: true }) as Dirent[]
    ).filter((e) => e.isFile());
    expect(files.some((e) => readFileSync(join(e.parentPath, e.name)).includes('DICM'))).toBe(true);
    const logs = gateways.flatMap((g) => g.lines);
    expect(logs.filter((line) => identities.some((id) => line.includes(id)))).toEqual([]);
    // The scan sees identity where it is kept: the gateways' state folders, on the hospital's side.
    expect(hits(work).length).toBeGreaterThan(0);
  });
});
