/**
 * The local stack is for one user on one machine: `covidct dev` as a new user runs it (no --model:
 * the shipped default model), every listening socket of its process tree (the CLI with fauxqs,
 * dynalite and the API in-process, and the worker process) is on loopback, and a study uploaded as
 * the README shows completes. And a worker that dies while the stack starts is reported, not a crash.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { writePhantomSeries } from '../core/phantom/series.js';
import { startLocalStack, WorkerExitError } from '../local/stack.js';
import { CLI } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

const run = promisify(execFile);
const work = tempDir('covidct-privacy-');

/** A listening TCP socket: its address as written in /proc/net/tcp{,6} and its port. */
interface Listening {
  readonly address: string;
  readonly port: number;
}

/** `0100007F` (little-endian IPv4) or 32 hex digits (four little-endian words of IPv6) → text. */
function procAddress(hex: string): string {
  const bytes = (word: string) => (word.match(/../g) ?? []).reverse().map((b) => Number.parseInt(b, 16));
  if (hex.length === 8) return bytes(hex).join('.');
  const all = (hex.match(/.{8}/g) ?? []).flatMap(bytes);
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((all[i]! << 8) | all[i + 1]!).toString(16));
  return groups.join(':');
}

/** Whether an address from {@link procAddress} is loopback (127/8, ::1, ::ffff:127/8). */
function isLoopback(address: string): boolean {
  if (address.startsWith('127.')) return true;
  if (address === '0:0:0:0:0:0:0:1') return true;
  // IPv4-mapped: ::ffff:7fxx:xxxx.
  return /^0:0:0:0:0:ffff:7f[0-9a-f]{2}:/.test(address);
}

/** Every listening TCP socket of the machine, by socket inode. */
function listeningSockets(): Map<string, Listening> {
  const found = new Map<string, Listening>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || fields[3] !== '0A') continue; // 0A: LISTEN
      const [address, port] = fields[1]!.split(':');
      found.set(fields[9]!, { address: procAddress(address!), port: Number.parseInt(port!, 16) });
    }
  }
  return found;
}

/** `pid` and all its descendants. */
function processTree(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name may hold spaces and parentheses: the fields start after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(Number(entry), ppid);
    } catch {
      // Exited meanwhile.
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child);
  }
  return tree;
}

/** The listening sockets the processes of `pids` hold. */
function listeningOf(pids: readonly number[]): Listening[] {
  const sockets = listeningSockets();
  const held: Listening[] = [];
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      const socket = inode === undefined ? undefined : sockets.get(inode);
      if (socket) held.push(socket);
    }
  }
  return held;
}

/** What `covidct dev --json` prints. */
interface DevInfo {
  readonly apiUrl: string;
  readonly endpoints: { readonly endpoint: string; readonly dynamoDbEndpoint: string };
  readonly model: string | null;
  readonly worker: { readonly pid: number; readonly healthPort: number } | null;
}

/** Start `covidct dev --json …` and resolve with what it printed once its JSON is complete. */
function startDev(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  options: { readonly ownProcessGroup?: boolean; readonly onOutput?: (text: string) => void } = {},
): Promise<{ child: ChildProcess; info: DevInfo }> {
  const child = spawn(process.execPath, [CLI, 'dev', '--json', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, as a terminal gives it: Ctrl-C is a signal to the whole group.
    detached: options.ownProcessGroup ?? false,
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    err = (err + chunk.toString()).slice(-4000);
    options.onOutput?.(chunk.toString());
  });
  child.stdout!.on('data', (chunk: Buffer) => options.onOutput?.(chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`covidct dev exited (code ${code}): ${err}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const end = out.indexOf('\n}');
      if (end < 0) return;
      try {
        resolve({ child, info: JSON.parse(out.slice(out.indexOf('{'), end + 2)) as DevInfo });
      } catch {
        // Worker log lines before the JSON: keep reading.
      }
    });
  });
}

function stopDev(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

const portOf = (url: string) => Number(new URL(url).port);

/** Wait for the worker's health server (its first step; 503 while the model loads). */
async function workerListening(healthPort: number): Promise<void> {
  await expect
    .poll(
      () =>
        fetch(`http://127.0.0.1:${healthPort}/health`).then(
          (r) => r.status,
          () => 0,
        ),
      { timeout: 60_000, interval: 200 },
    )
    .toBeGreaterThan(0);
}

/** Every listening socket of `covidct dev`'s process tree is on loopback, its four servers among them. */
function expectLoopbackOnly(child: ChildProcess, info: DevInfo): void {
  const held = listeningOf(processTree(child.pid!));
  const ports = new Set(held.map((s) => s.port));
  for (const port of [
    portOf(info.apiUrl),
    portOf(info.endpoints.endpoint),
    portOf(info.endpoints.dynamoDbEndpoint),
    info.worker!.healthPort,
  ]) {
    expect(ports, `port ${port} among ${[...ports].join(', ')}`).toContain(port);
  }
  expect(held.filter((s) => !isLoopback(s.address))).toEqual([]);
}

const WORKER_ENV = { COVIDCT_POOL_SIZE: '1', COVIDCT_WORKER_BATCH_SLICES: '4', COVIDCT_HEATMAPS: 'none' };

