/** What Lambda gives a handler besides its event, for the local stack's invocations. */
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';

/** A Lambda context whose remaining time counts down from the function's timeout. */
export function lambdaContext(options: {
  readonly timeoutSeconds: number;
  readonly functionName: string;
  readonly region?: string;
  readonly overrides?: Partial<Context> | undefined;
}): Context {
  const deadline = Date.now() + options.timeoutSeconds * 1000;
  const functionName = options.overrides?.functionName ?? options.functionName;
  const unsupported = (): never => {
    throw new Error('callback-style Lambda context methods are not supported locally');
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${options.region ?? 'us-east-1'}:000000000000:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: `local/${randomUUID()}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
    ...options.overrides,
  };
}

/** The error Lambda reports for a handler that ran past its timeout. */
export class HandlerTimeoutError extends Error {
  constructor(seconds: number) {
    super(`Task timed out after ${seconds.toFixed(2)} seconds`);
    this.name = 'HandlerTimeoutError';
  }
}

/**
 * The handler's promise, or a {@link HandlerTimeoutError} at its timeout. In-process the handler
 * cannot be killed as Lambda kills it: it runs on, but its result is ignored.
 */
export function withTimeout<T>(promise: Promise<T>, seconds: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HandlerTimeoutError(seconds)), seconds * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
