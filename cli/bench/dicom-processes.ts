/**
 * The DICOM processes `covidct bench gateway` drives: DCMTK's tools (storescu, echoscu, dcmodify,
 * storescp) and the built `covidct gateway`, started as receivers that answer C-ECHO before they
 * are timed, and the series files they exchange (the sample's slices gunzipped, replicated with new
 * SOP Instance UIDs).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { freePort } from '../../local/ports.js';

/** The sample study's series both parts of the bench send. */
export const SAMPLE_SERIES = 'B40f';
/** The calling AE title of the bench's DCMTK tools. */
export const BENCH_AE = 'BENCH';
/** The gateway's AE title. */
export const GATEWAY_AE = 'GATEWAY';
/** The AE title of the PACS (a storescp destination). */
export const PACS_AE = 'PACS';
/**
 * DCMTK as Debian builds it leaves Nagle's algorithm on unless `TCP_NODELAY=1`: storescp's C-STORE
 * response then waits for the sender's delayed ACK, about 40 ms per instance (30 instances took
 * 1.4 s with or without writing them, 0.12 s with the variable). The DCMTK tools run with it, except
 * the storescp measured "as installed".
 */
export const NODELAY_ENV: NodeJS.ProcessEnv = { ...process.env, TCP_NODELAY: '1' };
/** The environment without `TCP_NODELAY`: DCMTK as installed. */
export const DCMTK_DEFAULT_ENV: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => name !== 'TCP_NODELAY'),
);

/** Wait `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The `.dcm.gz` slices of `from`, gunzipped into `to`. */
export async function gunzipSeries(from: string, to: string): Promise<string[]> {
  await mkdir(to, { recursive: true });
  const out: string[] = [];
  for (const name of (await readdir(from)).filter((n) => n.endsWith('.dcm.gz')).sort()) {
    const target = join(to, name.slice(0, -3));
    await writeFile(target, gunzipSync(await readFile(join(from, name))));
    out.push(target);
  }
  return out;
}

/**
 * `count` files: the originals, then copies with new SOP Instance UIDs (`dcmodify -gin`, file meta
 * updated too), same study and series.
 */
export async function replicate(real: string, to: string, count: number): Promise<string[]> {
  await mkdir(to, { recursive: true });
  const originals = (await readdir(real)).sort().map((n) => join(real, n));
  const files: string[] = [];
  const copies: string[] = [];
  for (let i = 0; i < count; i++) {
    const source = originals[i % originals.length]!;
    const target = join(to, `${String(i).padStart(5, '0')}.dcm`);
    await copyFile(source, target);
    files.push(target);
    if (i >= originals.length) copies.push(target);
  }
  if (copies.length > 0) await tool('dcmodify', ['-nb', '-gin', ...copies], 120_000);
  return files;
}

/** Run a DCMTK tool; resolves with its wall time in ms, rejects with its last stderr line. */
export function tool(
  command: string,
  args: readonly string[],
  timeoutMs: number,
  env: NodeJS.ProcessEnv = NODELAY_ENV,
): Promise<number> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command} (apt-get install dcmtk): ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(performance.now() - t);
      else {
        const last = err.trim().split('\n').filter(Boolean).pop() ?? '';
        reject(new Error(`${command} failed (${signal ?? `exit ${code}`}): ${last}`));
      }
    });
  });
}

/** A receiver process (the gateway or storescp) and what it printed. */
export interface Receiver {
  readonly child: ChildProcess;
  readonly port: number;
  /** The gateway's JSON log lines, parsed. */
  readonly logs: { message: string; at: number; [key: string]: unknown }[];
  stop(): Promise<void>;
}

