/**
 * What a deployment decides, with its defaults, and how the GPU worker service scales: the CDK
 * stack builds from these (cdk/settings.ts reads the overrides from the app's context) and the
 * surge simulation (simulate/) models the same numbers, so the model cannot drift from what is
 * deployed. Plain data: no CDK or AWS SDK imports.
 */

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
  /**
   * The hospitals that may call the API, each with its own usage plan (throttle and daily quota) and
   * its usage-plan key, whose value is the SHA-256 of the hospital's API key. Context `hospitals`: a
   * JSON array (`[{"id":"st-mary","keySha256":"…","rateLimit":5,"burstLimit":10,"quotaPerDay":5000}]`,
   * limits optional), or `id:sha256,id:sha256` on the command line.
   */
  readonly hospitals: readonly HospitalSetting[];
  /** A hospital's steady requests per second unless its entry says otherwise. Context `hospitalRateLimit`. */
  readonly hospitalRateLimit: number;
  /** A hospital's burst unless its entry says otherwise. Context `hospitalBurstLimit`. */
  readonly hospitalBurstLimit: number;
  /** A hospital's requests per day (UTC) unless its entry says otherwise. Context `hospitalQuotaPerDay`. */
  readonly hospitalQuotaPerDay: number;
  /** Seconds API Gateway caches the authorizer's answer per key (0: no cache). Context `authorizerCacheSeconds`. */
  readonly authorizerCacheSeconds: number;
  /** API Gateway steady requests per second across the stage. Context `apiRateLimit`. */
  readonly apiRateLimit: number;
  /** API Gateway burst. Context `apiBurstLimit`. */
  readonly apiBurstLimit: number;
  /** Origins allowed to PUT slices from a browser; empty (the CLI uploads): no CORS rule. Context `corsOrigins` (comma-separated). */
  readonly corsOrigins: readonly string[];
  /** Availability zones of the VPC. Context `maxAzs`. */
  readonly maxAzs: number;
}

/** One hospital of the deployment (see {@link DeploymentSettings.hospitals}). */
export interface HospitalSetting {
  /** The hospital id the pipeline scopes its studies to (1-64 letters, digits, '.', '_' or '-'). */
  readonly id: string;
  /** SHA-256 (64 lowercase hex digits) of the hospital's API key; the key itself never enters the deployment. */
  readonly keySha256: string;
  /** @default DeploymentSettings.hospitalRateLimit */
  readonly rateLimit?: number;
  /** @default DeploymentSettings.hospitalBurstLimit */
  readonly burstLimit?: number;
  /** @default DeploymentSettings.hospitalQuotaPerDay */
  readonly quotaPerDay?: number;
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
  hospitals: [],
  hospitalRateLimit: 5,
  hospitalBurstLimit: 10,
  hospitalQuotaPerDay: 10_000,
  authorizerCacheSeconds: 300,
  apiRateLimit: 20,
  apiBurstLimit: 40,
  corsOrigins: [],
  maxAzs: 2,
};

/**
 * How the GPU worker service scales. cdk/constructs/inference.ts builds its scaling policies and
 * alarm from these numbers and the surge simulation (simulate/) models the same ones, so the
 * model cannot drift from what is deployed. Plain numbers (no CDK types).
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
