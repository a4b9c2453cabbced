/**
 * Deployment settings: what a cloud team chooses per deployment (`cdk deploy -c key=value` or
 * `cdk.json` context), with defaults. Constructs receive these through their props; none of them
 * is hard-coded in a construct.
 */
import type { Node } from 'constructs';
import { parseVoteThreshold } from '../core/vote.js';

/** Every setting of a deployment, after defaults. */
export interface DeploymentSettings {
  /** EC2 instance type of the GPU hosts (one NVIDIA GPU each). Context `gpuInstanceType`. */
  readonly gpuInstanceType: string;
  /** Most GPU worker tasks (and GPU instances) at once. Context `maxGpuTasks`. */
  readonly maxGpuTasks: number;
  /**
   * GPU worker tasks kept running when idle. 0 scales to zero (cheapest; the first study after a quiet
   * spell waits ~8 min for a host and task to start); 1 keeps p95 under 5 min through a surge
   * (bench/SURGE.md) for one always-on host. Context `minGpuTasks`.
   */
  readonly minGpuTasks: number;
  /** Target inference-queue backlog (visible messages) per running task. Context `backlogPerTask`. */
  readonly backlogPerTask: number;
  /** Spot instances for the GPU hosts (interruptions are safe: the worker drains, SQS redelivers). Context `spot`. */
  readonly spot: boolean;
  /** Deployment's default vote threshold (`COVIDCT_VOTE_THRESHOLD`); unset keeps the handlers' default. Context `voteThreshold`. */
  readonly voteThreshold?: number;
  /** Model the worker loads, `{name}/{version}` under `models/`. Context `model`. */
  readonly model: string;
  /** Days before uploaded slices under `incoming/` expire. Context `incomingExpirationDays`. */
  readonly incomingExpirationDays: number;
  /** Days CloudWatch keeps logs (a value CloudWatch accepts: 1, 3, 5, 7, 14, 30, 60, 90, …). Context `logRetentionDays`. */
  readonly logRetentionDays: number;
  /** E-mail address subscribed to the alarm topic; unset: alarms go to the topic only. Context `alarmEmail`. */
  readonly alarmEmail?: string;
  /** ARN of a regional WAFv2 web ACL to associate with the API stage. Context `wafAclArn`. */
  readonly wafAclArn?: string;
  /** Reserved concurrency of the select Lambda (bounds parallel S3 reads per account). Context `selectReservedConcurrency`. */
  readonly selectReservedConcurrency: number;
  /** Reserved concurrency of the aggregate Lambda. Context `aggregateReservedConcurrency`. */
  readonly aggregateReservedConcurrency: number;
  /** Reserved concurrency of the api Lambda. Context `apiReservedConcurrency`. */
  readonly apiReservedConcurrency: number;
  /** API Gateway steady requests per second across the stage. Context `apiRateLimit`. */
  readonly apiRateLimit: number;
  /** API Gateway burst. Context `apiBurstLimit`. */
  readonly apiBurstLimit: number;
  /** Origins allowed to PUT slices from a browser; empty (the CLI uploads): no CORS rule. Context `corsOrigins` (comma-separated). */
  readonly corsOrigins: readonly string[];
  /** Availability zones of the VPC. Context `maxAzs`. */
  readonly maxAzs: number;
}

/** The defaults (`cdk deploy` with no `-c`). */
export const DEFAULT_SETTINGS: DeploymentSettings = {
  gpuInstanceType: 'g4dn.xlarge',
  maxGpuTasks: 2,
  minGpuTasks: 0,
  backlogPerTask: 20,
  spot: false,
  model: 'covidct/1',
  incomingExpirationDays: 7,
  logRetentionDays: 90,
  selectReservedConcurrency: 5,
  aggregateReservedConcurrency: 5,
  apiReservedConcurrency: 10,
  apiRateLimit: 20,
  apiBurstLimit: 40,
  corsOrigins: [],
  maxAzs: 2,
};

/**
 * How the GPU worker service scales. cdk/constructs/inference.ts builds its scaling policies and
 * alarm from these numbers and the surge simulation (core/simulate/) models the same ones, so the
 * model cannot drift from what is deployed. Plain numbers (no CDK types): core/ may import them.
 */
