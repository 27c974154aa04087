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
    // Each worker keeps its modules from one file to the next: importing src/ and its libraries afresh
    // for every file cost more than running most files' tests. Nothing in src/ or test/support/ holds
    // module state a file could leave behind (the design forbids singletons), and spies are restored.
    isolate: false,
    restoreMocks: true,
    globalSetup: ['test/globalSetup.ts'],
  },
});
