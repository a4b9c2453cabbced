/**
 * API Gateway (REST API, Lambda proxy integration) in front of a handler, for the local stack:
 * each HTTP request becomes the `APIGatewayProxyEvent` API Gateway would send, and the handler's
 * `APIGatewayProxyResult` becomes the response. API Gateway's own answers are reproduced where the
 * handler never runs: 413 over the 10 MB payload limit, 403 "Missing Authentication Token" for a
 * path no resource matches, 502 for a failed or malformed invocation, 504 past 29 s.
 * With an `authorizer`, a TOKEN authorizer runs first as API Gateway runs it: no (or an empty)
 * identity header is a 401 without invoking it, a thrown `Unauthorized` a 401, a Deny (or no
 * Allow for the method) a 403, any other failure a 500, and the handler runs only on an Allow, with
 * the authorizer's context in `requestContext.authorizer` and its usage-identifier key in
 * `requestContext.identity.apiKey`. Usage plans (throttle, quota) and the authorizer's result
 * cache are not emulated: locally every stored key is accepted at once and without limits.
 * `GET /health` answers without the handler (the local stack's liveness check).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  APIGatewayAuthorizerResult,
  APIGatewayProxyEvent,
  APIGatewayProxyResult,
  APIGatewayTokenAuthorizerEvent,
  Context,
} from 'aws-lambda';
import { describeError } from '../core/errors.js';
import { compileResources, decodePathParameter, matchResource } from '../pipeline/index.js';
import { HandlerTimeoutError, lambdaContext, withTimeout } from './lambda-context.js';

/** A Lambda proxy handler. */
export type ApiHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;

/** A Lambda TOKEN authorizer. */
export type TokenAuthorizer = (
  event: APIGatewayTokenAuthorizerEvent,
  context: Context,
) => Promise<APIGatewayAuthorizerResult>;

/** The authorizer API Gateway runs before the handler, and how it answers a refusal. */
export interface ApiAuthorizerOptions {
  readonly handler: TokenAuthorizer;
  /** The identity source: a request header (lowercase). */
  readonly header: string;
  /** Bodies of the gateway responses (the deployed API's UNAUTHORIZED and ACCESS_DENIED). */
  readonly messages: { readonly unauthorized: string; readonly accessDenied: string };
}

/** API Gateway's payload limit. */
export const API_MAX_BODY_BYTES = 10 * 1024 * 1024;

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  readonly handler: ApiHandler;
  /** @default 0 (a free port) */
  readonly port?: number;
  /** @default '127.0.0.1' */
  readonly host?: string;
  /**
   * Resource templates (`/studies/{id}`, `/files/{path+}`): a matching path gets that `resource`
   * and its `pathParameters`; others get API Gateway's 403 (the pipeline's: pipeline/routes.ts
   * API_RESOURCES). Absent: one `/{proxy+}` resource.
   */
  readonly routes?: readonly string[];
  /** @default 'local' */
  readonly stage?: string;
  /** @default {@link API_MAX_BODY_BYTES} */
  readonly maxBodyBytes?: number;
  /** API Gateway's integration timeout. @default 29 */
  readonly timeoutSeconds?: number;
  /** A TOKEN authorizer run before the handler on every route. @default - none */
  readonly authorizer?: ApiAuthorizerOptions;
  /** Extra fields for `GET /health` (the stack reports its worker there). */
  readonly health?: () => Record<string, unknown>;
  /** A handler that threw (API Gateway answers 502). @default one line on stderr */
  readonly onError?: (error: unknown) => void;
}

