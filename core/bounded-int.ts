/**
 * Whole numbers within bounds, as typed by a person (command-line options, environment variables,
 * CDK context): the one rule every reader of such a setting applies, so that `--runs`,
 * `COVIDCT_WORKER_BATCH_SLICES` and `-c maxGpuTasks=` accept and refuse the same texts. Each caller words
 * its own error (naming its option, variable or key) with {@link boundedIntExpected}.
 */

/** What a bounded whole number must be, for error messages: `a whole number from 1 to 256`. */
export function boundedIntExpected(min: number, max: number): string {
  return `a whole number from ${min} to ${max}`;
}

/**
 * `text` as a whole number from `min` to `max`: decimal digits, spaces around them allowed (` 12 `),
 * or undefined when it is blank, anything else (`1.5`, `1e3`, `0x10`, `+5`), or out of bounds.
 * Digits only, because a person typing `1e3` slices or `0x10` as a port has made a mistake that a
 * number parser would quietly accept.
 */
export function parseBoundedInt(text: string, min: number, max: number): number | undefined {
  if (!/^\s*\d+\s*$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined;
}
