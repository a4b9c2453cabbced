/**
 * The synthesized CDK stack's compute and operations: the GPU task and its scaling from zero, the
 * API's key check, throttling and logging, the alarms and log retention.
 */
import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { API_KEY_HEADER, DEFAULT_SETTINGS, ENV, KEYS, QUEUES, type QueueId } from '../../pipeline/index.js';
import { idOf, lambdas, ofType, queueOf, ref, resources, stack, synthesize, template } from './stack.js';

beforeAll(synthesize);

describe('inference on GPUs', () => {
  it('asks for one GPU and wires the container health check to the worker health port', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          ResourceRequirements: [{ Type: 'GPU', Value: '1' }],
          Environment: Match.arrayWith([
            { Name: ENV.model, Value: DEFAULT_SETTINGS.model },
            { Name: 'COVIDCT_HEALTH_PORT', Value: '8080' },
          ]),
          HealthCheck: Match.objectLike({
            Command: ['CMD-SHELL', Match.stringLikeRegexp('127\\.0\\.0\\.1:8080/health')],
          }),
        }),
      ],
    });
  });

  it('runs on the ECS GPU AMI with managed scaling and termination protection', () => {
    template.hasResourceProperties('AWS::ECS::CapacityProvider', {
      AutoScalingGroupProvider: {
        ManagedScaling: Match.objectLike({ Status: 'ENABLED' }),
        ManagedTerminationProtection: 'ENABLED',
      },
    });
    template.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', {
      MinSize: '0',
      MaxSize: String(DEFAULT_SETTINGS.maxGpuTasks),
      NewInstancesProtectedFromScaleIn: true,
    });
    const params = template.toJSON().Parameters as Record<string, { Default?: string }>;
    expect(
      Object.values(params).some((p) => /amazon-linux-2023\/gpu\/recommended/.test(p.Default ?? '')),
    ).toBe(true);
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        InstanceType: DEFAULT_SETTINGS.gpuInstanceType,
        MetadataOptions: Match.objectLike({ HttpTokens: 'required' }),
        BlockDeviceMappings: [Match.objectLike({ Ebs: Match.objectLike({ Encrypted: true }) })],
      }),
    });
  });

  it('scales from zero on visible messages per running task, with a step to leave zero', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 0,
      MaxCapacity: DEFAULT_SETTINGS.maxGpuTasks,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    const queueName = { 'Fn::GetAtt': [idOf(stack.inference.queue.queue), 'QueueName'] };
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: DEFAULT_SETTINGS.backlogPerTask,
        CustomizedMetricSpecification: {
          Metrics: [
            Match.objectLike({
              Id: 'visible',
              MetricStat: Match.objectLike({
                Metric: Match.objectLike({
                  MetricName: 'ApproximateNumberOfMessagesVisible',
                  Dimensions: [{ Name: 'QueueName', Value: queueName }],
                }),
              }),
            }),
            Match.objectLike({
              Id: 'running',
              MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'RunningTaskCount' }) }),
            }),
            Match.objectLike({ Expression: 'visible / running', ReturnData: true }),
          ],
        },
      }),
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'StepScaling',
      StepScalingPolicyConfiguration: Match.objectLike({
        AdjustmentType: 'ExactCapacity',
        StepAdjustments: [{ MetricIntervalLowerBound: 0, ScalingAdjustment: 1 }],
      }),
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Threshold: 1,
      Metrics: Match.arrayWith([Match.objectLike({ Expression: 'IF(FILL(running, 0) < 1, visible, 0)' })]),
    });
  });

  it('lets the worker read incoming/ and models/, write results/, consume and send, and never touch DynamoDB', () => {
    const taskRole = stack.inference.taskDefinition.taskRole;
    const policies = ofType('AWS::IAM::Policy').filter(([, p]) =>
      JSON.stringify(p.Properties.Roles).includes(idOf(taskRole)),
    );
    const text = JSON.stringify(policies.map(([, p]) => p.Properties.PolicyDocument));
    expect(text).not.toMatch(/dynamodb:/);
    expect(text).toMatch(/sqs:ReceiveMessage/);
    expect(text).toMatch(/sqs:SendMessage/);
    for (const prefix of [KEYS.incoming, KEYS.models, KEYS.results]) expect(text).toContain(`/${prefix}*`);
    expect(text).not.toMatch(/"s3:PutObject[^"]*"[^\]]*\/incoming\/\*/);
  });

  it('needs no NAT: isolated subnets with endpoints for S3, DynamoDB, SQS, ECR and Logs', () => {
    expect(ofType('AWS::EC2::NatGateway')).toHaveLength(0);
    expect(ofType('AWS::EC2::InternetGateway')).toHaveLength(0);
    const services = JSON.stringify(ofType('AWS::EC2::VPCEndpoint').map(([, e]) => e.Properties.ServiceName));
    for (const s of ['.s3', '.dynamodb', '.sqs', '.ecr.api', '.ecr.dkr', '.logs', '.ecs'])
      expect(services).toContain(s);
  });
});

