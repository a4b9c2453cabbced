/**
 * authorizer Lambda (API Gateway TOKEN authorizer on `x-api-key`): the key's SHA-256 looked up in
 * the API-key table, then authorizer.ts decides. A thin handler: the table lookup is the only I/O.
 */
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { APIGatewayAuthorizerResult, APIGatewayTokenAuthorizerEvent, Context } from 'aws-lambda';
import {
  ApiKeyStore,
  type AwsClients,
  createObservability,
  ENV,
  lazyHandler,
  METRIC,
  type Observability,
  requireEnv,
  sharedClients,
} from '../../pipeline/index.js';
import { authorizerResult, decideApiKey } from './authorizer.js';

/** What the authorizer is configured with. */
export interface AuthorizerConfig {
  /** The API-key table. */
  readonly apiKeyTableName: string;
}

/** The configuration from the environment (ENV names). */
export function authorizerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): AuthorizerConfig {
  return { apiKeyTableName: requireEnv(ENV.apiKeyTable, env) };
}

/** A TOKEN authorizer. */
export type TokenAuthorizerHandler = (
  event: APIGatewayTokenAuthorizerEvent,
  context?: Context,
) => Promise<APIGatewayAuthorizerResult>;

/** The handler over given clients and configuration (tests and the local stack pass their own). */
export function makeAuthorizerHandler(
  clients: Pick<AwsClients, 'dynamo'>,
  config: AuthorizerConfig,
  observability: Observability = createObservability('covidct-authorizer'),
): TokenAuthorizerHandler {
  const { logger, metrics } = observability;
  const keys = new ApiKeyStore(clients.dynamo, config.apiKeyTableName);
  return async (event) => {
    try {
      const decision = await decideApiKey(event.authorizationToken, keys);
      // Never the key or its hash in logs: the hospital, or that the key was refused.
      if (decision.allow) logger.debug('key accepted', { hospital: decision.hospital });
      else {
        logger.info('key refused', { reason: decision.reason });
        metrics.addMetric(METRIC.ApiKeysRefused, MetricUnit.Count, 1);
      }
      return authorizerResult(decision, event.methodArn);
    } finally {
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    }
  };
}

/** The Lambda entry point (clients and configuration made on the first call, so importing is free). */
export const handler = lazyHandler(() => makeAuthorizerHandler(sharedClients(), authorizerConfigFromEnv()));