/** Start a child whose stdout may carry JSON log lines (kept, parsed), its stderr's tail kept. */
export function startProcess(command: string, args: readonly string[], env?: NodeJS.ProcessEnv) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  const logs: Receiver['logs'] = [];
  let stderr = '';
  let pending = '';
  child.stdout!.on('data', (d: Buffer) => {
    pending += d.toString();
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
      try {
        const entry = JSON.parse(line) as { message?: string; timestamp?: string };
        if (typeof entry.message === 'string' && typeof entry.timestamp === 'string')
          logs.push({ ...entry, message: entry.message, at: Date.parse(entry.timestamp) });
      } catch {
        // not a log line
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    child,
    logs,
    stderr: () => stderr,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Start a receiver and wait until it answers C-ECHO. */
export async function startReceiver(
  name: string,
  command: string,
  args: (port: number) => readonly string[],
  aeTitle: string,
  env?: NodeJS.ProcessEnv,
): Promise<Receiver> {
  const port = await freePort();
  const p = startProcess(command, args(port), env);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (p.child.exitCode !== null || p.child.signalCode !== null) {
      const last = p.stderr().trim().split('\n').pop() ?? '';
      throw new Error(`${name} exited at start (${p.child.exitCode ?? p.child.signalCode}): ${last}`);
    }
    const ok = await tool('echoscu', ['-aet', BENCH_AE, '-aec', aeTitle, '127.0.0.1', String(port)], 10_000)
      .then(() => true)
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) {
      await p.stop();
      throw new Error(`${name} did not answer C-ECHO on port ${port} within 60 s`);
    }
    await sleep(100);
  }
  return { child: p.child, port, logs: p.logs, stop: p.stop };
}

/** Where a `covidct gateway` listens, whom it calls and accepts, and where it keeps its state. */
export interface GatewayArgs {
  readonly port: number;
  readonly aeTitle: string;
  /** The pipeline's API URL. */
  readonly api: string;
  /** `AE@host:port` the results are sent to. */
  readonly destination: string;
  /** `AE` or `AE@host` allowed to call. */
  readonly allowCaller: string;
  readonly quietSeconds: number;
  readonly state: string;
}

/** The `covidct gateway` command line (after the script path), one place for the bench and the tests. */
export function gatewayArgs(a: GatewayArgs): string[] {
  return [
    'gateway',
    '--port',
    String(a.port),
    '--ae-title',
    a.aeTitle,
    '--api',
    a.api,
    '--destination',
    a.destination,
    '--allow-caller',
    a.allowCaller,
    '--quiet-seconds',
    String(a.quietSeconds),
    '--state',
    a.state,
  ];
}

/** `covidct gateway` from dist/ with its state in `state`. */
export function startGatewayProcess(
  main: string,
  state: string,
  api: { url: string; key: string },
  destinationPort: number,
  quietSeconds: number,
): Promise<Receiver> {
  return startReceiver(
    'covidct gateway',
    process.execPath,
    (port) => [
      main,
      ...gatewayArgs({
        port,
        aeTitle: GATEWAY_AE,
        api: api.url,
        destination: `${PACS_AE}@127.0.0.1:${destinationPort}`,
        allowCaller: `${BENCH_AE}@127.0.0.1`,
        quietSeconds,
        state,
      }),
    ],
    GATEWAY_AE,
    {
      ...process.env,
      COVIDCT_API_KEY: api.key,
      POWERTOOLS_LOG_LEVEL: 'INFO',
      POWERTOOLS_DEV: 'false',
    },
  );
}

/** DCMTK's `storescp -od out` as a receiver (the PACS, or the receive bench's comparison). */
export function startStoreScpProcess(out: string, env: NodeJS.ProcessEnv = NODELAY_ENV): Promise<Receiver> {
  return startReceiver(
    'storescp',
    'storescp',
    (port) => ['-aet', PACS_AE, '+xa', '-od', out, String(port)],
    PACS_AE,
    env,
  );
}

/** storescu of `files` to a receiver: ms from start to exit (every instance acknowledged). */
export function storescu(files: readonly string[], aeTitle: string, port: number): Promise<number> {
  return tool('storescu', ['-aet', BENCH_AE, '-aec', aeTitle, '127.0.0.1', String(port), ...files], 600_000);
}

/** Regular files under `dir`, recursively. */
export async function countFiles(
  dir: string,
  filter: (name: string) => boolean = () => true,
): Promise<number> {
  let n = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) n += await countFiles(join(dir, entry.name), filter);
    else if (entry.isFile() && filter(entry.name)) n++;
  }
  return n;
}
