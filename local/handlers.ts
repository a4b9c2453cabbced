/**
 * The pipeline's Lambda handlers as the local stack drives them: made over the stack's clients and
 * configured from the stack's environment, loaded only when asked for (a test that brings its own
 * handler loads none of that module).
 */
import type { TokenAuthorizerHandler } from '../lambdas/authorizer/handler.js';
import type { AwsClients } from '../pipeline/index.js';
import type { ApiHandler } from './api-server.js';
import type { SqsEventHandler } from './event-source.js';

/** The handlers the stack drives. */
export interface PipelineHandlers {
  readonly select: SqsEventHandler;
  readonly aggregate: SqsEventHandler;
  readonly api: ApiHandler;
  /** The API's key check, run before `api` on every request. */
  readonly authorizer: TokenAuthorizerHandler;
}

/** The handler modules, by name: `lambdas/{name}/handler.ts`. */
export type HandlerName = keyof PipelineHandlers;

/** Every handler, in the order the stack loads them. */
const HANDLER_NAMES: readonly HandlerName[] = ['select', 'aggregate', 'api', 'authorizer'];

/**
 * The real handlers, made over the stack's clients and configured from `env` (not process.env, so
 * several stacks can share a process); only the modules of `names` are loaded.
 */
export async function loadPipelineHandlers(
  clients: AwsClients,
  env: Readonly<Record<string, string>>,
  names: readonly HandlerName[] = HANDLER_NAMES,
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

/** `given` completed with the real handlers of the names it lacks. */
export async function completeHandlers(
  clients: AwsClients,
  env: Readonly<Record<string, string>>,
  given: Partial<PipelineHandlers> = {},
): Promise<PipelineHandlers> {
  const missing = HANDLER_NAMES.filter((name) => !given[name]);
  return {
    ...(missing.length > 0 ? await loadPipelineHandlers(clients, env, missing) : {}),
    ...given,
  } as PipelineHandlers;
}