export const GPU_SCALING = {
  /** Period of the queue and running-task metrics the policies read, seconds. */
  metricPeriodSeconds: 60,
  /** Target tracking on backlog per task (target: {@link DeploymentSettings.backlogPerTask}). */
  targetTracking: { scaleOutCooldownSeconds: 60, scaleInCooldownSeconds: 300 },
  /**
   * Step policy that leaves zero: while messages wait (at least `thresholdMessages` visible over
   * `evaluationPeriods` periods) and no task runs, set exactly `tasks` tasks.
   */
  startFromZero: { tasks: 1, cooldownSeconds: 60, evaluationPeriods: 1, thresholdMessages: 1 },
  /** Seconds ECS gives a stopping worker (scale-in, Spot interruption) to finish its batch. */
  stopTimeoutSeconds: 120,
} as const;

/** A context value as text (`-c` gives strings; cdk.json may give numbers or booleans). */
function text(node: Node, key: string): string | undefined {
  const value: unknown = node.tryGetContext(key);
  if (value === undefined || value === null || value === '') return undefined;
  return String(value);
}

function integer(node: Node, key: string, fallback: number, min: number, max: number): number {
  const value = text(node, key);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`context ${key}: '${value}' is not a whole number from ${min} to ${max}`);
  }
  return n;
}

/** Read the settings from the app's context (`-c key=value`), a one-line error for a bad value. */
export function settingsFromContext(node: Node): DeploymentSettings {
  const d = DEFAULT_SETTINGS;
  const threshold = text(node, 'voteThreshold');
  const voteThreshold =
    threshold === undefined ? undefined : parseVoteThreshold(threshold, 'context voteThreshold');
  const spot = text(node, 'spot');
  if (spot !== undefined && spot !== 'true' && spot !== 'false') {
    throw new Error(`context spot: '${spot}' is not true or false`);
  }
  const alarmEmail = text(node, 'alarmEmail');
  const wafAclArn = text(node, 'wafAclArn');
  if (wafAclArn !== undefined && !/^arn:aws[a-z-]*:wafv2:/.test(wafAclArn)) {
    throw new Error(`context wafAclArn: '${wafAclArn}' is not a WAFv2 web ACL ARN`);
  }
  return {
    gpuInstanceType: text(node, 'gpuInstanceType') ?? d.gpuInstanceType,
    maxGpuTasks: integer(node, 'maxGpuTasks', d.maxGpuTasks, 1, 100),
    minGpuTasks: integer(node, 'minGpuTasks', d.minGpuTasks, 0, 100),
    backlogPerTask: integer(node, 'backlogPerTask', d.backlogPerTask, 1, 10_000),
    spot: spot === undefined ? d.spot : spot === 'true',
    ...(voteThreshold === undefined ? {} : { voteThreshold }),
    model: text(node, 'model') ?? d.model,
    incomingExpirationDays: integer(node, 'incomingExpirationDays', d.incomingExpirationDays, 1, 3650),
    logRetentionDays: integer(node, 'logRetentionDays', d.logRetentionDays, 1, 3653),
    ...(alarmEmail === undefined ? {} : { alarmEmail }),
    ...(wafAclArn === undefined ? {} : { wafAclArn }),
    selectReservedConcurrency: integer(
      node,
      'selectReservedConcurrency',
      d.selectReservedConcurrency,
      1,
      1000,
    ),
    aggregateReservedConcurrency: integer(
      node,
      'aggregateReservedConcurrency',
      d.aggregateReservedConcurrency,
      1,
      1000,
    ),
    apiReservedConcurrency: integer(node, 'apiReservedConcurrency', d.apiReservedConcurrency, 1, 1000),
    apiRateLimit: integer(node, 'apiRateLimit', d.apiRateLimit, 1, 10_000),
    apiBurstLimit: integer(node, 'apiBurstLimit', d.apiBurstLimit, 1, 5_000),
    corsOrigins: (text(node, 'corsOrigins') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
    maxAzs: integer(node, 'maxAzs', d.maxAzs, 1, 6),
  };
}
