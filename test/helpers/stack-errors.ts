/**
 * The local stack's `onError` for integration tests: each problem becomes one line
 * (`where: message`) in an array the test asserts on, so a failure names the part that had it.
 */

/**
 * An `onError` for {@link import('../../local/stack.js').LocalStackOptions} that appends
 * `${where}: ${message}` to `errors` (cut to `maxLength` characters when given).
 */
export function collectStackErrors(
  errors: string[],
  maxLength?: number,
): (error: unknown, where: string) => void {
  return (error, where) => {
    const line = `${where}: ${error instanceof Error ? error.message : String(error)}`;
    errors.push(maxLength === undefined ? line : line.slice(0, maxLength));
  };
}
