/**
 * Operations: an alarm on every dead-letter queue's depth, on the inference queue's oldest
 * message, on each Lambda's errors and throttles and on worker tasks that stop by failure; all to
 * one encrypted alarm topic (optionally e-mailed); and a dashboard of the pipeline.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** Props of {@link Operations}. */
export interface OperationsProps {
  readonly key: kms.IKey;
  /** Dead-letter queues by name (`ingest`, `inference`, `votes`). */
  readonly deadLetterQueues: Readonly<Record<string, sqs.IQueue>>;
  /** The queues by name, for the dashboard. */
  readonly queues: Readonly<Record<string, sqs.IQueue>>;
  readonly inferenceQueue: sqs.IQueue;
  /** Lambdas by name. */
  readonly functions: Readonly<Record<string, lambda.IFunction>>;
  readonly cluster: ecs.ICluster;
  readonly service: ecs.IBaseService;
  /** Alarm when the oldest inference message is older than this. @default Duration.minutes(30) */
  readonly maxInferenceAge?: Duration;
  /** Address e-mailed on every alarm. @default - none: subscribe to the alarm topic yourself */
  readonly alarmEmail?: string;
}

/** The alarm topic, the alarms and the dashboard. */
export class Operations extends Construct {
  readonly alarmTopic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: OperationsProps) {
    super(scope, id);
    this.alarmTopic = new sns.Topic(this, 'AlarmTopic', { masterKey: props.key, enforceSSL: true });
    if (props.alarmEmail !== undefined) {
      this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    }
    const action = new cwActions.SnsAction(this.alarmTopic);
    const alarm = (alarmId: string, options: cloudwatch.AlarmProps): cloudwatch.Alarm => {
      const a = new cloudwatch.Alarm(this, alarmId, options);
      a.addAlarmAction(action);
      a.addOkAction(action);
      this.alarms.push(a);
      return a;
    };
    const fiveMinutes = Duration.minutes(5);

    for (const [name, dlq] of Object.entries(props.deadLetterQueues)) {
      alarm(`${name}DlqDepth`, {
        alarmDescription: `Messages in the ${name} dead-letter queue: the consumer could not handle them; inspect and redrive`,
        metric: dlq.metricApproximateNumberOfMessagesVisible({ period: fiveMinutes, statistic: 'Maximum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    const maxAge = props.maxInferenceAge ?? Duration.minutes(30);
    alarm('InferenceOldestMessage', {
      alarmDescription: `Oldest inference message older than ${maxAge.toMinutes()} min: workers are not keeping up or not starting`,
      metric: props.inferenceQueue.metricApproximateAgeOfOldestMessage({
        period: fiveMinutes,
        statistic: 'Maximum',
      }),
      threshold: maxAge.toSeconds(),
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    for (const [name, fn] of Object.entries(props.functions)) {
      alarm(`${name}Errors`, {
        alarmDescription: `The ${name} Lambda failed (errors are exceptions, not bad input)`,
        metric: fn.metricErrors({ period: fiveMinutes, statistic: 'Sum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      alarm(`${name}Throttles`, {
        alarmDescription: `The ${name} Lambda was throttled (reserved concurrency reached)`,
        metric: fn.metricThrottles({ period: fiveMinutes, statistic: 'Sum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    // A worker task that failed to start or whose container exited on its own (not a scale-in
    // or a Spot interruption, which stop it with other codes after it drained).
    const taskFailures = new events.Rule(this, 'WorkerTaskFailed', {
      description: 'covidct worker task stopped by failure',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Task State Change'],
        detail: {
          clusterArn: [props.cluster.clusterArn],
          group: [`service:${props.service.serviceName}`],
          lastStatus: ['STOPPED'],
          stopCode: ['TaskFailedToStart', 'EssentialContainerExited'],
        },
      },
    });
    taskFailures.addTarget(new targets.SnsTopic(this.alarmTopic));
    alarm('WorkerTaskFailures', {
      alarmDescription: 'A GPU worker task failed to start or exited unexpectedly',
      metric: new cloudwatch.Metric({
        namespace: 'AWS/Events',
        metricName: 'TriggeredRules',
        dimensionsMap: { RuleName: taskFailures.ruleName },
        statistic: 'Sum',
        period: fiveMinutes,
      }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(6) });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Queue depth (visible)',
        width: 12,
        left: Object.entries(props.queues).map(([name, q]) =>
          q.metricApproximateNumberOfMessagesVisible({ label: name, period: Duration.minutes(1) }),
        ),
      }),
      new cloudwatch.GraphWidget({
        title: 'Inference: oldest message (s) and running workers',
        width: 12,
        left: [props.inferenceQueue.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(1) })],
        right: [
          new cloudwatch.Metric({
            namespace: 'ECS/ContainerInsights',
            metricName: 'RunningTaskCount',
            dimensionsMap: { ClusterName: props.cluster.clusterName, ServiceName: props.service.serviceName },
            period: Duration.minutes(1),
            label: 'running tasks',
          }),
        ],
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Lambda invocations and errors',
        width: 12,
        left: Object.entries(props.functions).map(([name, fn]) => fn.metricInvocations({ label: name })),
        right: Object.entries(props.functions).map(([name, fn]) =>
          fn.metricErrors({ label: `${name} errors` }),
        ),
      }),
      new cloudwatch.GraphWidget({
        title: 'Lambda duration (p99)',
        width: 12,
        left: Object.entries(props.functions).map(([name, fn]) =>
          fn.metricDuration({ label: name, statistic: 'p99' }),
        ),
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', width: 24, alarms: this.alarms }),
    );
  }
}