/** A running API server. */
export interface ApiServer {
  /** `http://host:port` (the API's root; API Gateway would add the stage to the path, locally there is none). */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Content types API Gateway passes as text; anything else arrives base64-encoded. */
function isTextual(contentType: string | undefined): boolean {
  if (!contentType) return true;
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  return (
    type.startsWith('text/') ||
    type === 'application/json' ||
    type.endsWith('+json') ||
    type === 'application/xml' ||
    type === 'application/x-www-form-urlencoded' ||
    type === 'application/javascript'
  );
}

/** Read the body, or `'too-large'` as soon as it passes the cap. */
async function readBody(request: IncomingMessage, cap: number): Promise<Buffer | 'too-large'> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > cap) return 'too-large';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > cap) return 'too-large';
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The event API Gateway sends for this request. */
function toEvent(
  request: IncomingMessage,
  url: URL,
  body: Buffer,
  route: { resource: string; pathParameters: Record<string, string> | null },
  stage: string,
): APIGatewayProxyEvent {
  const headers: Record<string, string> = {};
  const multiValueHeaders: Record<string, string[]> = {};
  // rawHeaders keeps the client's spelling, as API Gateway does.
  for (let i = 0; i + 1 < request.rawHeaders.length; i += 2) {
    const name = request.rawHeaders[i]!;
    const value = request.rawHeaders[i + 1]!;
    headers[name] = value;
    multiValueHeaders[name] = [...(multiValueHeaders[name] ?? []), value];
  }
  const query: Record<string, string> = {};
  const multiQuery: Record<string, string[]> = {};
  for (const [name, value] of url.searchParams) {
    query[name] = value;
    multiQuery[name] = [...(multiQuery[name] ?? []), value];
  }
  const hasQuery = Object.keys(query).length > 0;
  const method = request.method ?? 'GET';
  const textual = isTextual(request.headers['content-type']);
  const now = Date.now();
  return {
    resource: route.resource,
    path: url.pathname,
    httpMethod: method,
    headers,
    multiValueHeaders,
    queryStringParameters: hasQuery ? query : null,
    multiValueQueryStringParameters: hasQuery ? multiQuery : null,
    pathParameters: route.pathParameters,
    stageVariables: null,
    body: body.length === 0 ? null : textual ? body.toString('utf8') : body.toString('base64'),
    isBase64Encoded: body.length > 0 && !textual,
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      authorizer: null,
      protocol: `HTTP/${request.httpVersion}`,
      httpMethod: method,
      identity: {
        accessKey: null,
        accountId: null,
        apiKey: null,
        apiKeyId: null,
        caller: null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: request.socket.remoteAddress ?? '127.0.0.1',
        user: null,
        userAgent: request.headers['user-agent'] ?? null,
        userArn: null,
      },
      path: `/${stage}${url.pathname}`,
      stage,
      requestId: randomUUID(),
      requestTimeEpoch: now,
      resourceId: 'local',
      resourcePath: route.resource,
    },
  };
}