describe('covidct dev stops on Ctrl-C', () => {
  it('drains the worker once when the stop signal arrives more than once', {
    timeout: 120_000,
  }, async () => {
    let output = '';
    const { child, info } = await startDev(
      ['--port', '0', '--model-dir', join(import.meta.dirname, '..', 'models', 'default')],
      WORKER_ENV,
      { ownProcessGroup: true, onOutput: (text) => (output += text) },
    );
    try {
      await expect
        .poll(
          () =>
            fetch(`http://127.0.0.1:${info.worker!.healthPort}/health`).then(
              (r) => r.status,
              () => 0,
            ),
          { timeout: 60_000, interval: 200 },
        )
        .toBe(200);
      // 'close', not 'exit': every line the CLI and the worker wrote has been read by then.
      const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
      // What a terminal does on Ctrl-C: SIGINT to every process of the foreground group (the CLI and
      // the worker); then the supervisors forward their own: `npx` a SIGINT to the CLI, the CLI a
      // SIGTERM to the worker. A pause between them, so the kernel does not merge the two SIGINTs.
      // An idle worker may have drained and gone before the echoes: that is a clean stop too.
      const echo = (pid: number, signal: NodeJS.Signals) => {
        try {
          process.kill(pid, signal);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
        }
      };
      process.kill(-child.pid!, 'SIGINT');
      await new Promise((r) => setTimeout(r, 20));
      echo(info.worker!.pid, 'SIGTERM');
      echo(child.pid!, 'SIGINT');
      expect(await closed).toBe(0);
      expect(output).toContain('signal received, draining');
      expect(output).not.toContain('exiting without draining');
      expect(output).not.toContain('without a clean stop');
      // The pinned AWS SDK's warning about later releases is not printed (cli/sdk-warning.ts).
      expect(output).not.toContain('NodeVersionSupportWarning');
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
    }
  });
});

describe('covidct dev is private', () => {
  it('listens on loopback only: API, S3/SQS/SNS, DynamoDB and the worker health check', {
    timeout: 120_000,
  }, async () => {
    const { child, info } = await startDev(
      ['--port', '0', '--model-dir', join(import.meta.dirname, '..', 'models', 'default')],
      WORKER_ENV,
    );
    try {
      expect(info.worker).not.toBeNull();
      await workerListening(info.worker!.healthPort);
      expectLoopbackOnly(child, info);
    } finally {
      await stopDev(child);
    }
  });
});

describe('covidct dev as a new user runs it', () => {
  it('runs the shipped default model without --model, and a study uploaded as the README shows completes', {
    timeout: 600_000,
  }, async () => {
    const study = join(work, 'study');
    await writePhantomSeries(join(study, 'SR_2'), {
      covid: true,
      seed: 7,
      slices: 16,
      format: 'dicom',
      force: false,
    });
    const key = 'privacy-key-0123456789';
    const { child, info } = await startDev(['--port', '0', '--hospital', `h1=${key}`], WORKER_ENV);
    try {
      // No --model: the shipped default model, uploaded as default/1, and a worker running it.
      expect(info.model).toBe('default/1');
      expect(info.worker).not.toBeNull();
      await workerListening(info.worker!.healthPort);
      expectLoopbackOnly(child, info);

      // As the README shows: upload, then wait until COMPLETE.
      const api = ['--api', info.apiUrl, '--key', key];
      const uploaded = await run(process.execPath, [CLI, 'upload', study, ...api, '--json'], {
        timeout: 120_000,
      });
      const { studyId } = JSON.parse(uploaded.stdout) as { studyId: string };
      const waited = await run(
        process.execPath,
        [CLI, 'wait', studyId, ...api, '--json', '--timeout', '540', '--interval', '1'],
        { timeout: 560_000 },
      );
      const status = JSON.parse(waited.stdout) as {
        status: string;
        decision: string | null;
        model?: { id: string };
      };
      expect(status).toMatchObject({
        status: 'COMPLETE',
        model: { id: 'default/1' },
        // A decision of the demonstration model says what it is.
        intendedUse: {
          diagnostic: false,
          statement: 'demonstration on synthetic phantoms, not for diagnosis',
        },
      });
      expect(status.decision).not.toBeNull();
    } finally {
      await stopDev(child);
    }
  });
});

describe('a worker that dies while the stack starts', () => {
  it('is reported as one line naming its exit, not thrown', async () => {
    const errors: unknown[] = [];
    const stack = await startLocalStack({
      model: 'gone/1',
      // Exits at once, before the rest of the stack has started.
      workerCommand: ['/bin/sh', '-c', 'exit 3'],
      onWorkerLine: () => {},
      sweeper: false,
      pollWaitSeconds: 1,
      onError: (error, where) => errors.push({ where, error }),
    });
    try {
      await expect.poll(() => errors.length, { timeout: 10_000, interval: 20 }).toBe(1);
      const [{ where, error }] = errors as [{ where: string; error: Error }];
      expect(where).toBe('worker');
      expect(error).toBeInstanceOf(WorkerExitError);
      expect(error.message).toBe(
        'the worker process exited (code 3): no slice is classified until it runs again',
      );
      expect(stack.worker()).toMatchObject({ running: false, starts: 1, lastExit: { code: 3 } });
    } finally {
      await stack.stop();
    }
    expect(errors).toHaveLength(1);
  });
});
