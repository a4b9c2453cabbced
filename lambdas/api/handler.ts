/**
 * api Lambda behind API Gateway (REST API, Lambda proxy integration): `x-api-key` → hospital
 * (the key's SHA-256 looked up in the API-key table; the authorizer in front has already refused
 * unknown keys, this lookup is what scopes every route to the key's hospital), then the routes of api.ts. Errors are one-line JSON
 * `{ "message": … }`; a study of another hospital is a 404 exactly like a missing one.
 */
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { describeError } from '../../core/errors.js';
import { PAPER_VOTE_THRESHOLD, parseVoteThreshold } from '../../core/vote.js';
import {
  API_KEY_HEADER,
  API_RESOURCES,
  ApiKeyStore,
  type ApiRoute,
  type AwsClients,
  CursorError,
  compileResources,
  createObservability,
  ENV,
  findApiRoute,
  HttpError,
  lazyHandler,
  MAX_MANIFEST_BYTES,
  METRIC,
  MessageError,
  matchResource,
  msSince,
  type Observability,
  REFUSAL_MESSAGES,
  requireEnv,
  type StudyLog,
  StudyStore,
  sharedClients,
  traceClients,
  withStudyKeys,
} from '../../pipeline/index.js';
import {
  type ApiDeps,
  type ApiResult,
  createStudy,
  getReport,
  getStudyStatus,
  listStudies,
  presignClientFor,
} from './api.js';

/** What the api Lambda is configured with. */
export interface ApiConfig {
  readonly bucket: string;
  readonly tableName: string;
  /** The API-key table (API_KEY_TABLE). */
  readonly apiKeyTableName: string;
  /** @default PAPER_VOTE_THRESHOLD */
  readonly defaultThreshold?: number;
  /** @default PIPELINE_DEFAULTS.presignSeconds */
  readonly presignSeconds?: number;
}

/** The configuration from the environment (ENV names). */
export function apiConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  const threshold = env[ENV.voteThreshold];
  return {
    bucket: requireEnv(ENV.bucket, env),
    tableName: requireEnv(ENV.table, env),
    apiKeyTableName: requireEnv(ENV.apiKeyTable, env),
    ...(threshold ? { defaultThreshold: parseVoteThreshold(threshold, ENV.voteThreshold) } : {}),
  };
}

/** The largest `POST /studies` body (the manifest it becomes has the same bound). */
export const MAX_REQUEST_BYTES = MAX_MANIFEST_BYTES;

/**
 * The HTTP status of an error the API answers with its own message: an {@link HttpError}'s, 400
 * for the domain's bad input (a body or a listing cursor); `undefined` for anything else (a 500).
 */
export function httpStatusOf(error: unknown): number | undefined {
  if (error instanceof HttpError) return error.statusCode;
  if (error instanceof MessageError || error instanceof CursorError) return 400;
  return undefined;
}

type ApiHandler = (event: APIGatewayProxyEvent, context?: Context) => Promise<APIGatewayProxyResult>;

function json(statusCode: number, body: unknown): APIGatewayProxyResult {
  return { statusCode, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

/** A header, whatever the client's spelling (API Gateway keeps it). */
function header(event: APIGatewayProxyEvent, name: string): string | undefined {
  for (const [key, value] of Object.entries(event.headers ?? {})) {
    if (key.toLowerCase() === name && value !== undefined) return value;
  }
  return undefined;
}

const RESOURCES = compileResources(API_RESOURCES);

/**
 * The route of an event (pipeline/routes.ts): API Gateway's resource template, or the path matched
 * against the same templates (proxy resources). `key` (`GET /studies/{id}`) names it in errors and logs.
 */
function route(event: APIGatewayProxyEvent): { key: string; route?: ApiRoute; id?: string } {
  const method = event.httpMethod.toUpperCase();
  let resource: string;
  let id = event.pathParameters?.id;
  if (event.resource && !event.resource.includes('{proxy')) {
    resource = event.resource;
  } else {
    const path = event.path.replace(/\/+$/, '');
    const matched = matchResource(RESOURCES, path);
    if (!matched) return { key: `${method} ${path}` };
    resource = matched.resource;
    id = matched.pathParameters?.id;
  }
  const found = findApiRoute(method, resource);
  return {
    key: `${method} ${resource}`,
    ...(found ? { route: found } : {}),
    ...(id !== undefined ? { id } : {}),
  };
}

/** The handler over given clients and configuration (tests pass their own). */
export function makeApiHandler(
  clients: AwsClients,
  config: ApiConfig,
  observability: Observability = createObservability('covidct-api'),
): ApiHandler {
  const { logger, metrics, tracer } = observability;
  traceClients(tracer, clients.s3);
  const store = new StudyStore(clients.dynamo, config.tableName);
  const keys = new ApiKeyStore(clients.dynamo, config.apiKeyTableName);
  const deps: ApiDeps = {
    s3: clients.s3,
    presigner: presignClientFor(clients.s3),
    store,
    bucket: config.bucket,
    defaultThreshold: config.defaultThreshold ?? PAPER_VOTE_THRESHOLD,
    ...(config.presignSeconds !== undefined ? { presignSeconds: config.presignSeconds } : {}),
  };

  const dispatch = async (event: APIGatewayProxyEvent): Promise<ApiResult> => {
    const key = header(event, API_KEY_HEADER);
    if (!key) throw new HttpError(401, REFUSAL_MESSAGES.missing);
    const hospital = await keys.hospitalFor(key);
    if (!hospital) throw new HttpError(403, REFUSAL_MESSAGES.unknown);
    return withStudyKeys(logger, { hospital }, (log) => dispatchAs(event, hospital, log));
  };

  const dispatchAs = async (
    event: APIGatewayProxyEvent,
    hospital: string,
    log: StudyLog,
  ): Promise<ApiResult> => {
    const { key: r, route: matched, id } = route(event);
    switch (matched?.name) {
      case 'createStudy': {
        const raw = event.body ?? '';
        const body = event.isBase64Encoded ? Buffer.from(raw, 'base64').toString('utf8') : raw;
        if (Buffer.byteLength(body) > MAX_REQUEST_BYTES) {
          throw new HttpError(413, `body: larger than ${MAX_REQUEST_BYTES} bytes`);
        }
        const result = await createStudy(deps, hospital, body);
        const studyId = (result.body as { studyId: string }).studyId;
        log.info('study created', { study: studyId });
        metrics.addMetric(METRIC.StudiesCreated, MetricUnit.Count, 1);
        return result;
      }
      case 'listStudies':
        return listStudies(deps, hospital, event.queryStringParameters ?? {});
      case 'getStudy':
        return getStudyStatus(deps, hospital, id ?? '');
      case 'getReport':
        return getReport(deps, hospital, id ?? '');
      default:
        throw new HttpError(404, `no route ${r}`);
    }
  };

  return async (event) => {
    const started = performance.now();
    try {
      const result = await dispatch(event);
      return json(result.statusCode, result.body);
    } catch (error) {
      const status = httpStatusOf(error);
      if (status !== undefined) return json(status, { message: (error as Error).message });
      logger.error('api request failed', { route: route(event).key, error: describeError(error) });
      return json(500, { message: 'internal error' });
    } finally {
      metrics.addMetric(METRIC.ApiLatency, MetricUnit.Milliseconds, msSince(started));
      metrics.publishStoredMetrics();
    }
  };
}

/** The Lambda entry point (clients and configuration made on the first call, so importing is free). */
export const handler = lazyHandler(() => makeApiHandler(sharedClients(), apiConfigFromEnv()));
