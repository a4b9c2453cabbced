/**
 * Studies arriving at the pipeline (a manifest landing in S3): from a file a hospital group
 * exported, or from a named profile (Poisson arrivals at a constant rate per segment).
 */
import { InputError } from '../core/errors.js';
import { createRng, hash32 } from '../core/phantom/random.js';

/** One study's manifest landing. */
export interface Arrival {
  /** Seconds from the start of the run. */
  readonly time: number;
  readonly hospital: string;
  /** Slices in the study; absent: drawn from the run's slice distribution. */
  readonly slices?: number;
}

/** A stretch of constant arrival rate. */
export interface ProfileSegment {
  readonly studiesPerHour: number;
  readonly hours: number;
}

/** A named arrival pattern. */
export interface ArrivalProfile {
  readonly description: string;
  readonly segments: readonly ProfileSegment[];
}

/** Hospitals a profile's studies are spread over, evenly at random. */
export const PROFILE_HOSPITALS = 10;

/** The two cases: an ordinary day and a surge, each starting from an idle (scaled to zero) stack. */
export const PROFILES = {
  baseline: {
    description: 'a day at 50 studies/h (Poisson), 24 h',
    segments: [{ studiesPerHour: 50, hours: 24 }],
  },
  surge: { description: '2,000 studies/h (Poisson) for 3 h', segments: [{ studiesPerHour: 2000, hours: 3 }] },
} as const satisfies Record<string, ArrivalProfile>;

/** A profile name. */
export type ProfileName = keyof typeof PROFILES;

/** Whether `name` names a profile. */
export function isProfileName(name: string): name is ProfileName {
  return Object.hasOwn(PROFILES, name);
}

/** How long a profile lasts, seconds. */
export function profileSeconds(profile: ArrivalProfile): number {
  return profile.segments.reduce((a, s) => a + s.hours * 3600, 0);
}

/** Poisson arrivals of a profile, deterministic for a seed; hospitals `hospital-01` … drawn evenly. */
export function profileArrivals(
  profile: ArrivalProfile,
  seed: number,
  hospitals = PROFILE_HOSPITALS,
): Arrival[] {
  // A stream of its own, so the arrivals do not shift when the engine draws differently.
  const rng = createRng(hash32(seed, 0xa771));
  const out: Arrival[] = [];
  let start = 0;
  const width = String(hospitals).length;
  for (const segment of profile.segments) {
    const end = start + segment.hours * 3600;
    const rate = segment.studiesPerHour / 3600;
    let t = start;
    while (rate > 0) {
      t += -Math.log(1 - rng.next()) / rate;
      if (t >= end) break;
      const h = Math.min(hospitals - 1, Math.floor(rng.next() * hospitals));
      out.push({ time: t, hospital: `hospital-${String(h + 1).padStart(width, '0')}` });
    }
    start = end;
  }
  return out;
}

/** A field of an arrival record as given (JSON value or CSV text). */
type Raw = Record<string, unknown>;

function timeOf(value: unknown, where: string): number | Date {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  if (typeof value === 'string' && value.trim() !== '') {
    const text = value.trim();
    if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
    const date = new Date(text);
    if (!Number.isNaN(date.getTime()) && /\d{4}-\d\d-\d\d/.test(text)) return date;
  }
  throw new InputError(
    where,
    `time must be seconds from the start (≥ 0) or an ISO 8601 timestamp, got ${JSON.stringify(value)}`,
  );
}

function recordsFromCsv(text: string, source: string): Raw[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  const header = (lines.shift() ?? '').split(',').map((h) => h.trim().toLowerCase());
  if (!header.includes('time') && !header.includes('timestamp')) {
    throw new InputError(
      source,
      `CSV needs a header line with time (or timestamp), hospital and optionally slices, got '${header.join(',')}'`,
    );
  }
  return lines.map((line) => {
    const cells = line.split(',').map((c) => c.trim());
    return Object.fromEntries(header.map((h, i) => [h, cells[i] ?? '']));
  });
}

/**
 * Parse an arrivals file: JSON (an array of `{ time, hospital, slices? }`, or `{ arrivals: [...] }`)
 * or CSV with a header `time,hospital,slices`. `time` is seconds from the start or an ISO 8601
 * timestamp (then made relative to the earliest). Sorted by time. Throws a one-line
 * {@link InputError} naming `source` and the record at fault.
 */
export function parseArrivals(text: string, source: string): Arrival[] {
  let records: Raw[];
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new InputError(source, `not valid JSON (${(error as Error).message.split('\n')[0]})`);
    }
    const list = Array.isArray(value) ? value : (value as { arrivals?: unknown } | null)?.arrivals;
    if (!Array.isArray(list))
      throw new InputError(source, 'JSON must be an array of arrivals or { "arrivals": [...] }');
    records = list.map((r, i) => {
      if (typeof r !== 'object' || r === null)
        throw new InputError(`${source} arrival ${i + 1}`, 'must be an object');
      return r as Raw;
    });
  } else {
    records = recordsFromCsv(text, source);
  }
  if (records.length === 0) throw new InputError(source, 'holds no arrivals');
  const parsed = records.map((r, i) => {
    const where = `${source} arrival ${i + 1}`;
    const time = timeOf(r.time ?? r.timestamp, where);
    const hospital = r.hospital;
    if (typeof hospital !== 'string' || hospital.trim() === '') {
      throw new InputError(where, `hospital must be a non-empty name, got ${JSON.stringify(hospital)}`);
    }
    let slices: number | undefined;
    if (r.slices !== undefined && r.slices !== '') {
      slices = Number(r.slices);
      if (!Number.isInteger(slices) || slices < 1) {
        throw new InputError(where, `slices must be a whole number ≥ 1, got ${JSON.stringify(r.slices)}`);
      }
    }
    return { time, hospital: hospital.trim(), slices };
  });
  const dates = parsed.filter((p) => p.time instanceof Date).length;
  if (dates !== 0 && dates !== parsed.length) {
    throw new InputError(source, 'mixes timestamps and seconds: use one or the other');
  }
  const origin = parsed.reduce(
    (a, p) => (p.time instanceof Date ? Math.min(a, p.time.getTime()) : a),
    Number.POSITIVE_INFINITY,
  );
  return parsed
    .map(({ time, hospital, slices }) => ({
      time: time instanceof Date ? (time.getTime() - origin) / 1000 : time,
      hospital,
      ...(slices === undefined ? {} : { slices }),
    }))
    .sort((a, b) => a.time - b.time);
}
