/**
 * The API's key authorizer (lambdas/authorizer/): its decision as a pure function (no network),
 * the handler over the local DynamoDB through the real SDK, and the local API server running it in
 * front of the api handler as API Gateway does: no key 401, an unknown key 403, a known key through
 * with the hospital and the usage-identifier key (the key's SHA-256), and the api handler never
 * invoked for a refused request.
 */
import type { APIGatewayAuthorizerResult, APIGatewayProxyEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizerResult,
  decideApiKey,
  type KeyLookup,
  stageWildcard,
  UNAUTHORIZED,
} from '../lambdas/authorizer/authorizer.js';
import { makeAuthorizerHandler } from '../lambdas/authorizer/handler.js';
import { type ApiHandler, startApiServer } from '../local/api-server.js';
import { type LocalStack, startLocalStack } from '../local/stack.js';
import {
  ApiKeyStore,
  hashApiKey,
  API_RESOURCES as PIPELINE_API_ROUTES,
  REFUSAL_MESSAGES,
} from '../pipeline/index.js';
import { useLocalStack } from './helpers/local-stack.js';
import { quietObservability } from './helpers/pipeline.js';

const METHOD_ARN = 'arn:aws:execute-api:eu-west-1:123456789012:abc123/v1/GET/studies/s-1';

/** A lookup over a fixed map of hashes, recording what it was asked. */
function lookup(byHash: Record<string, string>): KeyLookup & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async hospitalForHash(hash) {
      asked.push(hash);
      return byHash[hash];
    },
  };
}

describe('the key decision (pure)', () => {
  const keys = lookup({ [hashApiKey('key-of-st-mary')]: 'st-mary' });

  it('allows a stored key as its hospital, metered by its SHA-256; the lookup only ever sees the hash', async () => {
    const decision = await decideApiKey('key-of-st-mary', keys);
    expect(decision).toEqual({
      allow: true,
      hospital: 'st-mary',
      usageIdentifierKey: hashApiKey('key-of-st-mary'),
    });
    expect(hashApiKey('key-of-st-mary')).toMatch(/^[0-9a-f]{64}$/);
    expect(keys.asked.at(-1)).toBe(hashApiKey('key-of-st-mary'));
    expect(keys.asked).not.toContain('key-of-st-mary');
  });

  it('refuses a missing or empty key without a lookup, and an unknown one after it', async () => {
    const before = keys.asked.length;
    expect(await decideApiKey(undefined, keys)).toEqual({ allow: false, reason: 'missing' });
    expect(await decideApiKey('', keys)).toEqual({ allow: false, reason: 'missing' });
    expect(keys.asked).toHaveLength(before);
    expect(await decideApiKey('key-of-st-maryx', keys)).toEqual({ allow: false, reason: 'unknown' });
    expect(await decideApiKey('é'.repeat(100), keys)).toEqual({ allow: false, reason: 'unknown' });
  });

  it('answers Allow for the whole stage (the cached policy serves every route), Deny for an unknown key, 401 for none', () => {
    const allowed = authorizerResult(
      { allow: true, hospital: 'st-mary', usageIdentifierKey: 'f'.repeat(64) },
      METHOD_ARN,
    );
    expect(allowed).toEqual({
      principalId: 'st-mary',
      policyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Action: 'execute-api:Invoke',
            Effect: 'Allow',
            Resource: 'arn:aws:execute-api:eu-west-1:123456789012:abc123/v1/*',
          },
        ],
      },
      context: { hospital: 'st-mary' },
      usageIdentifierKey: 'f'.repeat(64),
    });
    const denied = authorizerResult({ allow: false, reason: 'unknown' }, METHOD_ARN);
    expect(denied.policyDocument.Statement).toEqual([
      { Action: 'execute-api:Invoke', Effect: 'Deny', Resource: METHOD_ARN },
    ]);
    expect(denied.usageIdentifierKey).toBeUndefined();
    expect(denied.context).toBeUndefined();
    expect(() => authorizerResult({ allow: false, reason: 'missing' }, METHOD_ARN)).toThrow(
      new Error(UNAUTHORIZED),
    );
  });

  it('widens a method ARN to its stage, and names a malformed one', () => {
    expect(stageWildcard('arn:aws-cn:execute-api:cn-north-1:1:api/stage/POST/studies')).toBe(
      'arn:aws-cn:execute-api:cn-north-1:1:api/stage/*',
    );
    expect(() => stageWildcard('arn:aws:lambda:eu-west-1:1:function:x')).toThrow(/^methodArn: /);
    expect(() => stageWildcard('arn:aws:execute-api:eu-west-1:1:api')).toThrow(/^methodArn: /);
  });
});

