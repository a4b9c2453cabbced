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
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { type Dirent, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayState } from '../gateway/state.js';
import { freePort } from '../local/ports.js';
import { type LocalStack, startLocalStack } from '../local/stack.js';
import { CLI } from './helpers/cli.js';
import { saveRuleModel } from './helpers/studies.js';
import { tempDir } from './helpers/tmp.js';

const exec = promisify(execFile);
const LONG = process.env.COVIDCT_LONG === '1';
/** How long an outage lasts. */
const OUTAGE_MS = LONG ? 70_000 : 3_000;
const SERIES = join(import.meta.dirname, '..', 'samples', 'lung-pet-ct-dx-A0002', 'B40f');
const COMPREHENSIVE_SR = '1.2.840.10008.5.1.4.1.1.88.33';
const KEY = 'gateway-faults-key';
const AE = 'COVIDCT';

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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `check` until it returns a value other than undefined. */
async function until<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

let studyCount = 0;
/** Every patient's identity the tests sent (names, ids, study UIDs): none may reach the stack. */
const identities: string[] = [];
/** Every gateway process started. */
const gateways: Proc[] = [];
/**
 * `slices` files of the real series, gunzipped, as a study of its own: new study, series and
 * instance UIDs and the given patient (dcmodify); beyond the series' 30 slices they repeat, each
 * copy with an instance UID of its own. Resolves with the files, in order.
 */
async function makeStudy(patient: { id: string; name: string }, slices: number) {
  const n = ++studyCount;
  const dir = join(work, `study-${n}`);
  await mkdir(dir, { recursive: true });
  const studyUid = `1.2.826.0.1.3680043.9.7133.${process.pid}.${n}`;
  identities.push(patient.id, patient.name, studyUid);
  const files: string[] = [];
  const names = readdirSync(SERIES).sort();
  for (let i = 0; i < slices; i++) {
    const path = join(dir, `${String(i).padStart(4, '0')}.dcm`);
    writeFileSync(path, gunzipSync(readFileSync(join(SERIES, names[i % names.length]!))));
    files.push(path);
  }
  await exec('dcmodify', [
    '-nb',
    '-m',
    `(0010,0010)=${patient.name}`,
    '-m',
    `(0010,0020)=${patient.id}`,
    '-m',
    `(0020,000d)=${studyUid}`,
    '-m',
    `(0020,000e)=${studyUid}.1`,
    '-gin',
    ...files,
  ]);
  return { studyUid, files };
}

/** A process's output kept as lines. */
interface Proc {
  readonly child: ChildProcess;
  readonly lines: string[];
  /** Resolves once the process has exited. */
  readonly exited: Promise<void>;
}

