/**
 * The CDK stack the suites in test/cdk/ check, synthesized here (no AWS account) with two
 * hospitals, and the look-ups they share: resources by type, logical ids, the queue behind a
 * queue id, and the IAM statements and S3 key patterns a role is given.
 *
 * Lambda code is given inline and the worker image by name so no test bundles or stages Docker
 * context; `npx cdk synth` bundles for real (CI runs it).
 */
import { App, type CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { IConstruct } from 'constructs';
import { CovidCtStack } from '../../cdk/stack.js';
import type { QueueId } from '../../pipeline/index.js';
import { DEFAULT_SETTINGS, type DeploymentSettings, hashApiKey } from '../../pipeline/index.js';

/** A resource of the synthesized template. */
export type Resource = { Type: string; Properties: Record<string, unknown>; DependsOn?: unknown };

/** Two hospitals: one on the default limits, one with its own (keys are SHA-256 of made-up keys). */
export const HOSPITALS: DeploymentSettings['hospitals'] = [
  { id: 'st-mary', keySha256: hashApiKey('key-of-st-mary') },
  {
    id: 'city-general',
    keySha256: hashApiKey('key-of-city-general'),
    rateLimit: 2,
    burstLimit: 4,
    quotaPerDay: 500,
  },
];

/** Synthesize the stack with `settings` (by default two hospitals), inline Lambda code and a named worker image. */
export function build(settings: DeploymentSettings = { ...DEFAULT_SETTINGS, hospitals: HOSPITALS }) {
  // The built-in CloudFormation schema validation costs ~10 s per synth; `cdk synth` keeps it on.
  const app = new App({ builtinCloudFormationValidation: false });
  const stack = new CovidCtStack(app, 'Test', {
    settings,
    functionCode: () => lambda.Code.fromInline('export const handler = async () => ({});'),
    workerImage: ecs.ContainerImage.fromRegistry('example.invalid/covidct-worker:test'),
    subscriptions: [{ hospital: 'st-mary', protocol: 'https', endpoint: 'https://st-mary.example/hook' }],
  });
  return { app, stack, template: Template.fromStack(stack) };
}

/** The logical id of a construct's CloudFormation resource. */
export const idOf = (c: IConstruct): string => Stack.of(c).getLogicalId(c.node.defaultChild as CfnElement);
/** A `{ Ref }` to a construct's resource. */
export const ref = (c: IConstruct) => ({ Ref: idOf(c) });

/** The default stack (two hospitals), set by {@link synthesize}: call it in a `beforeAll`. */
export let stack: CovidCtStack;
/** {@link stack}'s template. */
export let template: Template;
/** {@link template}'s resources by logical id. */
export let resources: Record<string, Resource>;

/** Synthesize the default stack into {@link stack}, {@link template} and {@link resources}. */
export function synthesize(): void {
  ({ stack, template } = build());
  resources = template.toJSON().Resources as Record<string, Resource>;
}

/** The resources of one CloudFormation type, with their logical ids. */
export const ofType = (type: string): Array<[string, Resource]> =>
  Object.entries(resources).filter(([, r]) => r.Type === type);

/** The construct of a shared queue definition. */
export function queueOf(id: QueueId) {
  return { ingest: stack.ingest.queue, inference: stack.inference.queue, votes: stack.results.votesQueue }[
    id
  ];
}

/** The statements of every inline policy attached to a role. */
export function statementsOf(role: IConstruct): Statement[] {
  const roleRef = JSON.stringify(ref(role));
  return ofType('AWS::IAM::Policy')
    .filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(roleRef))
    .flatMap(([, p]) => (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement);
}
/** An IAM policy statement as synthesized. */
export type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };
/** A statement's actions as a list. */
export const actionsOf = (s: Statement) => ([] as string[]).concat(s.Action);
const resourcesOf = (s: Statement) => ([] as unknown[]).concat(s.Resource);

/** The object-key patterns (after the bucket ARN) a role may use an S3 action on. */
export function s3KeyPatterns(role: IConstruct, action: RegExp): string[] {
  const patterns: string[] = [];
  for (const s of statementsOf(role)) {
    if (s.Effect !== 'Allow' || !actionsOf(s).some((a) => action.test(a))) continue;
    for (const r of resourcesOf(s)) {
      const join = (r as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
      const tail = join?.[1].at(-1);
      if (typeof tail === 'string' && tail.startsWith('/')) patterns.push(tail.slice(1));
    }
  }
  return patterns;
}

/** Whether an IAM resource pattern (`*` matches across `/`) matches an object key. */
export const keyMatches = (pattern: string, key: string) =>
  new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(key);

/** The stack's five Lambdas: select, aggregate, api, authorizer, sweeper. */
export function lambdas() {
  return [
    stack.ingest.select,
    stack.results.aggregate,
    stack.api.handler,
    stack.api.authorizerFunction,
    stack.results.sweeper,
  ];
}
