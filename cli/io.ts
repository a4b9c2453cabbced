/** Output helpers and option parsers shared by the commands. */
import { InvalidArgumentError, Option } from 'commander';
import { boundedIntExpected, parseBoundedInt } from '../core/bounded-int.js';
import { InputError } from '../core/errors.js';
import { parseVoteThreshold } from '../core/vote.js';

/** Print a value as JSON on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Print one line on stderr, prefixed with the program name. */
export function warn(line: string): void {
  process.stderr.write(`covidct: ${line}\n`);
}

/** Parse a whole number option, or explain which option was wrong. */
export function parseInteger(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = parseBoundedInt(value, min, max);
    if (n === undefined) {
      throw new OptionValueError(`${name} must be ${boundedIntExpected(min, max)}, got '${value}'`);
    }
    return n;
  };
}

/**
 * A whole-number option (`--runs <n>`) from `min` to `max`, its value parsed by
 * {@link parseInteger} under the option's own name; `fallback` is its default.
 */
export function integerOption(
  flags: string,
  description: string,
  min: number,
  max: number,
  fallback?: number,
): Option {
  const option = new Option(flags, description).argParser(parseInteger(flags.split(' ')[0]!, min, max));
  return fallback === undefined ? option : option.default(fallback);
}

/** Parse a decimal option. */
export function parseNumber(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n))
      throw new OptionValueError(`${name} must be a number, got '${value}'`);
    return n;
  };
}

/** A width multiplier (`--width`): a number in (0, 1] or a fraction such as `1/16`. */
export function parseWidth(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*(\d+(?:\.\d+)?))?\s*$/.exec(value);
  const w = m ? Number(m[1]) / (m[2] === undefined ? 1 : Number(m[2])) : Number.NaN;
  if (!Number.isFinite(w) || w <= 0 || w > 1) {
    throw new InputError('--width', `must be a number in (0, 1] such as 0.25 or 1/16, got '${value}'`);
  }
  return w;
}

/**
 * Parse a vote threshold option (`--threshold`) with core/vote.ts's one check: a multiple of
 * 0.0001 from 0.0001 to 1.
 */
export function parseVoteThresholdOption(name: string): (value: string) => number {
  return (value: string) => {
    try {
      return parseVoteThreshold(value, name);
    } catch (error) {
      throw new OptionValueError((error as Error).message);
    }
  };
}

/** An option value commander reports as a usage error (one line, exit code 1). */
export class OptionValueError extends InvalidArgumentError {}
