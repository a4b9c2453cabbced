/**
 * Deployment settings read from the CDK app's context (`cdk deploy -c key=value` or `cdk.json`),
 * one-line errors for bad values. What the settings are, their defaults and the GPU scaling
 * constants live in pipeline/deployment.ts (the surge simulation reads them too).
 */
import type { Node } from 'constructs';
import { boundedIntExpected, parseBoundedInt } from '../core/bounded-int.js';
import { parseVoteThreshold } from '../core/vote.js';
import { DEFAULT_SETTINGS, type DeploymentSettings, type HospitalSetting } from '../pipeline/index.js';

/** A context value as text (`-c` gives strings; cdk.json may give numbers or booleans). */
function text(node: Node, key: string): string | undefined {
  const value: unknown = node.tryGetContext(key);
  if (value === undefined || value === null || value === '') return undefined;
  return String(value);
}

function integer(node: Node, key: string, fallback: number, min: number, max: number): number {
  const value = text(node, key);
  if (value === undefined) return fallback;
  const n = parseBoundedInt(value, min, max);
  if (n === undefined) throw new Error(`context ${key}: '${value}' is not ${boundedIntExpected(min, max)}`);
  return n;
}

/** Hospital ids as the pipeline accepts them (pipeline/messages.ts ID_PATTERN). */
const HOSPITAL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

function limit(where: string, field: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  // A JSON number only (a string "10" is refused), then the one bounded-integer rule.
  const n = typeof value === 'number' ? parseBoundedInt(String(value), min, max) : undefined;
  if (n === undefined) {
    throw new Error(
      `context hospitals: ${where}.${field}: '${String(value)}' is not ${boundedIntExpected(min, max)}`,
    );
  }
  return n;
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
