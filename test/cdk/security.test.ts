/**
 * The synthesized CDK stack's protection of data: encryption, public access and TLS, and least
 * privilege (the API's TOKEN authorizer, per-hospital usage plans, each role's S3 keys and
 * tables, the worker's instance metadata).
 */
import { Match } from 'aws-cdk-lib/assertions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_TASK_IMDS_COMMANDS } from '../../cdk/constructs/inference.js';
import {
  API_KEY_HEADER,
  DEFAULT_SETTINGS,
  ENV,
  heatmapKey,
  KEYS,
  REFUSAL_MESSAGES,
  reportKey,
} from '../../pipeline/index.js';
import {
  actionsOf,
  build,
  HOSPITALS,
  idOf,
  keyMatches,
  ofType,
  ref,
  resources,
  type Statement,
  s3KeyPatterns,
  stack,
  statementsOf,
  synthesize,
  template,
} from './stack.js';

beforeAll(synthesize);

describe('encryption, public access and TLS', () => {
  it('encrypts the bucket, every queue, the table and both topics with the stack key', () => {
    const key = { 'Fn::GetAtt': [idOf(stack.key), 'Arn'] };
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          { ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: key } },
        ],
      },
      VersioningConfiguration: { Status: 'Enabled' },
    });
    const queues = ofType('AWS::SQS::Queue');
    expect(queues).toHaveLength(6);
    for (const [id, q] of queues) {
      expect(q.Properties.KmsMasterKeyId, id).toBeDefined();
    }
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: key },
    });
    const topics = ofType('AWS::SNS::Topic');
    expect(topics).toHaveLength(2);
    for (const [id, t] of topics) expect(t.Properties.KmsMasterKeyId, id).toBeDefined();
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    for (const [id, k] of ofType('AWS::KMS::Key')) expect(k.Properties.EnableKeyRotation, id).toBe(true);
  });

  it('blocks all public access and denies plain HTTP on both buckets', () => {
    const buckets = ofType('AWS::S3::Bucket');
    expect(buckets).toHaveLength(2);
    for (const [id, b] of buckets) {
      expect(b.Properties.PublicAccessBlockConfiguration, id).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
    }
    for (const bucket of [stack.storage.bucket, stack.storage.accessLogs]) {
      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: ref(bucket),
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Principal: { AWS: '*' },
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
    // Queues and topics refuse plain HTTP too.
    expect(ofType('AWS::SQS::QueuePolicy').length).toBeGreaterThanOrEqual(6);
  });

  it('logs access to the data bucket, expires uploads after the setting, keeps results', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LoggingConfiguration: { DestinationBucketName: ref(stack.storage.accessLogs) },
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({
            Prefix: KEYS.incoming,
            ExpirationInDays: DEFAULT_SETTINGS.incomingExpirationDays,
            Status: 'Enabled',
          }),
        ]),
      },
    });
    const data = resources[idOf(stack.storage.bucket)]!;
    const rules = (data.Properties.LifecycleConfiguration as { Rules: Array<Record<string, unknown>> }).Rules;
    for (const rule of rules) {
      if (rule.Prefix !== KEYS.incoming) expect(rule.ExpirationInDays).toBeUndefined();
    }
    expect(data.Properties.CorsConfiguration).toBeUndefined();
  });
});

