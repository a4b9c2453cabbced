/**
 * Whole numbers within bounds, as typed by a person (command-line options, environment variables,
 * CDK context): the one rule every reader of such a setting applies, so that `--runs`,
 * `COVIDCT_BATCH_SLICES` and `-c maxGpuTasks=` accept and refuse the same texts. Each caller words
 * its own error (naming its option, variable or key) with {@link boundedIntExpected}.
 */

/** What a bounded whole number must be, for error messages: `a whole number from 1 to 256`. */
export function boundedIntExpected(min: number, max: number): string {
  return `a whole number from ${min} to ${max}`;
}

/**
 * `text` as a whole number from `min` to `max` (JavaScript's Number syntax: `12`, ` 12 `, `1e3`),
 * or undefined when it is blank, not a whole number, or out of bounds.
 */
export function parseBoundedInt(text: string, min: number, max: number): number | undefined {
  if (text.trim() === '') return undefined;
  const n = Number(text);
  return Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}
