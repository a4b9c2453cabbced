/**
 * Pieces every `covidct bench` mode shares: timing (warm-up, then the median of timed runs),
 * running a Python reference that prints JSON, and finding the repository's bundled files whether
 * covidct runs from source or from dist/.
 */

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { median } from '../../core/metrics.js';

/** Run `fn` once to warm up, then `runs` times; the median ms of the timed runs and the last result. */
export async function timeRuns<T>(
  runs: number,
  fn: () => T | Promise<T>,
): Promise<{ ms: number; result: T }> {
  let result = await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    result = await fn();
    times.push(performance.now() - t);
  }
  return { ms: median(times), result };
}

/** A figure and the baseline it is compared with, measured in the same run. */
export interface Compared {
  /** ms per unit (slice, study) of ours. */
  readonly ms: number;
  /** ms per unit of the baseline; null when the baseline could not run (see `baselineError`). */
  readonly baselineMs: number | null;
  /** What the baseline is. */
  readonly baseline: string;
  /** baselineMs / ms: above 1 means ours is faster. Null without a baseline. */
  readonly speedup: number | null;
  readonly baselineError?: string;
}

/** Build a {@link Compared}. */
export function compared(ms: number, baseline: string, baselineMs: number | null, error?: string): Compared {
  return {
    ms,
    baseline,
    baselineMs,
    speedup: baselineMs === null ? null : baselineMs / ms,
    ...(error === undefined ? {} : { baselineError: error }),
  };
}

/** Where a bench ran: what a figure means depends on it. */
export interface MachineInfo {
  readonly date: string;
  readonly node: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  /** 1-minute load average at the start: above the core count, other work shared the CPUs. */
  readonly loadAverage: number;
}

/** Describe this machine now. */
export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadAverage: Math.round(loadavg()[0]! * 100) / 100,
  };
}

/** The repository root (holding `bench/` and `test/fixtures/`), from source or dist alike. */
export function repoRoot(): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'bench', 'reference_select.py'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('the covidct repository (bench/, test/fixtures/) is not beside the installed covidct');
}

/** The Python the references run with: `$COVIDCT_PYTHON` or Debian's /usr/bin/python3 (numpy, OpenCV, pydicom). */
export function referencePython(python?: string): string {
  return python ?? process.env.COVIDCT_PYTHON ?? '/usr/bin/python3';
}

/** Run `python script args…` and parse its stdout as JSON; a failure is an Error with stderr's last line. */
export async function runPythonJson<T>(script: string, args: readonly string[], python?: string): Promise<T> {
  const exe = referencePython(python);
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      const child = spawn(exe, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      child.on('error', (e) => reject(new Error(`cannot run ${exe}: ${e.message}`)));
      child.on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
    },
  );
  if (code !== 0) {
    const last = stderr.trim().split('\n').pop() ?? '';
    throw new Error(`${exe} ${basename(script)} failed (exit ${code}): ${last}`);
  }
  try {
    return JSON.parse(stdout) as T;
  } catch {
    throw new Error(`${basename(script)} printed no JSON`);
  }
}

/** A Python script serving requests line by line (see {@link startPythonServer}). */
export interface PythonServer<Ready> {
  /** The JSON line the script printed once it was ready. */
  readonly ready: Ready;
  /** Write `line` to its stdin and parse the JSON line it answers with. */
  request<T>(line: string): Promise<T>;
  /** Close its stdin and wait for it to exit. */
  close(): Promise<void>;
}

/**
 * Start `python script args…` as a server: it prints one JSON line when ready, then answers each
 * line written to its stdin with one JSON line. A bench alternates its own runs with the server's
 * this way, so that load from other processes on a shared machine falls on both alike. `env` is
 * the child's whole environment. A failure (cannot start, exits, prints no JSON) is an Error with
 * stderr's last line.
 */
export async function startPythonServer<Ready>(
  script: string,
  args: readonly string[],
  options: { python?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<PythonServer<Ready>> {
  const exe = referencePython(options.python);
  const child = spawn(exe, [script, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: options.env ?? process.env,
  });
  child.stdin.on('error', () => {}); // a write after the child died: 'close' reports why
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const lines: string[] = [];
  const waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  let buffered = '';
  let ended: Error | undefined;
  const failure = (what: string) => {
    const last = stderr.trim().split('\n').pop() ?? '';
    return new Error(`${exe} ${basename(script)} ${what}${last ? `: ${last}` : ''}`);
  };
  child.stdout.on('data', (d: Buffer) => {
    buffered += d.toString();
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const next = waiting.shift();
      if (next) next.resolve(line);
      else lines.push(line);
    }
  });
  const exited = new Promise<void>((resolve) => {
    child.on('error', (e) => {
      ended = new Error(`cannot run ${exe}: ${e.message}`);
      for (const w of waiting.splice(0)) w.reject(ended);
      resolve();
    });
    child.on('close', (code) => {
      ended ??= failure(`exited (code ${code})`);
      for (const w of waiting.splice(0)) w.reject(ended);
      resolve();
    });
  });
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const line = lines.shift();
      if (line !== undefined) resolve(line);
      else if (ended) reject(ended);
      else waiting.push({ resolve, reject });
    });
  const json = async <T>(): Promise<T> => {
    const line = await nextLine();
    try {
      return JSON.parse(line) as T;
    } catch {
      throw failure('printed a line that is not JSON');
    }
  };
  const close = async () => {
    child.stdin.end();
    await exited;
  };
  let ready: Ready;
  try {
    ready = await json<Ready>();
  } catch (error) {
    child.kill();
    await exited;
    throw error;
  }
  return {
    ready,
    request: async <T>(line: string) => {
      child.stdin.write(`${line}\n`);
      return json<T>();
    },
    close,
  };
}

/**
 * Deterministic raw-domain values (0 … 1999, air to bone) for `count` slices of `per` values: the
 * input of every speed-only bench (random weights, no real slices needed). bench/*.mjs use it too.
 */
export function randomRawSlices(count: number, per: number): Float32Array {
  const out = new Float32Array(count * per);
  let s = 12345;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s % 2000;
  }
  return out;
}

/** Round for JSON output: figures are noisy well before the third significant digit. */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const scale = 10 ** Math.max(0, digits - 1 - Math.floor(Math.log10(Math.abs(value))));
  return Math.round(value * scale) / scale;
}

/**
 * Quiet the in-process Lambdas of a local stack (their logs and metrics would bury a bench's
 * output): warnings only, no metrics, until the returned function restores the environment.
 */
export function quietPowertools(): () => void {
  const saved = {
    POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL,
    POWERTOOLS_METRICS_DISABLED: process.env.POWERTOOLS_METRICS_DISABLED,
  };
  process.env.POWERTOOLS_LOG_LEVEL = 'WARN';
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  return () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}