function startProc(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  onLine?: (line: string) => void,
): Proc {
  const child = spawn(command, [...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let partial = '';
  const collect = (chunk: Buffer) => {
    const text = partial + chunk.toString('utf8');
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    if (onLine) for (const line of parts) onLine(line);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, lines, exited };
}

async function stopProc(proc: Proc | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill(signal);
  await proc.exited;
}

/** A gateway child process; its JSON log lines parsed. */
interface GatewayProc extends Proc {
  readonly port: number;
  logs(): { message: string; [key: string]: unknown }[];
}

async function startGatewayProc(options: {
  stateDir: string;
  destinationPort: number;
  api?: string;
  port?: number;
}): Promise<GatewayProc> {
  const port = options.port ?? (await freePort());
  const proc = startProc(
    process.execPath,
    [
      CLI,
      'gateway',
      '--port',
      String(port),
      '--ae-title',
      AE,
      '--api',
      options.api ?? stack.apiUrl,
      '--destination',
      `DEST@127.0.0.1:${options.destinationPort}`,
      '--allow-caller',
      'PACS',
      '--quiet-seconds',
      '2',
      '--state',
      options.stateDir,
    ],
    { COVIDCT_API_KEY: KEY },
  );
  gateways.push(proc);
  const gateway: GatewayProc = {
    ...proc,
    port,
    logs: () =>
      proc.lines.flatMap((line) => {
        try {
          return [JSON.parse(line) as { message: string }];
        } catch {
          return [];
        }
      }),
  };
  await until('the gateway to listen', () =>
    gateway.logs().some((l) => l.message === 'gateway listening') ? true : undefined,
  );
  return gateway;
}

/** storescp as the destination PACS: every object it receives kept under a unique name. */
function startDestination(port: number, dir: string, extra: readonly string[] = []): Proc {
  return startProc('storescp', ['-v', '-aet', 'DEST', '+xa', '+uf', ...extra, '-od', dir, String(port)]);
}

/** What the destination holds: each object's SOP class and instance UIDs, study and patient. */
async function received(dir: string) {
  const out: {
    sopClass: string;
    sopInstance: string;
    study: string;
    patientId: string;
    patientName: string;
  }[] = [];
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.') || name.endsWith('.tmp')) continue;
    const { stdout } = await exec('dcmdump', [
      '-q',
      '-Un',
      '+P',
      '0008,0016',
      '+P',
      '0008,0018',
      '+P',
      '0020,000d',
      '+P',
      '0010,0020',
      '+P',
      '0010,0010',
      join(dir, name),
    ]);
    const value = (tag: string) =>
      /\[(.*?)\]/.exec(stdout.split('\n').find((l) => l.startsWith(`(${tag})`)) ?? '')?.[1] ?? '';
    out.push({
      sopClass: value('0008,0016'),
      sopInstance: value('0008,0018'),
      study: value('0020,000d'),
      patientId: value('0010,0020'),
      patientName: value('0010,0010'),
    });
  }
  return out;
}

/** The SR SOP Instance UIDs at the destination for `study` (distinct) and how many copies came. */
async function srsOf(dir: string, study: string) {
  const srs = (await received(dir)).filter((o) => o.study === study && o.sopClass === COMPREHENSIVE_SR);
  return { uids: [...new Set(srs.map((s) => s.sopInstance))], copies: srs.length, objects: srs };
}

/** storescu from PACS to the gateway, verbose: the output names each file and its response. */
function storescu(port: number, files: readonly string[], onLine?: (line: string) => void) {
  return startProc(
    'storescu',
    ['-v', '-aet', 'PACS', '-aec', AE, '127.0.0.1', String(port), ...files],
    {},
    onLine,
  );
}

/** The files storescu's verbose output shows answered with success, in order. */
function acknowledged(lines: readonly string[]): string[] {
  const out: string[] = [];
  let current: string | undefined;
  for (const line of lines) {
    const sending = /^I: Sending file: (.*)$/.exec(line);
    if (sending) current = sending[1];
    else if (/^I: Received Store Response \(Success\)/.test(line) && current !== undefined) {
      out.push(current);
      current = undefined;
    }
  }
  return out;
}

/** A file's SOP Instance UID (dcmdump). */
async function sopInstanceOf(path: string): Promise<string> {
  const { stdout } = await exec('dcmdump', ['-q', '-Un', '+P', '0008,0018', path]);
  return /\[(.*?)\]/.exec(stdout)?.[1] ?? '';
}

/** Resolves with the first log line of `gateway` that `match` accepts. */
function logLine(
  gateway: GatewayProc,
  what: string,
  match: (l: Record<string, unknown>) => boolean,
  timeoutMs = 30_000,
) {
  return until(what, () => gateway.logs().find(match), timeoutMs);
}

/**
 * Exactly one run of `studyUid` in the logs of `procs` (the gateway processes of the test, before
 * and after a restart) and in the state folder, and every run there done (waited for a little: the
 * record is saved after the delivery's log line). A duplicate run would show as a second "run
 * started" line or a run left unfinished.
 */
async function expectOneRun(stateDir: string, procs: readonly GatewayProc[], studyUid: string) {
  const state = await GatewayState.open(stateDir);
  const study = state.keyOf('study', studyUid);
  const started = procs
    .flatMap((p) => p.logs())
    .filter((l) => l.message === 'study complete: run started' && l.study === study);
  expect(started, 'run started lines of the study').toHaveLength(1);
  const records = () =>
    readdirSync(join(stateDir, 'runs'))
      .filter((name) => !name.startsWith('.'))
      .map(
        (name) =>
          JSON.parse(readFileSync(join(stateDir, 'runs', name, 'run.json'), 'utf8')) as {
            studyKey: string;
            phase: string;
          },
      );
  const deadline = Date.now() + 5000;
  while (records().some((r) => r.phase !== 'done') && Date.now() < deadline) await sleep(100);
  const runs = records();
  expect(runs.map((r) => r.phase)).toEqual(runs.map(() => 'done'));
  expect(runs.filter((r) => r.studyKey === study)).toHaveLength(1);
}

/** Wait until `study` has an SR at `dir`, then a moment more (a duplicate would show), and return its SRs. */
async function deliveredSr(dir: string, study: string, timeoutMs = 30_000) {
  await until(
    'the SR at the destination',
    async () => ((await srsOf(dir, study)).copies > 0 ? true : undefined),
    timeoutMs,
  );
  await sleep(1500);
  return srsOf(dir, study);
}

describe('gateway faults', () => {
  it('two patients in one association: two runs, each SR with its own patient', async () => {
    const a = await makeStudy({ id: 'PID-ALPHA', name: 'ALPHA^ONE' }, 6);
    const b = await makeStudy({ id: 'PID-BETA', name: 'BETA^TWO' }, 6);
    const destDir = scratch('dest-');
    const destPort = await freePort();
    const dest = startDestination(destPort, destDir);
    const stateDir = scratch('state-');
    const gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
    try {
      const send = storescu(gateway.port, [...a.files, ...b.files]);
      await send.exited;
      expect(send.child.exitCode, send.lines.join('\n')).toBe(0);
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
    const study = await makeStudy({ id: 'PID-KILLRX', name: 'KILL^RECEIVE' }, 240);
    const destDir = scratch('dest-');
    const destPort = await freePort();
    const dest = startDestination(destPort, destDir);
    const stateDir = scratch('state-');
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
      await logLine(gateway, 'the delivery', (l) => l.message === 'result delivered');
      const srs = await deliveredSr(destDir, study.studyUid);
      expect(srs.uids).toHaveLength(1);
      expect(srs.copies).toBe(1);
      expect(srs.objects[0]!.patientId).toBe('PID-KILLRX');
      await expectOneRun(stateDir, [first, gateway], study.studyUid);
    } finally {
      await stopProc(gateway);
      await stopProc(dest);
    }
  }, 90_000);

  it('SIGKILL while delivering to a destination that is down: delivered after the restart, one SR', async () => {
    const study = await makeStudy({ id: 'PID-KILLTX', name: 'KILL^DELIVER' }, 6);
    const destDir = scratch('dest-');
    const destPort = await freePort();
    const stateDir = scratch('state-');
    let gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
    const first = gateway;
    let dest: Proc | undefined;
    try {
      const send = storescu(gateway.port, study.files);
      await send.exited;
      expect(send.child.exitCode).toBe(0);
      await logLine(
        gateway,
        'a failed delivery',
        (l) => l.message === 'run step failed; retrying' && l.phase === 'deliver',
      );
      gateway.child.kill('SIGKILL');
      await gateway.exited;
      dest = startDestination(destPort, destDir);
      gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
      await logLine(gateway, 'the delivery', (l) => l.message === 'result delivered');
      // The restart resumed the run; it did not start a new one.
      expect(gateway.logs().filter((l) => l.message === 'study complete: run started')).toEqual([]);
      const srs = await deliveredSr(destDir, study.studyUid);
      expect(srs.uids).toHaveLength(1);
      expect(srs.copies).toBe(1);
      await expectOneRun(stateDir, [first, gateway], study.studyUid);
    } finally {
      await stopProc(gateway);
      await stopProc(dest);
    }
  }, 60_000);

  it('SIGKILL while the destination holds the C-STORE: redelivered after the restart as the same SR', async () => {
    const study = await makeStudy({ id: 'PID-KILLMID', name: 'KILL^MIDSTORE' }, 6);
    const destDir = scratch('dest-');
    const destPort = await freePort();
    const stateDir = scratch('state-');
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
      const send = storescu(gateway.port, study.files);
      await send.exited;
      expect(send.child.exitCode).toBe(0);
      await until('the kill', () => (gateway.child.signalCode === 'SIGKILL' ? true : undefined));
      await gateway.exited;
      expect(gateway.logs().some((l) => l.message === 'result delivered')).toBe(false);
      gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
      await logLine(gateway, 'the delivery', (l) => l.message === 'result delivered', 45_000);
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
      const study = await makeStudy({ id: 'PID-DESTDOWN', name: 'DEST^DOWN' }, 6);
      const destDir = scratch('dest-');
      const destPort = await freePort();
      const stateDir = scratch('state-');
      const gateway = await startGatewayProc({ stateDir, destinationPort: destPort });
      let dest: Proc | undefined;
      try {
        const send = storescu(gateway.port, study.files);
        await send.exited;
        expect(send.child.exitCode).toBe(0);
        await logLine(
          gateway,
          'a failed delivery',
          (l) => l.message === 'run step failed; retrying' && l.phase === 'deliver',
        );
        await sleep(OUTAGE_MS);
        dest = startDestination(destPort, destDir);
        await logLine(gateway, 'the delivery', (l) => l.message === 'result delivered', OUTAGE_MS + 70_000);
        const retries = gateway
          .logs()
          .filter((l) => l.message === 'run step failed; retrying' && l.phase === 'deliver');
        expect(retries.length).toBeGreaterThanOrEqual(2);
        const srs = await deliveredSr(destDir, study.studyUid);
        expect(srs.uids).toHaveLength(1);
        expect(srs.copies).toBe(1);
        await expectOneRun(stateDir, [gateway], study.studyUid);
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
      const study = await makeStudy({ id: 'PID-APIDOWN', name: 'API^DOWN' }, 6);
      const destDir = scratch('dest-');
      const destPort = await freePort();
      const dest = startDestination(destPort, destDir);
      // The gateway's API is a port where nothing listens until the outage ends; then a TCP relay to
      // the stack's API.
      const apiPort = await freePort();
      const target = new URL(stack.apiUrl);
      const stateDir = scratch('state-');
      const gateway = await startGatewayProc({
        stateDir,
        destinationPort: destPort,
        api: `http://127.0.0.1:${apiPort}${target.pathname.replace(/\/$/, '')}`,
      });
      let relay: Server | undefined;
      try {
        const send = storescu(gateway.port, study.files);
        await send.exited;
        expect(send.child.exitCode).toBe(0);
        await logLine(
          gateway,
          'a failed upload',
          (l) => l.message === 'run step failed; retrying' && l.phase === 'upload',
        );
        await sleep(OUTAGE_MS);
        relay = createServer((socket) => {
          const upstream = connect(Number(target.port), target.hostname);
          socket.pipe(upstream).pipe(socket);
          socket.on('error', () => upstream.destroy());
          upstream.on('error', () => socket.destroy());
        });
        await new Promise<void>((resolve) => relay!.listen(apiPort, '127.0.0.1', resolve));
        await logLine(gateway, 'the delivery', (l) => l.message === 'result delivered', OUTAGE_MS + 70_000);
        expect(gateway.logs().find((l) => l.message === 'result received')?.status).toBe('COMPLETE');
        const srs = await deliveredSr(destDir, study.studyUid);
        expect(srs.uids).toHaveLength(1);
        expect(srs.copies).toBe(1);
        await expectOneRun(stateDir, [gateway], study.studyUid);
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
