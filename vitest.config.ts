import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // The integration suites start real servers; two cores are better used by fewer, longer workers.
    pool: 'forks',
    maxWorkers: 2,
    globalSetup: ['test/globalSetup.ts'],
  },
});
