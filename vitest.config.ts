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
    hookTimeout: 120_000,
  },
});
