/**
 * Vitest setup file (vitest.config.ts `setupFiles`): what the test process writes straight to its
 * stdout and stderr goes through the global `console` that vitest captures, so `silent:
 * 'passed-only'` shows it only for a test that failed.
 *
 * Vitest holds back `console.*` calls only. Code under test also writes around it: Powertools'
 * Logger and Metrics of the in-process Lambda handlers use a Console of their own on
 * `process.stdout` (unless POWERTOOLS_DEV, which would also turn the metrics off that the
 * patient-data scans read), and Node prints warnings such as the AWS SDK's NodeVersionSupportWarning
 * on `process.stderr`. Routing the streams' `write` keeps every line and what it says; a test that
 * wraps `process.stdout.write` itself (to scan the handlers' lines) still sees them, since it wraps
 * this one. Child processes write to their own descriptors and are not affected.
 */

type Write = typeof process.stdout.write;

/** Marks a stream whose write is already routed (setup files run once per test file in a worker). */
const ROUTED = Symbol.for('covidct.test.routedWrite');

function route(stream: NodeJS.WriteStream, print: (text: string) => void): void {
  const holder = stream as unknown as Record<symbol, unknown>;
  if (holder[ROUTED]) return;
  holder[ROUTED] = true;
  const original = stream.write.bind(stream) as Write;
  // Where `console` itself writes to this stream (vitest's console interception turned off), a
  // write made from inside `print` goes to the stream as it would have.
  let inside = false;
  stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    if (inside) return (original as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
    inside = true;
    try {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      // console adds the line end the chunk usually brings.
      print(text.endsWith('\n') ? text.slice(0, -1) : text);
    } finally {
      inside = false;
    }
    const done = rest.find((arg): arg is () => void => typeof arg === 'function');
    if (done) queueMicrotask(done);
    return true;
  }) as Write;
}

// `console` is looked up at each write: vitest may give each test file its own.
route(process.stdout, (text) => globalThis.console.log(text));
route(process.stderr, (text) => globalThis.console.error(text));
