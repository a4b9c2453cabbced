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

/** Hospital ids as the pipeline accepts them (pipeline/messages.ts ID_PATTERN). */
const HOSPITAL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

function limit(where: string, field: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(
      `context hospitals: ${where}.${field}: '${String(value)}' is not a whole number from ${min} to ${max}`,
    );
  }
  return value;
}

/**
 * The `hospitals` setting: a JSON array of `{ id, keySha256, rateLimit?, burstLimit?, quotaPerDay? }`
 * (cdk.json may give the array itself), or `id:sha256` pairs separated by commas. One-line errors
 * naming the entry and field.
 */
export function parseHospitals(value: unknown): HospitalSetting[] {
  if (value === undefined || value === null || value === '') return [];
  let entries: unknown = value;
  if (typeof value === 'string') {
    const trimmed = value.trim();
    if (trimmed.startsWith('[')) {
      try {
        entries = JSON.parse(trimmed);
      } catch (error) {
        throw new Error(`context hospitals: not valid JSON (${(error as Error).message.split('\n')[0]})`);
      }
    } else {
      entries = trimmed
        .split(',')
        .map((pair) => pair.trim())
        .filter((pair) => pair !== '')
        .map((pair) => {
          const at = pair.lastIndexOf(':');
          return at < 0 ? { id: pair } : { id: pair.slice(0, at), keySha256: pair.slice(at + 1) };
        });
    }
  }
  if (!Array.isArray(entries)) throw new Error('context hospitals: expected a JSON array or id:sha256 pairs');
  const seen = new Set<string>();
  const keys = new Set<string>();
  return entries.map((entry: unknown, i) => {
    const where = `[${i}]`;
    if (typeof entry !== 'object' || entry === null)
      throw new Error(`context hospitals: ${where}: expected an object`);
    const e = entry as Record<string, unknown>;
    if (typeof e.id !== 'string' || !HOSPITAL_ID.test(e.id)) {
      throw new Error(
        `context hospitals: ${where}.id: '${String(e.id)}' is not 1-64 letters, digits, '.', '_' or '-'`,
      );
    }
    if (typeof e.keySha256 !== 'string' || !SHA256_HEX.test(e.keySha256)) {
      throw new Error(
        `context hospitals: ${where}.keySha256 (${e.id}): expected the key's SHA-256 as 64 lowercase hex digits (printf %s "$KEY" | sha256sum)`,
      );
    }
    if (seen.has(e.id)) throw new Error(`context hospitals: ${where}.id: '${e.id}' is listed twice`);
    if (keys.has(e.keySha256))
      throw new Error(`context hospitals: ${where}.keySha256 (${e.id}): the same key as another hospital`);
    seen.add(e.id);
    keys.add(e.keySha256);
    const rateLimit = limit(where, 'rateLimit', e.rateLimit, 1, 10_000);
    const burstLimit = limit(where, 'burstLimit', e.burstLimit, 1, 5_000);
    const quotaPerDay = limit(where, 'quotaPerDay', e.quotaPerDay, 1, 100_000_000);
    return {
      id: e.id,
      keySha256: e.keySha256,
      ...(rateLimit === undefined ? {} : { rateLimit }),
      ...(burstLimit === undefined ? {} : { burstLimit }),
      ...(quotaPerDay === undefined ? {} : { quotaPerDay }),
    };
  });
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
    hospitals: parseHospitals(node.tryGetContext('hospitals')),
    hospitalRateLimit: integer(node, 'hospitalRateLimit', d.hospitalRateLimit, 1, 10_000),
    hospitalBurstLimit: integer(node, 'hospitalBurstLimit', d.hospitalBurstLimit, 1, 5_000),
    hospitalQuotaPerDay: integer(node, 'hospitalQuotaPerDay', d.hospitalQuotaPerDay, 1, 100_000_000),
    authorizerCacheSeconds: integer(node, 'authorizerCacheSeconds', d.authorizerCacheSeconds, 0, 3600),
    apiRateLimit: integer(node, 'apiRateLimit', d.apiRateLimit, 1, 10_000),
    apiBurstLimit: integer(node, 'apiBurstLimit', d.apiBurstLimit, 1, 5_000),
    corsOrigins: (text(node, 'corsOrigins') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
    maxAzs: integer(node, 'maxAzs', d.maxAzs, 1, 6),
  };
}
