/**
 * The gateway's log: one JSON line per event (Powertools' logger, as the worker and the Lambdas
 * log). Events name studies and runs by the gateway's own keys and the cloud's study ids only,
 * never a patient's name, id or UIDs.
 */
import { Logger } from '@aws-lambda-powertools/logger';

/** What the gateway logs through. */
export interface GatewayLog {
  info(message: string, attributes?: Record<string, unknown>): void;
  warn(message: string, attributes?: Record<string, unknown>): void;
  error(message: string, attributes?: Record<string, unknown>): void;
}

/** The gateway's log on stdout, as JSON lines. */
export function gatewayLogger(): GatewayLog {
  const logger = new Logger({ serviceName: 'covidct-gateway' });
  return {
    info: (message, attributes) => logger.info(message, attributes ?? {}),
    warn: (message, attributes) => logger.warn(message, attributes ?? {}),
    error: (message, attributes) => logger.error(message, attributes ?? {}),
  };
}
