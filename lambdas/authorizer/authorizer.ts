/**
 * The API's key check, before any route runs: API Gateway hands the `x-api-key` value to a TOKEN
 * authorizer (lambdas/authorizer/handler.ts); this decides from the key's SHA-256 alone. A known
 * key is allowed with the hospital as principal and context, and its SHA-256 as the
 * `usageIdentifierKey`, which API Gateway (API key source AUTHORIZER) matches against the API keys
 * of the usage plans: the hospital's own throttle and quota apply, and the usage-plan key's value
 * is that hash, so no plaintext key is stored on AWS. An unknown key is denied (403) and a missing
 * one unauthorized (401), and the api Lambda never runs for either. The local stack runs the same
 * handler in front of the api handler (local/api-server.ts).
 */
import type { APIGatewayAuthorizerResult } from 'aws-lambda';
import type { REFUSAL_MESSAGES } from '../../pipeline/index.js';
import { hashApiKey } from '../../pipeline/index.js';

/**
 * The error message by which a Lambda authorizer asks API Gateway for a 401 (any other thrown
 * error is a 500): API Gateway's documented convention.
 */
export const UNAUTHORIZED = 'Unauthorized';

/** Finds the hospital of a key's SHA-256 (the API-key table on AWS and locally). */
export interface KeyLookup {
  hospitalForHash(keySha256: string): Promise<string | undefined>;
}

/** What the authorizer decided about one key. */
export type KeyDecision =
  | {
      readonly allow: true;
      readonly hospital: string;
      /** The key's SHA-256: API Gateway meters the request against the usage-plan key of this value. */
      readonly usageIdentifierKey: string;
    }
  | { readonly allow: false; readonly reason: keyof typeof REFUSAL_MESSAGES };

/** Decide on a key: missing (absent or empty), unknown (its hash not stored) or the hospital's. */
export async function decideApiKey(apiKey: string | undefined, keys: KeyLookup): Promise<KeyDecision> {
  if (apiKey === undefined || apiKey === '') return { allow: false, reason: 'missing' };
  const keySha256 = hashApiKey(apiKey);
  const hospital = await keys.hospitalForHash(keySha256);
  if (hospital === undefined) return { allow: false, reason: 'unknown' };
  return { allow: true, hospital, usageIdentifierKey: keySha256 };
}

/**
 * Every method of the stage a method ARN belongs to (`arn:…:execute-api:region:account:api/stage/*`):
 * API Gateway caches the policy per key for the authorizer's TTL and reuses it for the key's other
 * routes, so a policy naming only the first route would refuse the rest.
 */
export function stageWildcard(methodArn: string): string {
  const [prefix, path] = splitArn(methodArn);
  const [apiId, stage] = path.split('/');
  if (!apiId || !stage) throw new Error(`methodArn: '${methodArn}' is not an execute-api method ARN`);
  return `${prefix}${apiId}/${stage}/*`;
}

function splitArn(arn: string): [string, string] {
  const parts = arn.split(':');
  if (parts.length < 6 || parts[2] !== 'execute-api') {
    throw new Error(`methodArn: '${arn}' is not an execute-api method ARN`);
  }
  const prefix = `${parts.slice(0, 5).join(':')}:`;
  return [prefix, parts.slice(5).join(':')];
}

/**
 * The authorizer's answer for a decision: Allow (stage-wide) with the hospital and the
 * usage-identifier key, Deny for an unknown key; a missing key throws {@link UNAUTHORIZED} (401).
 */
export function authorizerResult(decision: KeyDecision, methodArn: string): APIGatewayAuthorizerResult {
  if (!decision.allow && decision.reason === 'missing') throw new Error(UNAUTHORIZED);
  const allow = decision.allow;
  return {
    principalId: allow ? decision.hospital : 'unknown',
    policyDocument: {
      Version: '2012-10-17',
      Statement: [
        {
          Action: 'execute-api:Invoke',
          Effect: allow ? 'Allow' : 'Deny',
          Resource: allow ? stageWildcard(methodArn) : methodArn,
        },
      ],
    },
    ...(allow
      ? { context: { hospital: decision.hospital }, usageIdentifierKey: decision.usageIdentifierKey }
      : {}),
  };
}