/** Whether an IAM-style resource pattern (`*` and `?` wildcards) matches an ARN. */
function resourceMatches(pattern: string, arn: string): boolean {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${source}$`).test(arn);
}

/** API Gateway's evaluation of an authorizer's policy for one method: an explicit Deny wins, else an Allow is needed. */
function policyAllows(result: APIGatewayAuthorizerResult, methodArn: string): boolean {
  let allowed = false;
  for (const statement of result.policyDocument?.Statement ?? []) {
    const s = statement as { Effect?: string; Action?: string | string[]; Resource?: string | string[] };
    const actions = ([] as string[]).concat(s.Action ?? []);
    if (!actions.some((a) => resourceMatches(a, 'execute-api:Invoke'))) continue;
    const hit = ([] as string[]).concat(s.Resource ?? []).some((r) => resourceMatches(r, methodArn));
    if (!hit) continue;
    if (s.Effect === 'Deny') return false;
    if (s.Effect === 'Allow') allowed = true;
  }
  return allowed;
}

function sendJson(response: ServerResponse, status: number, value: unknown, close = false): void {
  const body = JSON.stringify(value);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...(close ? { connection: 'close' } : {}),
  });
  response.end(body);
}

function sendResult(response: ServerResponse, result: APIGatewayProxyResult): void {
  const body =
    result.body === undefined || result.body === null
      ? Buffer.alloc(0)
      : result.isBase64Encoded
        ? Buffer.from(result.body, 'base64')
        : Buffer.from(result.body, 'utf8');
  const headers: Record<string, string | string[]> = {};
  for (const [name, values] of Object.entries(result.multiValueHeaders ?? {})) {
    headers[name.toLowerCase()] = values.map(String);
  }
  for (const [name, value] of Object.entries(result.headers ?? {}))
    headers[name.toLowerCase()] = String(value);
  headers['content-length'] = String(body.length);
  headers['content-type'] ??= 'application/json';
  response.writeHead(result.statusCode, headers);
  response.end(body);
}

/** Serve `handler` over HTTP as API Gateway would. */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const stage = options.stage ?? 'local';
  const cap = options.maxBodyBytes ?? API_MAX_BODY_BYTES;
  const timeoutSeconds = options.timeoutSeconds ?? 29;
  const onError =
    options.onError ??
    ((error: unknown) => console.error(`api: ${describeError(error, { className: false })}`));
  const routes = options.routes ? compileResources(options.routes) : undefined;

  const serve = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname === '/health' && (request.method === 'GET' || request.method === 'HEAD')) {
      sendJson(response, 200, { status: 'ok', ...options.health?.() });
      return;
    }
    const body = await readBody(request, cap);
    if (body === 'too-large') {
      // The rest of the upload is not read: close the connection rather than drain it.
      sendJson(response, 413, { message: 'Request Too Long' }, true);
      request.destroy();
      return;
    }
    const route = routes
      ? matchResource(routes, url.pathname)
      : { resource: '/{proxy+}', pathParameters: { proxy: decodePathParameter(url.pathname.slice(1)) } };
    if (!route) {
      sendJson(response, 403, { message: 'Missing Authentication Token' });
      return;
    }
    const event = toEvent(request, url, body, route, stage);
    if (options.authorizer && !(await authorize(event, options.authorizer, response))) return;
    let result: APIGatewayProxyResult;
    try {
      result = await withTimeout(
        options.handler(
          event,
          lambdaContext({ timeoutSeconds, functionName: 'covidct-local-api', overrides: undefined }),
        ),
        timeoutSeconds,
      );
    } catch (error) {
      onError(error);
      if (error instanceof HandlerTimeoutError)
        sendJson(response, 504, { message: 'Endpoint request timed out' });
      else sendJson(response, 502, { message: 'Internal server error' });
      return;
    }
    if (!result || typeof result.statusCode !== 'number') {
      onError(new Error('the handler returned no statusCode (malformed Lambda proxy response)'));
      sendJson(response, 502, { message: 'Internal server error' });
      return;
    }
    sendResult(response, result);
  };

  /** Run the authorizer as API Gateway does; false when it answered the request itself. */
  const authorize = async (
    event: APIGatewayProxyEvent,
    authorizer: ApiAuthorizerOptions,
    response: ServerResponse,
  ): Promise<boolean> => {
    const token = Object.entries(event.headers).find(
      ([name]) => name.toLowerCase() === authorizer.header,
    )?.[1];
    if (token === undefined || token === '') {
      sendJson(response, 401, { message: authorizer.messages.unauthorized });
      return false;
    }
    const methodArn = `arn:aws:execute-api:us-east-1:${event.requestContext.accountId}:${event.requestContext.apiId}/${stage}/${event.httpMethod}${event.path}`;
    let result: APIGatewayAuthorizerResult;
    try {
      result = await withTimeout(
        authorizer.handler(
          { type: 'TOKEN', authorizationToken: token, methodArn },
          lambdaContext({ timeoutSeconds, functionName: 'covidct-local-authorizer', overrides: undefined }),
        ),
        timeoutSeconds,
      );
    } catch (error) {
      if (error instanceof Error && error.message === 'Unauthorized') {
        sendJson(response, 401, { message: authorizer.messages.unauthorized });
      } else {
        onError(error);
        // API Gateway's AUTHORIZER_FAILURE.
        sendJson(response, 500, { message: null });
      }
      return false;
    }
    if (!policyAllows(result, methodArn)) {
      sendJson(response, 403, { message: authorizer.messages.accessDenied });
      return false;
    }
    event.requestContext.authorizer = { ...result.context, principalId: result.principalId };
    event.requestContext.identity.apiKey = result.usageIdentifierKey ?? null;
    return true;
  };

  const server = createServer((request, response) => {
    serve(request, response).catch((error: unknown) => {
      onError(error);
      if (!response.headersSent) sendJson(response, 500, { message: 'Internal server error' });
      else response.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let stopping: Promise<void> | undefined;
  return {
    url: `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${address.port}`,
    port: address.port,
    stop() {
      stopping ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeIdleConnections();
      });
      return stopping;
    },
  };
}
