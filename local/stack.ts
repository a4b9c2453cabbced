/**
 * The whole pipeline on one machine, as it runs on AWS: local S3/SQS/SNS and DynamoDB, the
 * resources of the shared definitions, S3 manifest events on the ingest queue, the select and
 * aggregate handlers driven by emulated event source mappings, the GPU worker as a separate
 * process, and the api handler behind an emulated API Gateway that runs the key authorizer first
 * (an unknown key is refused before the api handler, as on AWS). `covidct dev`, the demo and the
 * integration tests all start it here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TokenAuthorizerHandler } from '../lambdas/authorizer/handler.js';
import type { SweepResult } from '../lambdas/sweeper/sweeper.js';
import { ApiKeyStore } from '../pipeline/api-keys.js';
import { type AwsClients, createClients } from '../pipeline/clients.js';
import { ENV } from '../pipeline/config.js';
import { PIPELINE_DEFAULTS, QUEUES } from '../pipeline/resources.js';
import {
  API_KEY_HEADER,
  API_RESOURCES as PIPELINE_API_ROUTES,
  REFUSAL_MESSAGES,
} from '../pipeline/routes.js';
import { type ApiHandler, startApiServer } from './api-server.js';
import { type EventSource, type SqsEventHandler, startEventSource } from './event-source.js';
import { freePort } from './ports.js';
import { createLocalResources, envFor, LOCAL_RUNTIME_ENV, type LocalResources } from './resources.js';
import { type S3EventRouter, startS3EventRouter } from './s3-events.js';
import { type LocalServers, startLocalServers } from './servers.js';

/** A hospital and its API key (stored hashed by the store). */
export interface HospitalKey {
  readonly hospital: string;
  readonly apiKey: string;
}

/** The handlers the stack drives. */
export interface PipelineHandlers {
  readonly select: SqsEventHandler;
  readonly aggregate: SqsEventHandler;
  readonly api: ApiHandler;
  /** The API's key check, run before `api` on every request. */
  readonly authorizer: TokenAuthorizerHandler;
}

/** A model folder to upload before the worker starts (what `covidct model upload` does). */
export interface ModelUpload {
  readonly dir: string;
  readonly name: string;
  readonly version: string;
}

/** Options of {@link startLocalStack}. */
export interface LocalStackOptions {
  /** API port. @default 0 (a free port) */
  readonly port?: number;
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** State folder (DynamoDB in LevelDB, a fauxqs snapshot on stop); memory only when absent. */
  readonly dataDir?: string;
  readonly s3SqsSnsPort?: number;
  readonly dynamoPort?: number;
  /** The hospitals with access, as `{ hospital, apiKey }`; given, they replace the keys a `dataDir` holds. */
  readonly hospitals?: readonly HospitalKey[];
  /** The worker's `COVIDCT_MODEL` (`{name}/{version}`); no worker without it (or `uploadModel`). */
  readonly model?: string;
  /** Upload this folder first and run the worker on it. */
  readonly uploadModel?: ModelUpload;
  /** `COVIDCT_VOTE_THRESHOLD` of the deployment. */
  readonly voteThreshold?: number;
  /** Handlers to drive instead of the real ones (tests of the stack itself); the others are loaded. */
  readonly handlers?: Partial<PipelineHandlers>;
  /** Run the worker process. @default true when a model is configured */
  readonly worker?: boolean;
  /** The worker's command line. @default [node, dist/gpu-worker/main.js] */
  readonly workerCommand?: readonly string[];
  /** Extra worker environment (`COVIDCT_HEATMAPS=none`, `COVIDCT_POOL_SIZE`, shorter waits…). */
  readonly workerEnv?: Readonly<Record<string, string>>;
  /** The worker's output, a line at a time; inherited (shown as is) when absent. */
  readonly onWorkerLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Visibility timeout the Lambda pollers ask for (tests: retries in seconds). @default the queues' */
  readonly visibilityTimeoutSeconds?: number;
  /** Long-poll wait of the Lambda pollers. @default 2 */
  readonly pollWaitSeconds?: number;
  /** Problems of the local machinery (a failed event delivery, a handler that threw). @default stderr */
  readonly onError?: (error: unknown, where: string) => void;
  /**
   * The sweeper, run on a timer as EventBridge runs it on AWS; `false` runs none (`sweep()` still
   * runs it once). @default every PIPELINE_DEFAULTS.sweepEverySeconds, failing studies without
   * progress for `COVIDCT_STALLED_SECONDS` or PIPELINE_DEFAULTS.stalledStudySeconds
   */
  readonly sweeper?:
    | false
    | {
        readonly everySeconds?: number;
        readonly stalledSeconds?: number;
        /** `COVIDCT_NEVER_UPLOADED_SECONDS`: a study still RECEIVED this long after creation fails. */
        readonly neverUploadedSeconds?: number;
      };
}

