import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

/** `COVIDCT_FULL=1` (npm run test:full) runs the full-size model suites in test/full/ instead. */
const full = process.env.COVIDCT_FULL === '1';

export default defineConfig({
  test: {
    include: full ? ['test/full/**/*.test.ts'] : ['test/**/*.test.ts'],
    exclude: full ? [] : ['test/full/**', '**/node_modules/**'],
    // Two cores here and in CI: two forks keep the machine responsive.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    // Log lines (the handlers' JSON logs, progress) only for a test that failed: the run shows results.
    silent: 'passed-only',
    // …including what code under test writes straight to stdout/stderr (Powertools, Node's warnings).
    setupFiles: ['test/setup/console.ts'],
    // ONNX graphs the CPU engine exports go to a cache of the tests' own, not the user's ~/.cache.
    env: { COVIDCT_CACHE_DIR: join(tmpdir(), 'covidct-test-cache') },
    hookTimeout: 120_000,
  },
});
