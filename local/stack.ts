/**
 * The whole pipeline on one machine, as it runs on AWS: local S3/SQS/SNS and DynamoDB, the
 * resources of the shared definitions, S3 manifest events on the ingest queue, the select and
 * aggregate handlers driven by emulated event source mappings, the GPU worker as a separate
 * process, and the api handler behind an emulated API Gateway that runs the key authorizer first
 * (an unknown key is refused before the api handler, as on AWS). `covidct dev`, the demo and the
 * integration tests all start it here. {@link startLocalStack} runs one named step per part, in
 * the order they depend on each other, and stops them in the reverse order.
 */
import { describeError } from '../core/errors.js';
import type { SweepResult } from '../lambdas/sweeper/sweeper.js';
import {
  API_KEY_HEADER,
  ApiKeyStore,
  type AwsClients,
  createClients,
  ENV,
  API_RESOURCES as PIPELINE_API_ROUTES,
  PIPELINE_DEFAULTS,
  QUEUES,
  REFUSAL_MESSAGES,
} from '../pipeline/index.js';
import { type ApiServer, startApiServer } from './api-server.js';
import { type EventSource, type SqsEventHandler, startEventSource } from './event-source.js';
import { completeHandlers, type PipelineHandlers } from './handlers.js';
import { createLocalResources, envFor, LOCAL_RUNTIME_ENV, type LocalResources } from './resources.js';
import { type S3EventRouter, startS3EventRouter } from './s3-events.js';
import { type LocalServers, startLocalServers } from './servers.js';
import { WorkerProcess, type WorkerStatus } from './worker-process.js';

// The stack's public face: the parts split out of this file are still imported from here.
export { type HandlerName, loadPipelineHandlers, type PipelineHandlers } from './handlers.js';
export { WorkerExitError, type WorkerStatus } from './worker-process.js';