/** The worker process's state. */
export interface WorkerStatus {
  readonly running: boolean;
  readonly pid?: number;
  readonly healthPort?: number;
  readonly starts: number;
  /** How the last run ended, if it did. */
  readonly lastExit?: { readonly code: number | null; readonly signal: NodeJS.Signals | null };
}

/** A running local stack. */
export interface LocalStack {
  readonly apiUrl: string;
  readonly endpoints: { readonly endpoint: string; readonly dynamoDbEndpoint: string };
  readonly resources: LocalResources;
  readonly clients: AwsClients;
  readonly servers: LocalServers;
  /** The environment the handlers and the worker run with. */
  readonly env: Readonly<Record<string, string>>;
  readonly hospitals: readonly HospitalKey[];
  /** The worker's model (`{name}/{version}`), if one runs. */
  readonly model?: string;
  readonly eventSources: { readonly select: EventSource; readonly aggregate: EventSource };
  readonly router: S3EventRouter;
  worker(): WorkerStatus;
  /** Send the worker a signal; resolves when it has exited (immediately when none runs). */
  killWorker(signal?: NodeJS.Signals): Promise<WorkerStatus>;
  /** Stop the worker (SIGTERM, drain) if it runs and start a fresh one. */
  restartWorker(): Promise<WorkerStatus>;
  /** Run the sweeper now (after the run in progress, if any); rejects when a study was not handled. */
  sweep(): Promise<SweepResult>;
  /** Stop everything in order: API, worker (drained), pollers (drained), router, servers. */
  stop(): Promise<void>;
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
function defaultWorkerCommand(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  // From dist/local/stack.js the worker is dist/gpu-worker/main.js; from local/stack.ts, the built one.
  const root = here.endsWith(join('dist', 'local')) ? join(here, '..', '..') : join(here, '..');
  return [process.execPath, join(root, 'dist', 'gpu-worker', 'main.js')];
}

/** The handler modules, by name: `lambdas/{name}/handler.ts`. */
export type HandlerName = keyof PipelineHandlers;

/**
 * The real handlers, made over the stack's clients and configured from `env` (not process.env, so
 * several stacks can share a process); only the modules of `names` are loaded.
 */
export async function loadPipelineHandlers(
  clients: AwsClients,
  env: Readonly<Record<string, string>>,
  names: readonly HandlerName[] = ['select', 'aggregate', 'api', 'authorizer'],
): Promise<Partial<PipelineHandlers>> {
  const config = { ...process.env, ...env };
  const loaders: { [K in HandlerName]: () => Promise<PipelineHandlers[K]> } = {
    select: async () => {
      const m = await import('../lambdas/select/handler.js');
      return m.makeSelectHandler(clients, m.selectConfigFromEnv(config));
    },
    aggregate: async () => {
      const m = await import('../lambdas/aggregate/handler.js');
      return m.makeAggregateHandler(clients, m.aggregateConfigFromEnv(config));
    },
    api: async () => {
      const m = await import('../lambdas/api/handler.js');
      return m.makeApiHandler(clients, m.apiConfigFromEnv(config));
    },
    authorizer: async () => {
      const m = await import('../lambdas/authorizer/handler.js');
      return m.makeAuthorizerHandler(clients, m.authorizerConfigFromEnv(config));
    },
  };
  return Object.fromEntries(
    await Promise.all(names.map(async (name) => [name, await loaders[name]()] as const)),
  ) as Partial<PipelineHandlers>;
}

/** Start the local pipeline. */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const onError =
    options.onError ??
    ((error: unknown, where: string) =>
      console.error(`covidct dev: ${where}: ${error instanceof Error ? error.message : String(error)}`));
  const cleanups: (() => Promise<void>)[] = [];
  // Declared before anything can call stop() or the worker's exit listener reads it.
  let stopping: Promise<void> | undefined;
  const host = options.host ?? '127.0.0.1';
  const unwind = async () => {
    for (const cleanup of cleanups.reverse())
      await cleanup().catch((error: unknown) => onError(error, 'stop'));
    cleanups.length = 0;
  };