describe('least privilege and per-hospital limits', () => {
  const roleOf = (fn: lambda.Function) => fn.role!;

  it('puts a TOKEN authorizer on x-api-key in front of every method, with keys required and taken from it', () => {
    const fnArn = { 'Fn::GetAtt': [idOf(stack.api.authorizerFunction.function), 'Arn'] };
    template.hasResourceProperties('AWS::ApiGateway::Authorizer', {
      Type: 'TOKEN',
      IdentitySource: `method.request.header.${API_KEY_HEADER}`,
      AuthorizerResultTtlInSeconds: DEFAULT_SETTINGS.authorizerCacheSeconds,
    });
    const authorizers = ofType('AWS::ApiGateway::Authorizer');
    expect(authorizers).toHaveLength(1);
    expect(JSON.stringify(authorizers[0]![1].Properties.AuthorizerUri)).toContain(JSON.stringify(fnArn));
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { ApiKeySourceType: 'AUTHORIZER' });
    const methods = ofType('AWS::ApiGateway::Method').filter(
      ([, m]) => m.Properties.HttpMethod !== 'OPTIONS',
    );
    expect(methods).toHaveLength(4);
    for (const [id, m] of methods) {
      expect(m.Properties.AuthorizationType, id).toBe('CUSTOM');
      expect(m.Properties.AuthorizerId, id).toEqual({ Ref: authorizers[0]![0] });
      expect(m.Properties.ApiKeyRequired, id).toBe(true);
    }
    // Refusals answer with the api Lambda's (and the local stack's) one-line messages.
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'UNAUTHORIZED',
      StatusCode: '401',
      ResponseTemplates: { 'application/json': JSON.stringify({ message: REFUSAL_MESSAGES.missing }) },
    });
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'ACCESS_DENIED',
      StatusCode: '403',
      ResponseTemplates: { 'application/json': JSON.stringify({ message: REFUSAL_MESSAGES.unknown }) },
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'apigateway.amazonaws.com',
      FunctionName: fnArn,
    });
    expect(resources[idOf(stack.api.authorizerFunction.function)]!.Properties.Environment).toEqual({
      Variables: expect.objectContaining({ [ENV.apiKeyTable]: ref(stack.api.keyTable) }),
    });
  });

  it('gives each configured hospital one usage plan with its throttle and daily quota, keyed by its key hash', () => {
    const plans = ofType('AWS::ApiGateway::UsagePlan');
    expect(plans).toHaveLength(HOSPITALS.length);
    const stage = ref(stack.api.api.deploymentStage);
    for (const h of HOSPITALS) {
      const [planId, plan] = plans.find(([, p]) => p.Properties.UsagePlanName === `Test-${h.id}`)!;
      expect(plan.Properties.Throttle, h.id).toEqual({
        RateLimit: h.rateLimit ?? DEFAULT_SETTINGS.hospitalRateLimit,
        BurstLimit: h.burstLimit ?? DEFAULT_SETTINGS.hospitalBurstLimit,
      });
      expect(plan.Properties.Quota, h.id).toEqual({
        Limit: h.quotaPerDay ?? DEFAULT_SETTINGS.hospitalQuotaPerDay,
        Period: 'DAY',
      });
      expect(plan.Properties.ApiStages, h.id).toMatchObject([{ ApiId: ref(stack.api.api), Stage: stage }]);
      const [keyId] = ofType('AWS::ApiGateway::ApiKey').find(([, k]) => k.Properties.Value === h.keySha256)!;
      template.hasResourceProperties('AWS::ApiGateway::UsagePlanKey', {
        KeyId: { Ref: keyId },
        KeyType: 'API_KEY',
        UsagePlanId: { Ref: planId },
      });
    }
    template.resourceCountIs('AWS::ApiGateway::ApiKey', HOSPITALS.length);
    // No plaintext key anywhere in the template.
    expect(JSON.stringify(template.toJSON())).not.toContain('key-of-st-mary');
    // Without hospitals there is no plan, so no key can pass.
    const bare = build(DEFAULT_SETTINGS).template;
    bare.resourceCountIs('AWS::ApiGateway::UsagePlan', 0);
    bare.resourceCountIs('AWS::ApiGateway::ApiKey', 0);
  });

  it('lets the aggregate Lambda read nothing in S3 (it decides from the recorded selection)', () => {
    const role = roleOf(stack.results.aggregate.function);
    expect(s3KeyPatterns(role, /^s3:GetObject/)).toEqual([]);
    // It writes the report, and nothing under incoming/.
    expect(s3KeyPatterns(role, /^s3:PutObject/)).toEqual([`${KEYS.results}*`]);
  });

  it('lets the worker write heatmaps only, never a report', () => {
    const role = stack.inference.taskDefinition.taskRole;
    const writes = s3KeyPatterns(role, /^s3:PutObject/);
    expect(writes).toEqual([`${KEYS.results}*/heatmaps/*`]);
    const heatmap = heatmapKey(
      'st-mary',
      'study-1',
      'series-1',
      'incoming/st-mary/study-1/series-1/slice-0001.dcm',
    );
    expect(writes.some((p) => keyMatches(p, heatmap))).toBe(true);
    expect(writes.some((p) => keyMatches(p, reportKey('st-mary', 'study-1')))).toBe(false);
  });

  it('grants the API-key table to the authorizer and the api Lambda only, and the authorizer nothing else', () => {
    const keyTableId = idOf(stack.api.keyTable);
    const allowed = [roleOf(stack.api.authorizerFunction.function), roleOf(stack.api.handler.function)].map(
      (r) => JSON.stringify(ref(r)),
    );
    const granted = ofType('AWS::IAM::Policy').filter(([, p]) =>
      JSON.stringify(p.Properties.PolicyDocument).includes(`"${keyTableId}"`),
    );
    expect(granted.length).toBeGreaterThan(0);
    for (const [id, p] of granted) {
      const roles = JSON.stringify(p.Properties.Roles);
      expect(
        allowed.some((r) => roles.includes(r)),
        id,
      ).toBe(true);
    }
    for (const role of allowed)
      expect(granted.some(([, p]) => JSON.stringify(p.Properties.Roles).includes(role))).toBe(true);
    // Read only: neither may write a key.
    for (const [, p] of granted) {
      for (const s of (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement) {
        if (!JSON.stringify(s.Resource).includes(`"${keyTableId}"`)) continue;
        expect(actionsOf(s).filter((a) => /Put|Update|Delete|BatchWrite/.test(a))).toEqual([]);
      }
    }
    // The authorizer touches neither the pipeline's table nor the bucket.
    const authorizer = JSON.stringify(statementsOf(roleOf(stack.api.authorizerFunction.function)));
    expect(authorizer).toContain('dynamodb:GetItem');
    expect(authorizer).not.toContain(`"${idOf(stack.results.table)}"`);
    expect(authorizer).not.toMatch(/"s3:|"sqs:|"sns:/);
  });

  it('keeps worker containers away from the instance role: IMDSv2 with hop limit 1, IMDS dropped for tasks', () => {
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        MetadataOptions: Match.objectLike({ HttpTokens: 'required', HttpPutResponseHopLimit: 1 }),
      }),
    });
    const [, lt] = ofType('AWS::EC2::LaunchTemplate')[0]!;
    const userData = JSON.stringify((lt.Properties.LaunchTemplateData as { UserData: unknown }).UserData);
    expect(userData).toContain('ECS_AWSVPC_BLOCK_IMDS=true');
    expect(userData).toContain('--destination 169.254.169.254/32 --jump DROP');
    for (const command of BLOCK_TASK_IMDS_COMMANDS)
      expect(userData).toContain(JSON.stringify(command).slice(1, -1));
    // The worker runs in bridge mode (the iptables rule's interface) and its credentials are the task role's.
    const task = resources[idOf(stack.inference.taskDefinition)]!.Properties;
    expect(task.NetworkMode ?? 'bridge').toBe('bridge');
    expect(task.TaskRoleArn).toBeDefined();
  });
});
