/**
 * api Lambda behind API Gateway (REST API, Lambda proxy integration): `x-api-key` → hospital
 * (the key's SHA-256 looked up in the API-key table; the authorizer in front has already refused
 * unknown keys, this lookup is what scopes every route to the key's hospital), then the routes of api.ts. Errors are one-line JSON
 * `{ "message": … }`; a study of another hospital is a 404 exactly like a missing one.
 */
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { PAPER_VOTE_THRESHOLD, parseVoteThreshold } from '../../core/vote.js';
import { ApiKeyStore } from '../../pipeline/api-keys.js';
import { type AwsClients, sharedClients } from '../../pipeline/clients.js';
import { ENV, requireEnv } from '../../pipeline/config.js';
import { HttpError, MessageError } from '../../pipeline/errors.js';
import { MAX_MANIFEST_BYTES } from '../../pipeline/messages.js';
import { createObservability, lazyHandler, msSince, type Observability } from '../../pipeline/powertools.js';
import { StudyStore } from '../../pipeline/store.js';
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

/** The route of an event: API Gateway's resource template, or the path matched here (proxy resources). */
function route(event: APIGatewayProxyEvent): { route: string; id?: string } {
  const method = event.httpMethod.toUpperCase();
  const id = event.pathParameters?.id;
  if (event.resource && !event.resource.includes('{proxy')) {
    return { route: `${method} ${event.resource}`, ...(id !== undefined ? { id } : {}) };
  }
  const path = event.path.replace(/\/+$/, '');
  const match = /^\/studies(?:\/([^/]+)(\/report)?)?$/.exec(path);
  if (!match) return { route: `${method} ${path}` };
  const template = match[1] === undefined ? '/studies' : match[2] ? '/studies/{id}/report' : '/studies/{id}';
  let decoded: string | undefined;
  try {
    decoded = match[1] === undefined ? undefined : decodeURIComponent(match[1]);
  } catch {
    decoded = '';
  }
  return { route: `${method} ${template}`, ...(decoded !== undefined ? { id: decoded } : {}) };
}

/** The handler over given clients and configuration (tests pass their own). */
export function makeApiHandler(
  clients: AwsClients,
  config: ApiConfig,
  observability: Observability = createObservability('covidct-api'),
): ApiHandler {
  const { logger, metrics, tracer } = observability;
  if (tracer.isTracingEnabled()) tracer.captureAWSv3Client(clients.s3);
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
    const key = header(event, 'x-api-key');
    if (!key) throw new HttpError(401, 'x-api-key header missing');
    const hospital = await keys.hospitalFor(key);
    if (!hospital) throw new HttpError(403, 'API key not recognised');
    const { route: r, id } = route(event);
    switch (r) {
      case 'POST /studies': {
        const raw = event.body ?? '';
        const body = event.isBase64Encoded ? Buffer.from(raw, 'base64').toString('utf8') : raw;
        if (Buffer.byteLength(body) > MAX_REQUEST_BYTES) {
          throw new HttpError(413, `body: larger than ${MAX_REQUEST_BYTES} bytes`);
        }
        const result = await createStudy(deps, hospital, body);
        const studyId = (result.body as { studyId: string }).studyId;
        logger.info('study created', { hospital, study: studyId });
        metrics.addMetric('StudiesCreated', MetricUnit.Count, 1);
        return result;
      }
      case 'GET /studies':
        return listStudies(deps, hospital, event.queryStringParameters ?? {});
      case 'GET /studies/{id}':
        return getStudyStatus(deps, hospital, id ?? '');
      case 'GET /studies/{id}/report':
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
      if (error instanceof HttpError) return json(error.statusCode, { message: error.message });
      if (error instanceof MessageError) return json(400, { message: error.message });
      logger.error('api request failed', {
        route: route(event).route,
        error: `${(error as Error).name}: ${(error as Error).message}`.split('\n')[0],
      });
      return json(500, { message: 'internal error' });
    } finally {
      metrics.addMetric('ApiLatency', MetricUnit.Milliseconds, msSince(started));
      metrics.publishStoredMetrics();
    }
  };
}

/** The Lambda entry point (clients and configuration made on the first call, so importing is free). */
export const handler = lazyHandler(() => makeApiHandler(sharedClients(), apiConfigFromEnv()));
