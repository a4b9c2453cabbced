/** Output helpers shared by the commands. */
import { InvalidArgumentError } from 'commander';
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
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new OptionValueError(`${name} must be a whole number from ${min} to ${max}, got '${value}'`);
    }
    return n;
  };
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