/** A hospital and its API key (stored hashed by the store). */
export interface HospitalKey {
  readonly hospital: string;
  readonly apiKey: string;
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
  /** The worker's output, a line at a time. @default each line on this process's stdout or stderr (worker-process.ts printLine) */
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

/** Where the stack's own problems go: a function and the part it happened in. */
type OnError = (error: unknown, where: string) => void;

/** The default {@link LocalStackOptions.onError}: one line on stderr. */
function printError(error: unknown, where: string): void {
  console.error(`covidct dev: ${where}: ${describeError(error, { className: false })}`);
}

/** The stop steps of the parts started so far; {@link run} runs them newest first, once. */
class Teardown {
  private readonly steps: (() => Promise<void>)[] = [];
  constructor(private readonly onError: OnError) {}
  add(step: () => Promise<void>): void {
    this.steps.push(step);
  }
  async run(): Promise<void> {
    for (const step of this.steps.reverse())
      await step().catch((error: unknown) => this.onError(error, 'stop'));
    this.steps.length = 0;
  }
}

/** Step 1: the local servers and the SDK clients on them. */
async function startServersAndClients(
  options: LocalStackOptions,
  teardown: Teardown,
): Promise<{ servers: LocalServers; endpoints: LocalStack['endpoints']; clients: AwsClients }> {
  const servers = await startLocalServers({
    ...(options.dataDir !== undefined ? { dataDir: options.dataDir } : {}),
    ...(options.host !== undefined ? { host: options.host } : {}),
    ...(options.s3SqsSnsPort !== undefined ? { s3SqsSnsPort: options.s3SqsSnsPort } : {}),
    ...(options.dynamoPort !== undefined ? { dynamoPort: options.dynamoPort } : {}),
  });
  teardown.add(() => servers.stop());
  const endpoints = { endpoint: servers.endpoint, dynamoDbEndpoint: servers.dynamoDbEndpoint };
  const clients = createClients(endpoints);
  teardown.add(async () => {
    clients.s3.destroy();
    clients.sqs.destroy();
    clients.sns.destroy();
    clients.dynamo.destroy();
  });
  return { servers, endpoints, clients };
}

/** Step 2: the resources, and access for the hospitals of this start. */
async function createResourcesAndKeys(
  options: LocalStackOptions,
  clients: AwsClients,
): Promise<LocalResources> {
  const resources = await createLocalResources(clients);
  // The hospitals of this start are the ones with access: one dropped from the command line of a
  // restart on the same data folder must not keep its key.
  if (options.hospitals) {
    await new ApiKeyStore(clients.dynamo, resources.apiKeyTableName).replaceAll(options.hospitals);
  }
  return resources;
}

/** Step 3: the worker's model: the one named, or the folder uploaded now. */
async function resolveModel(
  options: LocalStackOptions,
  clients: AwsClients,
  resources: LocalResources,
): Promise<string | undefined> {
  if (!options.uploadModel) return options.model;
  const { uploadModel } = await import('../gpu-worker/model-upload.js');
  const uploaded = await uploadModel({ ...options.uploadModel, bucket: resources.bucket, s3: clients.s3 });
  return uploaded.id;
}

/** Step 4: the environment the handlers and the worker run with. */
function stackEnv(
  options: LocalStackOptions,
  resources: LocalResources,
  endpoints: LocalStack['endpoints'],
  model: string | undefined,
): Record<string, string> {
  const stalledSeconds = options.sweeper ? options.sweeper.stalledSeconds : undefined;
  const neverUploadedSeconds = options.sweeper ? options.sweeper.neverUploadedSeconds : undefined;
  return {
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
}

/** Step 5: the emulated event source mappings of the select and aggregate functions. */
function startPollers(
  options: LocalStackOptions,
  clients: AwsClients,
  resources: LocalResources,
  handlers: PipelineHandlers,
  onError: OnError,
): LocalStack['eventSources'] {
  const poller = (queue: 'ingest' | 'votes', handler: SqsEventHandler, functionName: string) =>
    startEventSource({
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
  return {
    select: poller('ingest', handlers.select, 'covidct-select'),
    aggregate: poller('votes', handlers.aggregate, 'covidct-aggregate'),
  };
}

/** Step 6: the worker process (not started here), configured from the stack's environment. */
function workerProcess(
  options: LocalStackOptions,
  env: Readonly<Record<string, string>>,
  host: string,
  onError: OnError,
): WorkerProcess {
  return new WorkerProcess({
    ...(options.workerCommand !== undefined ? { command: options.workerCommand } : {}),
    env,
    overrides: {
      ...(options.visibilityTimeoutSeconds !== undefined
        ? { COVIDCT_WORKER_VISIBILITY_SECONDS: String(options.visibilityTimeoutSeconds) }
        : {}),
      ...options.workerEnv,
    },
    host,
    ...(options.onWorkerLine !== undefined ? { onLine: options.onWorkerLine } : {}),
    onError: (error) => onError(error, 'worker'),
  });
}

/** Step 7: the API behind the emulated API Gateway, the key authorizer first. */
function startApi(
  options: LocalStackOptions,
  handlers: PipelineHandlers,
  worker: WorkerProcess,
  onError: OnError,
): Promise<ApiServer> {
  return startApiServer({
    handler: handlers.api,
    authorizer: {
      handler: handlers.authorizer,
      header: API_KEY_HEADER,
      messages: { unauthorized: REFUSAL_MESSAGES.missing, accessDenied: REFUSAL_MESSAGES.unknown },
    },
    routes: PIPELINE_API_ROUTES,
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.host !== undefined ? { host: options.host } : {}),
    health: () => ({ worker: worker.status() }),
    onError: (error) => onError(error, 'covidct-api'),
  });
}

/**
 * Step 8: the sweeper, one run at a time, on a timer as EventBridge runs it on AWS (unless
 * `sweeper: false`); the timer's runs report through onError.
 */
async function startSweeper(
  options: LocalStackOptions,
  clients: AwsClients,
  env: Readonly<Record<string, string>>,
  teardown: Teardown,
  onError: OnError,
): Promise<() => Promise<SweepResult>> {
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
    teardown.add(async () => {
      clearInterval(timer);
      await sweeping?.catch(() => undefined);
    });
  }
  return sweepNow;
}

/** Start the local pipeline: the steps above in order; a failed step stops the ones before it. */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const onError = options.onError ?? printError;
  const host = options.host ?? '127.0.0.1';
  const teardown = new Teardown(onError);
  try {
    const { servers, endpoints, clients } = await startServersAndClients(options, teardown);
    const resources = await createResourcesAndKeys(options, clients);
    const model = await resolveModel(options, clients, resources);
    const env = stackEnv(options, resources, endpoints, model);

    const router = startS3EventRouter({
      fauxqs: servers.fauxqs,
      clients,
      bucket: resources.bucket,
      queueUrl: resources.queueUrls.ingest,
      onError: (error, key) => onError(error, `S3 event for ${key}`),
    });
    teardown.add(() => router.stop());

    const handlers = await completeHandlers(clients, env, options.handlers);
    const eventSources = startPollers(options, clients, resources, handlers, onError);
    // Both drain at once (each waits out at most one short poll and its batch in flight).
    teardown.add(async () => {
      await Promise.all([eventSources.select.stop(), eventSources.aggregate.stop()]);
    });

    // Stopped before the pollers so its last votes count.
    const worker = workerProcess(options, env, host, onError);
    if ((options.worker ?? true) && model !== undefined) {
      await worker.start();
      teardown.add(() => worker.stop());
    }

    const api = await startApi(options, handlers, worker, onError);
    teardown.add(() => api.stop());
    const sweep = await startSweeper(options, clients, env, teardown, onError);

    let stopping: Promise<void> | undefined;
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
      worker: () => worker.status(),
      killWorker: (signal) => worker.kill(signal),
      async restartWorker() {
        await worker.kill('SIGTERM');
        if (model === undefined) throw new Error('no model configured: the worker needs COVIDCT_MODEL');
        return worker.start();
      },
      sweep,
      stop() {
        // No exit of the worker is a crash from here on, whichever step stops it.
        worker.markStopping();
        stopping ??= teardown.run();
        return stopping;
      },
    };
  } catch (error) {
    await teardown.run();
    throw error;
  }
}