describe('API', () => {
  it('checks the hospital key: every method requires x-api-key (validated) and proxies to the api Lambda', () => {
    const methods = ofType('AWS::ApiGateway::Method').filter(
      ([, m]) => m.Properties.HttpMethod !== 'OPTIONS',
    );
    expect(methods.map(([, m]) => m.Properties.HttpMethod).sort()).toEqual(['GET', 'GET', 'GET', 'POST']);
    for (const [id, m] of methods) {
      expect(m.Properties.RequestParameters, id).toEqual({
        [`method.request.header.${API_KEY_HEADER}`]: true,
      });
      const validator = resources[(m.Properties.RequestValidatorId as { Ref: string }).Ref]!;
      expect(validator.Properties.ValidateRequestParameters, id).toBe(true);
      expect((m.Properties.Integration as { Type: string }).Type, id).toBe('AWS_PROXY');
      expect(JSON.stringify(m.Properties.Integration), id).toContain(idOf(stack.api.handler.function));
    }
    // The key's hash is looked up in the table the api Lambda is given.
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [ENV.table]: ref(stack.results.table) }) },
      Timeout: 29,
    });
  });

  it('throttles, traces and logs access on the stage; no WAF unless one is given', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      TracingEnabled: true,
      AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue() }),
      MethodSettings: [
        Match.objectLike({
          ThrottlingRateLimit: DEFAULT_SETTINGS.apiRateLimit,
          ThrottlingBurstLimit: DEFAULT_SETTINGS.apiBurstLimit,
          DataTraceEnabled: false,
        }),
      ],
    });
    template.resourceCountIs('AWS::WAFv2::WebACLAssociation', 0);
  });
});

describe('operations', () => {
  it('alarms on every DLQ, the oldest inference message, Lambda errors and throttles and worker task failures', () => {
    const alarmTopic = ref(stack.operations.alarmTopic);
    const alarms = ofType('AWS::CloudWatch::Alarm').filter(([, a]) =>
      JSON.stringify(a.Properties.AlarmActions ?? []).includes(JSON.stringify(alarmTopic)),
    );
    const find = (metricName: string, dimension?: unknown) =>
      alarms.filter(
        ([, a]) =>
          a.Properties.MetricName === metricName &&
          (dimension === undefined ||
            JSON.stringify(a.Properties.Dimensions).includes(JSON.stringify(dimension))),
      );
    for (const id of Object.keys(QUEUES) as QueueId[]) {
      const dlqName = { 'Fn::GetAtt': [idOf(queueOf(id).deadLetterQueue), 'QueueName'] };
      expect(find('ApproximateNumberOfMessagesVisible', dlqName), id).toHaveLength(1);
    }
    const inferenceName = { 'Fn::GetAtt': [idOf(stack.inference.queue.queue), 'QueueName'] };
    expect(find('ApproximateAgeOfOldestMessage', inferenceName)).toHaveLength(1);
    for (const fn of lambdas()) {
      expect(find('Errors', ref(fn.function))).toHaveLength(1);
      expect(find('Throttles', ref(fn.function))).toHaveLength(1);
    }
    expect(find('TriggeredRules')).toHaveLength(1);
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({
        source: ['aws.ecs'],
        detail: Match.objectLike({ lastStatus: ['STOPPED'] }),
      }),
    });
    expect(alarms).toHaveLength(3 + 1 + 10 + 1);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  it('keeps logs for the set retention, encrypted, and traces the Lambdas', () => {
    for (const [id, g] of ofType('AWS::Logs::LogGroup')) {
      expect(g.Properties.RetentionInDays, id).toBe(DEFAULT_SETTINGS.logRetentionDays);
      expect(g.Properties.KmsKeyId, id).toBeDefined();
    }
    for (const fn of lambdas()) {
      const props = resources[idOf(fn.function)]!.Properties;
      expect(props.TracingConfig).toEqual({ Mode: 'Active' });
      expect(props.Runtime).toBe('nodejs22.x');
      expect(props.Architectures).toEqual(['arm64']);
      expect(props.ReservedConcurrentExecutions).toBeGreaterThan(0);
    }
  });
});
