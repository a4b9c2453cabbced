/**
 * Local servers and the pipeline's resources for integration tests: each test file gets its own
 * fauxqs + dynalite on free ports (files run in parallel), the real SDK clients pointed at them,
 * and the environment the handlers and the worker read.
 *
 * ```ts
 * const stack = useLocalStack({ applyEnv: true });
 * beforeAll(async () => { ({ handler } = await import('../lambdas/select/handler.js')); });
 * it('…', async () => { await stack.clients.s3.send(…); stack.servers.fauxqs.spy.waitForMessage(…); });
 * ```
 */
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll } from 'vitest';
import {
  createLocalResources,
  type EnvOptions,
  envFor,
  LOCAL_RUNTIME_ENV,
  type LocalResources,
} from '../../local/resources.js';
import { type LocalServers, type LocalServersOptions, startLocalServers } from '../../local/servers.js';
import { type AwsClients, createClients } from '../../pipeline/index.js';

/** Servers, clients, resources and environment of one test file. */
export interface LocalTestStack {
  readonly servers: LocalServers;
  readonly clients: AwsClients;
  readonly resources: LocalResources;
  /** The `COVIDCT_*` variables (envFor) plus Powertools' local settings. */
  readonly env: Readonly<Record<string, string>>;
  /** Stop the clients and servers (idempotent). */
  stop(): Promise<void>;
}

/** Options of {@link startLocalTestStack} and {@link useLocalStack}. */
export interface LocalTestStackOptions extends LocalServersOptions, EnvOptions {
  /** Copy `env` into `process.env` (restored on stop), for handlers that read it when imported. */
  readonly applyEnv?: boolean;
}

/** Powertools settings for local runs (readable logs, no metrics flush, no X-Ray daemon) and a region. */
export const LOCAL_POWERTOOLS_ENV = LOCAL_RUNTIME_ENV;

/** Start servers and create the resources (for use outside a vitest hook). */
export async function startLocalTestStack(options: LocalTestStackOptions = {}): Promise<LocalTestStack> {
  const servers = await startLocalServers(options);
  const clients = createClients({ endpoint: servers.endpoint, dynamoDbEndpoint: servers.dynamoDbEndpoint });
  let resources: LocalResources;
  try {
    resources = await createLocalResources(clients);
  } catch (error) {
    await servers.stop();
    throw error;
  }
  const env = { ...LOCAL_POWERTOOLS_ENV, ...envFor(resources, servers, options) };
  const saved = new Map<string, string | undefined>();
  if (options.applyEnv) {
    for (const [name, value] of Object.entries(env)) {
      saved.set(name, process.env[name]);
      process.env[name] = value;
    }
  }
  let stopping: Promise<void> | undefined;
  return {
    servers,
    clients,
    resources,
    env,
    stop() {
      stopping ??= (async () => {
        for (const [name, value] of saved) {
          if (value === undefined) delete process.env[name];
          else process.env[name] = value;
        }
        clients.s3.destroy();
        clients.sqs.destroy();
        clients.sns.destroy();
        clients.dynamo.destroy();
        await servers.stop();
      })();
      return stopping;
    },
  };
}

/**
 * Start a local stack in `beforeAll` and stop it in `afterAll`; the returned object's fields are
 * usable inside tests and later hooks.
 */
export function useLocalStack(options: LocalTestStackOptions = {}): LocalTestStack {
  let stack: LocalTestStack | undefined;
  beforeAll(async () => {
    stack = await startLocalTestStack(options);
  });
  afterAll(async () => {
    await stack?.stop();
  });
  const get = (): LocalTestStack => {
    if (!stack) throw new Error('useLocalStack: the stack starts in beforeAll; use it inside tests or hooks');
    return stack;
  };
  return {
    get servers() {
      return get().servers;
    },
    get clients() {
      return get().clients;
    },
    get resources() {
      return get().resources;
    },
    get env() {
      return get().env;
    },
    stop: () => get().stop(),
  };
}

/**
 * `receiveAll(queueUrl, sqs?)`: the messages (at most 10, with every system attribute) waiting on a
 * queue now, received through `sqs` (by default `stack`'s client); they become invisible for the
 * queue's visibility timeout.
 */
export function receiveAllFrom(stack: LocalTestStack) {
  return async (queueUrl: string, sqs = stack.clients.sqs) => {
    const response = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        MessageSystemAttributeNames: ['All'],
      }),
    );
    return response.Messages ?? [];
  };
}