  try {
    const servers = await startLocalServers({
      ...(options.dataDir !== undefined ? { dataDir: options.dataDir } : {}),
      ...(options.host !== undefined ? { host: options.host } : {}),
      ...(options.s3SqsSnsPort !== undefined ? { s3SqsSnsPort: options.s3SqsSnsPort } : {}),
      ...(options.dynamoPort !== undefined ? { dynamoPort: options.dynamoPort } : {}),
    });
    cleanups.push(() => servers.stop());
    const endpoints = { endpoint: servers.endpoint, dynamoDbEndpoint: servers.dynamoDbEndpoint };
    const clients = createClients(endpoints);
    cleanups.push(async () => {
      clients.s3.destroy();
      clients.sqs.destroy();
      clients.sns.destroy();
      clients.dynamo.destroy();
    });
    const resources = await createLocalResources(clients);

    // The hospitals of this start are the ones with access: one dropped from the command line of a
    // restart on the same data folder must not keep its key.
    if (options.hospitals) {
      await new ApiKeyStore(clients.dynamo, resources.apiKeyTableName).replaceAll(options.hospitals);
    }

    let model = options.model;
    if (options.uploadModel) {
      const { uploadModel } = await import('../cli/commands/model-upload.js');
      const uploaded = await uploadModel({
        ...options.uploadModel,
        bucket: resources.bucket,
        s3: clients.s3,
      });
      model = uploaded.id;
    }
    const stalledSeconds = options.sweeper ? options.sweeper.stalledSeconds : undefined;
    const neverUploadedSeconds = options.sweeper ? options.sweeper.neverUploadedSeconds : undefined;
    const env: Record<string, string> = {
      ...LOCAL_RUNTIME_ENV,
      ...envFor(resources, endpoints, {
        ...(options.voteThreshold !== undefined ? { voteThreshold: options.voteThreshold } : {}),
        ...(model !== undefined ? { model } : {}),
      }),
      ...(stalledSeconds !== undefined ? { [ENV.stalledSeconds]: String(stalledSeconds) } : {}),
      ...(neverUploadedSeconds !== undefined
        ? { [ENV.neverUploadedSeconds]: String(neverUploadedSeconds) }
        : {}),
    };

    const router = startS3EventRouter({
      fauxqs: servers.fauxqs,
      clients,
      bucket: resources.bucket,
      queueUrl: resources.queueUrls.ingest,
      onError: (error, key) => onError(error, `S3 event for ${key}`),
    });
    cleanups.push(() => router.stop());

    const given = options.handlers ?? {};
    const missing = (['select', 'aggregate', 'api', 'authorizer'] as const).filter((name) => !given[name]);
    const handlers = {
      ...(missing.length > 0 ? await loadPipelineHandlers(clients, env, missing) : {}),
      ...given,
    } as PipelineHandlers;

    const poller = (queue: 'ingest' | 'votes', handler: SqsEventHandler, functionName: string) => {
      const source = startEventSource({
        sqs: clients.sqs,
        queueUrl: resources.queueUrls[queue],
        queueArn: resources.queueArns[queue],
        definition: QUEUES[queue].consumer,
        handler,
        context: { functionName },
        ...(options.visibilityTimeoutSeconds !== undefined
          ? { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds }
          : {}),
        ...(options.pollWaitSeconds !== undefined ? { pollWaitSeconds: options.pollWaitSeconds } : {}),
        onError: (error) => onError(error, functionName),
      });
      return source;
    };
    const eventSources = {
      select: poller('ingest', handlers.select, 'covidct-select'),
      aggregate: poller('votes', handlers.aggregate, 'covidct-aggregate'),
    };
    // Both drain at once (each waits out at most one short poll and its batch in flight).
    cleanups.push(async () => {
      await Promise.all([eventSources.select.stop(), eventSources.aggregate.stop()]);
    });

    // The worker: a child process, as on ECS. Stopped before the pollers so its last votes count.
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    let healthPort: number | undefined;
    let starts = 0;
    let lastExit: WorkerStatus['lastExit'];
    const wantWorker = (options.worker ?? true) && model !== undefined;
    const status = (): WorkerStatus => ({
      running: child !== undefined,
      ...(child?.pid !== undefined ? { pid: child.pid } : {}),
      ...(healthPort !== undefined ? { healthPort } : {}),
      starts,
      ...(lastExit ? { lastExit } : {}),
    });
    const startWorker = async (): Promise<void> => {
      if (!model) throw new Error('no model configured: the worker needs COVIDCT_MODEL');
      const [command, ...args] = options.workerCommand ?? defaultWorkerCommand();
      healthPort = await freePort(host);
      const proc = spawn(command!, args, {
        env: {
          ...process.env,
          ...env,
          COVIDCT_HEALTH_PORT: String(healthPort),
          // The worker's health check on the stack's address, like every other server here.
          COVIDCT_HEALTH_HOST: host,
          ...(options.visibilityTimeoutSeconds !== undefined
            ? { COVIDCT_WORKER_VISIBILITY_SECONDS: String(options.visibilityTimeoutSeconds) }
            : {}),
          ...options.workerEnv,
        },
        stdio: [
          'ignore',
          options.onWorkerLine ? 'pipe' : 'inherit',
          options.onWorkerLine ? 'pipe' : 'inherit',
        ],
      });
      starts++;
      child = proc;
      const onLine = options.onWorkerLine;
      if (onLine) {
        createInterface({ input: proc.stdout! }).on('line', (line) => onLine(line, 'stdout'));
        createInterface({ input: proc.stderr! }).on('line', (line) => onLine(line, 'stderr'));
      }
      exited = new Promise<void>((resolve) => {
        proc.once('error', (error) => {
          onError(error, 'worker');
          if (child === proc) child = undefined;
          resolve();
        });
        proc.once('exit', (code, signal) => {
          lastExit = { code, signal };
          if (child === proc) child = undefined;
          if (!stopping && !killing) {
            onError(new WorkerExitError(code, signal), 'worker');
          }
          resolve();
        });
      });
    };
    let killing = false;
    const killWorker = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<WorkerStatus> => {
      const proc = child;
      if (proc) {
        killing = true;
        proc.kill(signal);
        // A draining worker finishes its batch; past a minute it is killed, as ECS's stopTimeout would.
        const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
        await exited;
        clearTimeout(timer);
        killing = false;
      }
      return status();
    };
    if (wantWorker) {
      await startWorker();
      cleanups.push(async () => {
        await killWorker('SIGTERM');
      });
    }

    const api = await startApiServer({
      handler: handlers.api,
      authorizer: {
        handler: handlers.authorizer,
        header: API_KEY_HEADER,
        messages: { unauthorized: REFUSAL_MESSAGES.missing, accessDenied: REFUSAL_MESSAGES.unknown },
      },
      routes: PIPELINE_API_ROUTES,
      ...(options.port !== undefined ? { port: options.port } : {}),
      ...(options.host !== undefined ? { host: options.host } : {}),
      health: () => ({ worker: status() }),
      onError: (error) => onError(error, 'covidct-api'),
    });
    cleanups.push(() => api.stop());

    // The sweeper: one run at a time; the timer's runs report through onError.
    const { makeSweeperHandler, sweeperConfigFromEnv } = await import('../lambdas/sweeper/handler.js');
    const sweeper = makeSweeperHandler(clients, sweeperConfigFromEnv({ ...process.env, ...env }));
    let sweeping: Promise<SweepResult> | undefined;
    const sweepNow = async (): Promise<SweepResult> => {
      while (sweeping) await sweeping.catch(() => undefined);
      const run = sweeper();
      sweeping = run;
      try {
        return await run;
      } finally {
        sweeping = undefined;
      }
    };
    if (options.sweeper !== false) {
      const everySeconds = options.sweeper?.everySeconds ?? PIPELINE_DEFAULTS.sweepEverySeconds;
      const timer = setInterval(() => {
        if (!sweeping) sweepNow().catch((error: unknown) => onError(error, 'covidct-sweeper'));
      }, everySeconds * 1000);
      timer.unref();
      cleanups.push(async () => {
        clearInterval(timer);
        await sweeping?.catch(() => undefined);
      });
    }

    return {
      apiUrl: api.url,
      endpoints,
      resources,
      clients,
      servers,
      env,
      hospitals: options.hospitals ?? [],
      ...(model !== undefined ? { model } : {}),
      eventSources,
      router,
      worker: status,
      killWorker,
      async restartWorker() {
        await killWorker('SIGTERM');
        await startWorker();
        return status();
      },
      sweep: sweepNow,
      stop() {
        stopping ??= unwind();
        return stopping;
      },
    };
  } catch (error) {
    await unwind();
    throw error;
  }
}
