/**
 * The local stack's GPU worker: a child process, as on ECS. One object owns the process, its health
 * port, its start count and how it last ended, so an exit that comes at any moment (even before the
 * rest of the stack has started) finds that state already there, and knows whether it was asked for
 * (a kill, a restart, the stack stopping) or is a crash to report.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';

/** The worker process's state. */
export interface WorkerStatus {
  readonly running: boolean;
  readonly pid?: number;
  readonly healthPort?: number;
  readonly starts: number;
  /** How the last run ended, if it did. */
  readonly lastExit?: { readonly code: number | null; readonly signal: NodeJS.Signals | null };
}

/** The worker process ended while the stack was neither stopping nor killing it (a crash, a bad setting). */
export class WorkerExitError extends Error {
  override name = 'WorkerExitError';
  constructor(
    readonly code: number | null,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(
      `the worker process exited (${signal ? `signal ${signal}` : `code ${code}`}): no slice is classified until it runs again`,
    );
  }
}

/** `node dist/gpu-worker/main.js`, from the repository root whether this runs from source or dist. */
export function defaultWorkerCommand(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  // From dist/local/*.js the worker is dist/gpu-worker/main.js; from local/*.ts, the built one.
  const root = here.endsWith(join('dist', 'local')) ? join(here, '..', '..') : join(here, '..');
  return [process.execPath, join(root, 'dist', 'gpu-worker', 'main.js')];
}

/** A line of the worker's output on this process's stream of the same name. */
export function printLine(line: string, stream: 'stdout' | 'stderr'): void {
  (stream === 'stdout' ? process.stdout : process.stderr).write(`${line}\n`);
}

/** Options of {@link WorkerProcess}. */
export interface WorkerProcessOptions {
  /** The command line. @default {@link defaultWorkerCommand} */
  readonly command?: readonly string[];
  /** The environment beyond process.env (the stack's). */
  readonly env: Readonly<Record<string, string>>;
  /** Set after the health check's address and port, so a caller may choose its own. */
  readonly overrides?: Readonly<Record<string, string>>;
  /** The address its health check listens on (a free port there is chosen at each start). */
  readonly host: string;
  /**
   * Its output, a line at a time. @default {@link printLine}: each line on this process's own
   * stdout or stderr, as an inherited descriptor would show it, but through this process's streams
   * (a test runner that holds back what a passing test prints holds these lines back too).
   */
  readonly onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** A spawn failure, or an exit nobody asked for ({@link WorkerExitError}). */
  readonly onError: (error: unknown) => void;
  /** A draining worker past this is killed, as ECS's stopTimeout would. @default 60 000 */
  readonly stopTimeoutMs?: number;
}

/** The worker child process: {@link start}, {@link kill}, {@link restart}, {@link stop}. */
export class WorkerProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private healthPort: number | undefined;
  private starts = 0;
  private lastExit: WorkerStatus['lastExit'];
  /** An exit is expected while this is set (a kill in progress, or the stack stopping). */
  private expectingExit = false;

  constructor(private readonly options: WorkerProcessOptions) {}

  /** The process's state now. */
  status(): WorkerStatus {
    return {
      running: this.child !== undefined,
      ...(this.child?.pid !== undefined ? { pid: this.child.pid } : {}),
      ...(this.healthPort !== undefined ? { healthPort: this.healthPort } : {}),
      starts: this.starts,
      ...(this.lastExit ? { lastExit: this.lastExit } : {}),
    };
  }

  /** Spawn the process on a fresh health port (resolves once spawned, not once it is healthy). */
  async start(): Promise<WorkerStatus> {
    const [command, ...args] = this.options.command ?? defaultWorkerCommand();
    if (command === undefined) throw new Error('workerCommand is empty: give at least the program to run');
    const healthPort = await freePort(this.options.host);
    const proc = spawn(command, args, {
      env: {
        ...process.env,
        ...this.options.env,
        COVIDCT_HEALTH_PORT: String(healthPort),
        // The worker's health check on the stack's address, like every other server here.
        COVIDCT_HEALTH_HOST: this.options.host,
        ...this.options.overrides,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.healthPort = healthPort;
    this.starts++;
    this.child = proc;
    this.forwardLines(proc);
    this.exited = new Promise<void>((resolve) => {
      proc.once('error', (error) => {
        this.options.onError(error);
        this.forget(proc);
        resolve();
      });
      proc.once('exit', (code, signal) => {
        this.lastExit = { code, signal };
        this.forget(proc);
        if (!this.expectingExit) this.options.onError(new WorkerExitError(code, signal));
      });
      // 'close' comes after 'exit' once its output is read to the end: a stop waits for its last lines.
      proc.once('close', () => resolve());
    });
    return this.status();
  }

  /** Send a signal and wait for the exit (at once when none runs); a draining worker gets the stop timeout. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<WorkerStatus> {
    const proc = this.child;
    if (proc === undefined) return this.status();
    const wasExpecting = this.expectingExit;
    this.expectingExit = true;
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), this.options.stopTimeoutMs ?? 60_000);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
      this.expectingExit = wasExpecting;
    }
    return this.status();
  }

  /** Stop the running process (SIGTERM, drain) if any and start a fresh one. */
  async restart(): Promise<WorkerStatus> {
    await this.kill('SIGTERM');
    return this.start();
  }

  /** The stack is stopping: from now on no exit is reported. */
  markStopping(): void {
    this.expectingExit = true;
  }

  /** Drain and stop for good (SIGTERM; SIGKILL past the stop timeout). */
  async stop(): Promise<void> {
    this.markStopping();
    await this.kill('SIGTERM');
  }

  private forget(proc: ChildProcess): void {
    if (this.child === proc) this.child = undefined;
  }

  private forwardLines(proc: ChildProcess): void {
    const onLine = this.options.onLine ?? printLine;
    if (proc.stdout) createInterface({ input: proc.stdout }).on('line', (line) => onLine(line, 'stdout'));
    if (proc.stderr) createInterface({ input: proc.stderr }).on('line', (line) => onLine(line, 'stderr'));
  }
}
