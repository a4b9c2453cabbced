/**
 * Inference: a VPC without NAT (endpoints carry all data and control traffic), an ECS cluster on
 * GPU instances (ECS GPU-optimized AMI, managed scaling and termination protection, optional
 * Spot), the worker's task (one GPU, image from gpu-worker/Dockerfile) and a service that scales
 * on the inference queue's backlog per task, from zero.
 */
import { Duration, IgnoreMode, Stack } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENV, GPU_SCALING, KEYS, METRICS_NAMESPACE, QUEUES } from '../../pipeline/index.js';
import { PipelineQueue, REPO_ROOT } from '../parts.js';

/**
 * What the worker image's build needs from the repository (Docker ignore syntax: everything
 * else, node_modules and test data included, stays out of the build context).
 */
export const WORKER_IMAGE_CONTEXT = [
  '*',
  '!package.json',
  '!package-lock.json',
  '!tsconfig.json',
  '!tsconfig.build.json',
  '!core',
  '!cli',
  '!models',
  '!lambdas',
  '!gpu-worker',
  '!local',
  // The deployment defaults (plain data) that simulate imports: the image's build compiles it.
  '!cdk/settings.ts',
  '**/*.test.ts',
] as const;

/** The folder under a study's results prefix that holds the worker's Grad-CAM heatmaps (pipeline/messages.ts heatmapKey). */
export const HEATMAPS_DIR = 'heatmaps';

/**
 * GPU hosts' boot commands that keep task containers away from the instance metadata service (and
 * so from the host's role): the ECS agent blocks IMDS for awsvpc tasks, and docker's bridge (the
 * worker's network mode) drops packets to IMDS, as AWS's ECS guide describes. The launch
 * template's hop limit of 1 already stops IMDSv2 tokens at the bridge; this is the second lock.
 */
export const BLOCK_TASK_IMDS_COMMANDS = [
  'echo ECS_AWSVPC_BLOCK_IMDS=true >> /etc/ecs/ecs.config',
  // Docker keeps the rules of an existing DOCKER-USER chain and jumps to it first from FORWARD.
  'iptables --new-chain DOCKER-USER 2>/dev/null || true',
  'iptables --insert DOCKER-USER 1 --in-interface docker+ --destination 169.254.169.254/32 --jump DROP',
] as const;

/** Props of {@link Inference}. */
export interface InferenceProps {
  readonly bucket: s3.IBucket;
  /** Where the worker sends votes. */
  readonly votesQueue: sqs.IQueue;
  readonly key: kms.IKey;
  /** GPU instance type, e.g. `g4dn.xlarge` (T4) or `g5.xlarge` (A10G). */
  readonly instanceType: string;
  /** Most worker tasks (one per GPU instance). */
  readonly maxTasks: number;
  /**
   * Worker tasks (and GPU instances) kept running when the queue is empty.
   * @default 0 (scale to zero)
   */
  readonly minTasks?: number;
  /** Target of visible inference messages per running task. */
  readonly backlogPerTask: number;
  /** Spot instances for the GPU hosts. */
  readonly spot: boolean;
  /** Model the worker loads (`COVIDCT_MODEL`). */
  readonly model: string;
  readonly logRetention: logs.RetentionDays;
  /** Availability zones. */
  readonly maxAzs: number;
  /** Memory reserved for the worker container. @default 12288 (fits the 16 GiB g4dn/g5.xlarge with the agent) */
  readonly memoryReservationMiB?: number;
  /** Port of the worker's health check (`COVIDCT_HEALTH_PORT`). @default 8080 */
  readonly healthPort?: number;
  /** Root volume of the GPU hosts (the CUDA image is ~6 GB). @default 100 */
  readonly rootVolumeGiB?: number;
  /** Worker image. @default - built from gpu-worker/Dockerfile in the repository */
  readonly image?: ecs.ContainerImage;
}

/** The VPC, the GPU cluster, the worker service and the inference queue. */
export class Inference extends Construct {
  readonly vpc: ec2.Vpc;
  readonly queue: PipelineQueue;
  readonly cluster: ecs.Cluster;
  readonly service: ecs.Ec2Service;
  readonly taskDefinition: ecs.Ec2TaskDefinition;
  readonly autoScalingGroup: autoscaling.AutoScalingGroup;
  readonly logGroup: logs.LogGroup;
  readonly scalingTarget: appscaling.ScalableTarget;

