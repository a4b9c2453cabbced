/**
 * The gateway as real processes, for the fault tests: `covidct gateway` (dist) as a child process
 * whose JSON log lines are read back, DCMTK's storescu as the PACS sending and storescp as the
 * destination, and what the destination and the state folder hold afterwards.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { expect } from 'vitest';
import { gatewayArgs } from '../../cli/bench/dicom-processes.js';
import { GatewayState } from '../../gateway/state.js';
import { freePort } from '../../local/ports.js';
import { CLI } from './cli.js';
import { GATEWAY_AE, sleep } from './gateway.js';

const exec = promisify(execFile);
/** The bundled real series (gzipped Part 10 files). */
const SERIES = join(import.meta.dirname, '..', '..', 'samples', 'lung-pet-ct-dx-A0002', 'B40f');
const COMPREHENSIVE_SR = '1.2.840.10008.5.1.4.1.1.88.33';

/** Poll `check` until it returns a value other than undefined. */
export async function until<T>(
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

/**
 * `slices` files of the real series, gunzipped into `dir`, as a study of its own: study and series
 * UIDs from `studyUid`, new instance UIDs and the given patient (dcmodify); beyond the series' 30
 * slices they repeat, each copy with an instance UID of its own. Resolves with the files, in order.
 */
export async function makeStudy(
  dir: string,
  studyUid: string,
  patient: { id: string; name: string },
  slices: number,
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
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
  return files;
}

/** A process's output kept as lines. */
export interface Proc {
  readonly child: ChildProcess;
  readonly lines: string[];
  /** Resolves once the process has exited. */
  readonly exited: Promise<void>;
}

/** Start `command`; its stdout and stderr lines are kept, and each given to `onLine` as it comes. */
export function startProc(
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

/** Signal a process (if it still runs) and wait for it to exit. */
export async function stopProc(proc: Proc | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill(signal);
  await proc.exited;
}

/** A gateway child process; its JSON log lines parsed. */
export interface GatewayProc extends Proc {
  readonly port: number;
  logs(): { message: string; [key: string]: unknown }[];
}

/**
 * `covidct gateway` as a child process, calling PACS allowed, results to DEST on loopback
 * `destinationPort`, a 2 s quiet period; resolves once it listens.
 */
export async function startGatewayProc(options: {
  stateDir: string;
  destinationPort: number;
  api: string;
  apiKey: string;
  port?: number;
}): Promise<GatewayProc> {
  const port = options.port ?? (await freePort());
  const proc = startProc(
    process.execPath,
    [
      CLI,
      ...gatewayArgs({
        port,
        aeTitle: GATEWAY_AE,
        api: options.api,
        destination: `DEST@127.0.0.1:${options.destinationPort}`,
        allowCaller: 'PACS',
        quietSeconds: 2,
        state: options.stateDir,
      }),
    ],
    { COVIDCT_API_KEY: options.apiKey },
  );
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
export function startDestination(port: number, dir: string, extra: readonly string[] = []): Proc {
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
export async function srsOf(dir: string, study: string) {
  const srs = (await received(dir)).filter((o) => o.study === study && o.sopClass === COMPREHENSIVE_SR);
  return { uids: [...new Set(srs.map((s) => s.sopInstance))], copies: srs.length, objects: srs };
}

/** storescu from PACS to the gateway, verbose: the output names each file and its response. */
export function storescu(port: number, files: readonly string[], onLine?: (line: string) => void) {
  return startProc(
    'storescu',
    ['-v', '-aet', 'PACS', '-aec', GATEWAY_AE, '127.0.0.1', String(port), ...files],
    {},
    onLine,
  );
}

/** Send `files` to the gateway with storescu, which must succeed. */
export async function sendStudy(gateway: GatewayProc, files: readonly string[]): Promise<void> {
  const send = storescu(gateway.port, files);
  await send.exited;
  expect(send.child.exitCode, send.lines.join('\n')).toBe(0);
}

/** The files storescu's verbose output shows answered with success, in order. */
export function acknowledged(lines: readonly string[]): string[] {
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
export async function sopInstanceOf(path: string): Promise<string> {
  const { stdout } = await exec('dcmdump', ['-q', '-Un', '+P', '0008,0018', path]);
  return /\[(.*?)\]/.exec(stdout)?.[1] ?? '';
}

/** Resolves with the first log line of `gateway` that `match` accepts. */
export function logLine(
  gateway: GatewayProc,
  what: string,
  match: (l: Record<string, unknown>) => boolean,
  timeoutMs = 30_000,
) {
  return until(what, () => gateway.logs().find(match), timeoutMs);
}

/** Resolves with the gateway's first "result delivered" line. */
export function resultDelivered(gateway: GatewayProc, timeoutMs = 30_000) {
  return logLine(gateway, 'the delivery', (l) => l.message === 'result delivered', timeoutMs);
}

/** Resolves with the gateway's first "run step failed; retrying" line of `phase` (`what` names it in a timeout). */
export function failedStep(gateway: GatewayProc, what: string, phase: 'upload' | 'deliver') {
  return logLine(gateway, what, (l) => l.message === 'run step failed; retrying' && l.phase === phase);
}

/**
 * Exactly one run of `studyUid` in the logs of `procs` (the gateway processes of the test, before
 * and after a restart) and in the state folder, and every run there done (waited for a little: the
 * record is saved after the delivery's log line). A duplicate run would show as a second "run
 * started" line or a run left unfinished.
 */
export async function expectOneRun(stateDir: string, procs: readonly GatewayProc[], studyUid: string) {
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
export async function deliveredSr(dir: string, study: string, timeoutMs = 30_000) {
  await until(
    'the SR at the destination',
    async () => ((await srsOf(dir, study)).copies > 0 ? true : undefined),
    timeoutMs,
  );
  await sleep(1500);
  return srsOf(dir, study);
}

/**
 * The study delivered once: one SR (one SOP Instance UID, one copy) at `destDir`, and exactly one
 * run of it in the state folder and the logs of `procs` ({@link expectOneRun}). Resolves with the SRs.
 */
export async function expectDeliveredOnce(
  destDir: string,
  stateDir: string,
  procs: readonly GatewayProc[],
  studyUid: string,
) {
  const srs = await deliveredSr(destDir, studyUid);
  expect(srs.uids).toHaveLength(1);
  expect(srs.copies).toBe(1);
  await expectOneRun(stateDir, procs, studyUid);
  return srs;
}