describe('the authorizer handler on the local DynamoDB', () => {
  const stack = useLocalStack();
  it('looks the hash up in the key table and logs neither the key nor its hash', async () => {
    const keys = new ApiKeyStore(stack.clients.dynamo, stack.resources.apiKeyTableName);
    await keys.put('key-of-city', 'city');
    const observed = quietObservability('covidct-authorizer');
    const handler = makeAuthorizerHandler(
      stack.clients,
      { apiKeyTableName: stack.resources.apiKeyTableName },
      observed,
    );
    const allowed = await handler({
      type: 'TOKEN',
      authorizationToken: 'key-of-city',
      methodArn: METHOD_ARN,
    });
    expect(allowed).toMatchObject({
      principalId: 'city',
      usageIdentifierKey: hashApiKey('key-of-city'),
      context: { hospital: 'city' },
    });
    const denied = await handler({
      type: 'TOKEN',
      authorizationToken: 'key-of-cityx',
      methodArn: METHOD_ARN,
    });
    expect(denied.policyDocument.Statement[0]).toMatchObject({ Effect: 'Deny' });
    await expect(handler({ type: 'TOKEN', authorizationToken: '', methodArn: METHOD_ARN })).rejects.toThrow(
      UNAUTHORIZED,
    );
    const logs = JSON.stringify([...observed.lines, ...observed.metricLines]);
    expect(logs).toContain('key refused');
    for (const secret of ['key-of-city', hashApiKey('key-of-city'), hashApiKey('key-of-cityx')]) {
      expect(logs).not.toContain(secret);
    }
    // The key is stored as its hash only.
    expect(await keys.hospitalForHash(hashApiKey('key-of-city'))).toBe('city');
  });
});