  constructor(scope: Construct, id: string, props: InferenceProps) {
    super(scope, id);
    const minTasks = props.minTasks ?? 0;
    if (!Number.isInteger(minTasks) || minTasks < 0 || minTasks > props.maxTasks) {
      throw new Error(
        `Inference: minTasks must be a whole number from 0 to maxTasks (${props.maxTasks}), got ${minTasks}`,
      );
    }
    const definition = QUEUES.inference;
    this.queue = new PipelineQueue(this, 'Queue', { definition, key: props.key });

    // Isolated subnets only: no NAT gateway, no internet route. Data and control traffic use endpoints.
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: props.maxAzs,
      natGateways: 0,
      restrictDefaultSecurityGroup: true,
      subnetConfiguration: [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 22 }],
      gatewayEndpoints: {
        S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
        DynamoDB: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB },
      },
    });
    const flowLogs = new logs.LogGroup(this, 'FlowLogs', {
      retention: props.logRetention,
      encryptionKey: props.key,
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs),
      trafficType: ec2.FlowLogTrafficType.REJECT,
    });
    const hostSecurityGroup = new ec2.SecurityGroup(this, 'HostSecurityGroup', {
      vpc: this.vpc,
      description: 'GPU hosts: no inbound; outbound to the VPC endpoints',
      allowAllOutbound: true,
    });
    const endpoints = {
      Sqs: ec2.InterfaceVpcEndpointAwsService.SQS,
      EcrApi: ec2.InterfaceVpcEndpointAwsService.ECR,
      EcrDocker: ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
      Logs: ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
      Ecs: ec2.InterfaceVpcEndpointAwsService.ECS,
      EcsAgent: ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
      EcsTelemetry: ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
    };
    for (const [name, service] of Object.entries(endpoints)) {
      // Closed by default; only the GPU hosts may reach them (HTTPS).
      const endpoint = this.vpc.addInterfaceEndpoint(name, { service, privateDnsEnabled: true, open: false });
      endpoint.connections.allowFrom(hostSecurityGroup, ec2.Port.tcp(443), 'GPU hosts to the endpoint');
    }

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: this.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    const userData = ec2.UserData.forLinux();
    userData.addCommands(...BLOCK_TASK_IMDS_COMMANDS);
    const launchTemplate = new ec2.LaunchTemplate(this, 'LaunchTemplate', {
      instanceType: new ec2.InstanceType(props.instanceType),
      machineImage: ecs.EcsOptimizedImage.amazonLinux2023(ecs.AmiHardwareType.GPU),
      userData,
      role: new iam.Role(this, 'HostRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') }),
      securityGroup: hostSecurityGroup,
      requireImdsv2: true,
      // Tasks must not reach the host's role through the metadata service: IMDSv2 tokens do not
      // survive the extra hop into a bridge-mode container (the ECS agent, on the host network,
      // still gets its own), and the user data below also drops containers' packets to IMDS.
      // The worker gets its credentials from the ECS task-role endpoint, not from IMDS.
      httpPutResponseHopLimit: 1,
      detailedMonitoring: true,
      blockDevices: [
        {
          deviceName: '/dev/xvda',
          volume: ec2.BlockDeviceVolume.ebs(props.rootVolumeGiB ?? 100, {
            encrypted: true,
            volumeType: ec2.EbsDeviceVolumeType.GP3,
            deleteOnTermination: true,
          }),
        },
      ],
      ...(props.spot ? { spotOptions: { requestType: ec2.SpotRequestType.ONE_TIME } } : {}),
    });
    this.autoScalingGroup = new autoscaling.AutoScalingGroup(this, 'GpuHosts', {
      vpc: this.vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
      launchTemplate,
      minCapacity: minTasks,
      maxCapacity: props.maxTasks,
    });
    const capacityProvider = new ecs.AsgCapacityProvider(this, 'GpuCapacity', {
      autoScalingGroup: this.autoScalingGroup,
      enableManagedScaling: true,
      enableManagedTerminationProtection: true,
      targetCapacityPercent: 100,
      spotInstanceDraining: props.spot,
    });
    this.cluster.addAsgCapacityProvider(capacityProvider);

    this.logGroup = new logs.LogGroup(this, 'WorkerLogs', {
      retention: props.logRetention,
      encryptionKey: props.key,
    });
    this.taskDefinition = new ecs.Ec2TaskDefinition(this, 'WorkerTask');
    const healthPort = props.healthPort ?? 8080;
    const image =
      props.image ??
      ecs.ContainerImage.fromAsset(REPO_ROOT, {
        file: 'gpu-worker/Dockerfile',
        exclude: [...WORKER_IMAGE_CONTEXT],
        ignoreMode: IgnoreMode.DOCKER,
        platform: Platform.LINUX_AMD64,
      });
    this.taskDefinition.addContainer('worker', {
      image,
      gpuCount: 1,
      memoryReservationMiB: props.memoryReservationMiB ?? 12_288,
      essential: true,
      // The worker finishes the batch in flight on SIGTERM (scale-in, Spot interruption).
      stopTimeout: Duration.seconds(GPU_SCALING.stopTimeoutSeconds),
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'worker', logGroup: this.logGroup }),
      environment: {
        [ENV.bucket]: props.bucket.bucketName,
        [ENV.inferenceQueueUrl]: this.queue.queue.queueUrl,
        [ENV.votesQueueUrl]: props.votesQueue.queueUrl,
        [ENV.model]: props.model,
        [ENV.healthPort]: String(healthPort),
        // Fail loudly on a host without a working GPU instead of classifying on the CPU.
        [ENV.backend]: 'gpu',
        AWS_REGION: Stack.of(this).region,
        POWERTOOLS_SERVICE_NAME: 'covidct-worker',
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      },
      healthCheck: {
        command: [
          'CMD-SHELL',
          `node -e "fetch('http://127.0.0.1:${healthPort}/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"`,
        ],
        interval: Duration.seconds(30),
        timeout: Duration.seconds(5),
        retries: 3,
        // Loading the model and initialising CUDA takes a while.
        startPeriod: Duration.seconds(300),
      },
    });
    const role = this.taskDefinition.taskRole;
    props.bucket.grantRead(role, `${KEYS.incoming}*`);
    props.bucket.grantRead(role, `${KEYS.models}*`);
    // Heatmaps only (results/{hospital}/{study}/heatmaps/…): the report is the aggregate's.
    props.bucket.grantPut(role, `${KEYS.results}*/${HEATMAPS_DIR}/*`);
    this.queue.queue.grantConsumeMessages(role);
    props.votesQueue.grantSendMessages(role);

    this.service = new ecs.Ec2Service(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: 0,
      minHealthyPercent: 0,
      maxHealthyPercent: 100,
      circuitBreaker: { rollback: true },
      capacityProviderStrategies: [{ capacityProvider: capacityProvider.capacityProviderName, weight: 1 }],
    });

    this.scalingTarget = new appscaling.ScalableTarget(this, 'ScalingTarget', {
      serviceNamespace: appscaling.ServiceNamespace.ECS,
      resourceId: `service/${this.cluster.clusterName}/${this.service.serviceName}`,
      scalableDimension: 'ecs:service:DesiredCount',
      minCapacity: minTasks,
      maxCapacity: props.maxTasks,
    });
    const period = Duration.seconds(GPU_SCALING.metricPeriodSeconds);
    const visible = this.queue.queue.metricApproximateNumberOfMessagesVisible({ period });
    const running = new cloudwatch.Metric({
      namespace: 'ECS/ContainerInsights',
      metricName: 'RunningTaskCount',
      dimensionsMap: { ClusterName: this.cluster.clusterName, ServiceName: this.service.serviceName },
      statistic: 'Average',
      period,
    });

    // Backlog per task = visible messages ÷ running tasks (metric math: the L2 target tracking
    // policy takes single metrics only). With no task running the quotient has no value; the step
    // policy below starts the first task.
    new appscaling.CfnScalingPolicy(this, 'BacklogPerTask', {
      policyName: `${Stack.of(this).stackName}-backlog-per-task`,
      policyType: 'TargetTrackingScaling',
      scalingTargetId: this.scalingTarget.scalableTargetId,
      targetTrackingScalingPolicyConfiguration: {
        targetValue: props.backlogPerTask,
        scaleOutCooldown: GPU_SCALING.targetTracking.scaleOutCooldownSeconds,
        scaleInCooldown: GPU_SCALING.targetTracking.scaleInCooldownSeconds,
        customizedMetricSpecification: {
          metrics: [
            {
              id: 'visible',
              returnData: false,
              metricStat: {
                metric: {
                  namespace: 'AWS/SQS',
                  metricName: 'ApproximateNumberOfMessagesVisible',
                  dimensions: [{ name: 'QueueName', value: this.queue.queue.queueName }],
                },
                stat: 'Sum',
              },
            },
            {
              id: 'running',
              returnData: false,
              metricStat: {
                metric: {
                  namespace: 'ECS/ContainerInsights',
                  metricName: 'RunningTaskCount',
                  dimensions: [
                    { name: 'ClusterName', value: this.cluster.clusterName },
                    { name: 'ServiceName', value: this.service.serviceName },
                  ],
                },
                stat: 'Average',
              },
            },
            {
              id: 'backlogPerTask',
              expression: 'visible / running',
              label: 'backlog per task',
              returnData: true,
            },
          ],
        },
      },
    });

    // Leave zero quickly: while no task runs and messages wait, set one task at once.
    const fromZero = new appscaling.StepScalingAction(this, 'StartFromZero', {
      scalingTarget: this.scalingTarget,
      adjustmentType: appscaling.AdjustmentType.EXACT_CAPACITY,
      cooldown: Duration.seconds(GPU_SCALING.startFromZero.cooldownSeconds),
      metricAggregationType: appscaling.MetricAggregationType.MAXIMUM,
    });
    fromZero.addAdjustment({ lowerBound: 0, adjustment: GPU_SCALING.startFromZero.tasks });
    const waitingWithNoTask = new cloudwatch.MathExpression({
      expression: 'IF(FILL(running, 0) < 1, visible, 0)',
      usingMetrics: { visible, running },
      label: 'messages waiting with no task running',
      period,
    });
    new cloudwatch.Alarm(this, 'WorkWaitingAtZero', {
      metric: waitingWithNoTask,
      threshold: GPU_SCALING.startFromZero.thresholdMessages,
      evaluationPeriods: GPU_SCALING.startFromZero.evaluationPeriods,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: 'Inference messages are waiting and no worker runs: start one',
    }).addAlarmAction(new cwActions.ApplicationScalingAction(fromZero));
  }
}
