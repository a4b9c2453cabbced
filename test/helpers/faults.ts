/**
 * Fault injection for the local stack: an AWS SDK v3 middleware added to the real clients the
 * handlers use (pipeline/clients.ts: injectable, so the Lambdas on the local stack share the
 * stack's clients). It sits inside the SDK's retry loop, so what it injects is what AWS would do:
 *
 * - `throttle`: the call is refused with ThrottlingException (the SDK backs off and retries; past its
 *   attempts the error reaches the handler and SQS redelivers the message);
 * - `error`: an HTTP 500 InternalError, retried the same way;
 * - `lost-response`: the call is carried out, then the response is lost (a 500 after the fact): the
 *   retry repeats a write that already happened (a conditional put finds its item, a send sends twice);
 * - `duplicate`: an SQS send is carried out twice (at-least-once delivery: the consumer sees it twice);
 * - `drop`: the call answers success without being carried out (a message lost on the way).
 *
 * Decisions come from a seeded generator, so a failing run can be repeated with its seed.
 */
import type { AwsClients } from '../../pipeline/index.js';

/** The services the middleware can fail. */
export type FaultService = 's3' | 'dynamodb' | 'sqs' | 'sns';

/** What happens to a call the rule picks. */
export type FaultMode = 'throttle' | 'error' | 'lost-response' | 'duplicate' | 'drop';

/** One fault rule: which calls, how often, what happens. */
export interface FaultRule {
  readonly service: FaultService;
  readonly mode: FaultMode;
  /** Probability that a matching call (each attempt) is hit. */
  readonly rate: number;
  /** Only commands whose name matches (`PutItemCommand`, `SendMessageBatchCommand`, …). */
  readonly command?: RegExp;
  /** Only calls whose input (as JSON) matches: e.g. one study's id. */
  readonly input?: RegExp;
  /** Hit at most this many calls (attempts), then let them through. @default no limit */
  readonly limit?: number;
}

/** Mulberry32: a small seeded generator (fault decisions are repeatable from the seed). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An error shaped like the one the SDK makes of a service's error response. */
function serviceError(name: string, status: number, message: string): Error {
  const error = new Error(message) as Error & { $metadata: unknown; $fault: string };
  error.name = name;
  error.$metadata = { httpStatusCode: status, attempts: 1, totalRetryDelay: 0 };
  error.$fault = status >= 500 ? 'server' : 'client';
  return error;
}

type AnyMiddlewareStack = {
  add(middleware: unknown, options: Record<string, unknown>): void;
  remove(nameOrMiddleware: string): boolean;
};

/** Injects faults into the clients it is attached to, while rules are on. */
export class FaultInjector {
  private rules: readonly FaultRule[] = [];
  private readonly hits = new Map<FaultRule, number>();
  private readonly random: () => number;
  private readonly attached: AnyMiddlewareStack[] = [];
  private readonly name: string;
  /** Faults injected, by `service:mode`. */
  readonly injected = new Map<string, number>();

  constructor(readonly seed: number) {
    this.random = seededRandom(seed);
    this.name = `covidct-faults-${seed}-${Math.random().toString(36).slice(2)}`;
  }

  /** Add the middleware to the clients (S3, SQS, SNS and the DynamoDB client under the DocumentClient). */
  attach(clients: AwsClients): this {
    const services: Array<[FaultService, { middlewareStack: unknown }]> = [
      ['s3', clients.s3],
      ['sqs', clients.sqs],
      ['sns', clients.sns],
      // The DocumentClient shares its DynamoDBClient's stack.
      ['dynamodb', clients.dynamo],
    ];
    for (const [service, client] of services) {
      const stack = client.middlewareStack as AnyMiddlewareStack;
      stack.add(this.middleware(service), { step: 'deserialize', name: this.name, override: true });
      this.attached.push(stack);
    }
    return this;
  }

  /** Remove the middleware from every client it was added to. */
  detach(): void {
    for (const stack of this.attached.splice(0)) stack.remove(this.name);
  }

  /** Switch rules on (replacing the current ones); `off()` or a new `on()` ends them. */
  on(rules: readonly FaultRule[]): void {
    this.rules = rules;
  }

  /** No more faults. */
  off(): void {
    this.rules = [];
  }

  /** Rules on for `ms`, then off. */
  async during(rules: readonly FaultRule[], ms: number): Promise<void> {
    this.on(rules);
    await new Promise((r) => setTimeout(r, ms));
    this.off();
  }

  /** Total faults injected so far. */
  total(): number {
    let n = 0;
    for (const v of this.injected.values()) n += v;
    return n;
  }

  private pick(service: FaultService, command: string, input: unknown): FaultRule | undefined {
    for (const rule of this.rules) {
      if (rule.service !== service) continue;
      if (rule.command && !rule.command.test(command)) continue;
      if (rule.input && !rule.input.test(JSON.stringify(input ?? null))) continue;
      const hits = this.hits.get(rule) ?? 0;
      if (rule.limit !== undefined && hits >= rule.limit) continue;
      if (this.random() < rule.rate) {
        this.hits.set(rule, hits + 1);
        return rule;
      }
    }
    return undefined;
  }

  private middleware(service: FaultService) {
    // The SDK's handler types are generic over every command; the middleware only passes them on.
    type Next = (args: { input: unknown }) => Promise<unknown>;
    return (next: Next, context: { commandName?: string }) => async (args: { input: unknown }) => {
      const command = context.commandName ?? '';
      const rule = this.pick(service, command, args.input);
      if (!rule) return next(args);
      const key = `${service}:${rule.mode}`;
      this.injected.set(key, (this.injected.get(key) ?? 0) + 1);
      switch (rule.mode) {
        case 'throttle':
          throw serviceError(
            service === 'dynamodb' ? 'ProvisionedThroughputExceededException' : 'ThrottlingException',
            400,
            `injected: ${command} throttled`,
          );
        case 'error':
          throw serviceError('InternalError', 500, `injected: ${command} failed`);
        case 'lost-response':
          await next(args);
          throw serviceError('InternalError', 500, `injected: ${command} response lost`);
        case 'duplicate': {
          const first = await next(args);
          await next(args);
          return first;
        }
        case 'drop':
          // An HTTP 200 without the call, for the SDK's deserializer (outside this middleware) to read:
          // only meaningful for SQS sends, whose JSON answer may list nothing.
          return {
            response: {
              statusCode: 200,
              headers: { 'content-type': 'application/x-amz-json-1.0' },
              body: new TextEncoder().encode(
                JSON.stringify({ Successful: [], Failed: [], MessageId: 'dropped' }),
              ),
            },
          };
      }
    };
  }
}

/** Lose the response of the first conditional status transition to `to`: the write is carried out, the SDK retries it and fails the condition. */
export function lostTransitionResponse(to: 'CLASSIFYING' | 'COMPLETE'): FaultRule {
  return {
    service: 'dynamodb',
    mode: 'lost-response',
    rate: 1,
    limit: 1,
    command: /UpdateItem/,
    input: new RegExp(`":to":(\\{"S":)?"${to}"`),
  };
}