describe('the local API server runs the authorizer before the api handler', () => {
  let stack: LocalStack;
  const seen: APIGatewayProxyEvent[] = [];
  beforeAll(async () => {
    stack = await startLocalStack({
      worker: false,
      sweeper: false,
      hospitals: [
        { hospital: 'h1', apiKey: 'key-of-h1' },
        { hospital: 'h2', apiKey: 'key-of-h2' },
      ],
      onError: () => {},
      handlers: {
        api: async (event) => {
          seen.push(event);
          return { statusCode: 200, body: JSON.stringify({ ok: true }) };
        },
      },
    });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  const call = async (path: string, key: string | null, method = 'GET') => {
    const headers: Record<string, string> = key === null ? {} : { 'X-Api-Key': key };
    if (method === 'POST') headers['content-type'] = 'application/json';
    const response = await fetch(`${stack.apiUrl}${path}`, {
      method,
      headers,
      ...(method === 'POST' ? { body: '{"series":[]}' } : {}),
    });
    return { status: response.status, body: (await response.json()) as unknown };
  };

  it('refuses a missing or empty key (401) and an unknown one (403) without invoking the api handler', async () => {
    for (const path of ['/studies', '/studies/s-1', '/studies/s-1/report']) {
      expect(await call(path, null)).toEqual({ status: 401, body: { message: REFUSAL_MESSAGES.missing } });
      expect(await call(path, '')).toEqual({ status: 401, body: { message: REFUSAL_MESSAGES.missing } });
      expect(await call(path, 'not-a-key')).toEqual({
        status: 403,
        body: { message: REFUSAL_MESSAGES.unknown },
      });
      expect(await call(path, 'key-of-h1x')).toEqual({
        status: 403,
        body: { message: REFUSAL_MESSAGES.unknown },
      });
    }
    expect(await call('/studies', 'unknown', 'POST')).toEqual({
      status: 403,
      body: { message: REFUSAL_MESSAGES.unknown },
    });
    expect(seen).toHaveLength(0);
  });

  it('lets a known key through to the api handler with its hospital and usage-identifier key', async () => {
    expect(await call('/studies/s-1/report', 'key-of-h1')).toEqual({ status: 200, body: { ok: true } });
    expect(await call('/studies', 'key-of-h2', 'POST')).toEqual({ status: 200, body: { ok: true } });
    expect(seen).toHaveLength(2);
    expect(seen[0]!.requestContext.authorizer).toEqual({ hospital: 'h1', principalId: 'h1' });
    expect(seen[0]!.requestContext.identity.apiKey).toBe(hashApiKey('key-of-h1'));
    expect(seen[1]!.requestContext.authorizer).toMatchObject({ hospital: 'h2' });
  });

  it('refuses with the real api handler behind it too (the whole local stack, as `covidct dev` runs it)', async () => {
    const real = await startLocalStack({
      worker: false,
      sweeper: false,
      hospitals: [{ hospital: 'h1', apiKey: 'key-of-h1' }],
      onError: () => {},
    });
    try {
      const list = await fetch(`${real.apiUrl}/studies`, { headers: { 'x-api-key': 'key-of-h1' } });
      expect(list.status).toBe(200);
      const denied = await fetch(`${real.apiUrl}/studies`, { headers: { 'x-api-key': 'key-of-h9' } });
      expect(denied.status).toBe(403);
      expect(await denied.json()).toEqual({ message: REFUSAL_MESSAGES.unknown });
    } finally {
      await real.stop();
    }
  }, 60_000);
});

describe('the API server’s authorizer emulation', () => {
  const calls: string[] = [];
  const handler: ApiHandler = async (event) => {
    calls.push(event.path);
    return { statusCode: 200, body: '{}' };
  };
  const messages = { unauthorized: 'no key', accessDenied: 'bad key' };

  it('applies the policy to the method (Deny wins, Allow must cover it) and answers 500 when the authorizer fails', async () => {
    const api = await startApiServer({
      handler,
      routes: PIPELINE_API_ROUTES,
      onError: () => {},
      authorizer: {
        header: 'x-api-key',
        messages,
        handler: async (event): Promise<APIGatewayAuthorizerResult> => {
          if (event.authorizationToken === 'boom') throw new Error('table unreachable');
          if (event.authorizationToken === 'unauthorized') throw new Error(UNAUTHORIZED);
          const resource =
            event.authorizationToken === 'reports-only'
              ? event.methodArn.replace(/\/GET\/.*$/, '/GET/studies/*/report')
              : stageWildcard(event.methodArn);
          return {
            principalId: 'p',
            policyDocument: {
              Version: '2012-10-17',
              Statement: [
                { Action: 'execute-api:Invoke', Effect: 'Allow' as const, Resource: resource },
                ...(event.authorizationToken === 'denied'
                  ? [{ Action: 'execute-api:*', Effect: 'Deny' as const, Resource: '*' }]
                  : []),
              ],
            },
          };
        },
      },
    });
    const status = async (path: string, key: string) =>
      (await fetch(`${api.url}${path}`, { headers: { 'x-api-key': key } })).status;
    try {
      expect(await status('/studies/s-1/report', 'reports-only')).toBe(200);
      expect(await status('/studies/s-1', 'reports-only')).toBe(403);
      expect(await status('/studies', 'denied')).toBe(403);
      expect(await status('/studies', 'unauthorized')).toBe(401);
      const failed = await fetch(`${api.url}/studies`, { headers: { 'x-api-key': 'boom' } });
      expect(failed.status).toBe(500);
      expect(await failed.json()).toEqual({ message: null });
      expect(await status('/studies', 'anyone')).toBe(200);
      expect(calls).toEqual(['/studies/s-1/report', '/studies']);
      // Routes no resource matches are API Gateway's 403 before any authorizer.
      expect(await status('/nowhere', 'anyone')).toBe(403);
    } finally {
      await api.stop();
    }
  });
});
