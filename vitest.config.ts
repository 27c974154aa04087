import { defineConfig } from 'vitest/config';
import { LongFilesFirst } from './test/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // The integration suites start real servers and processes, so workers are forks. Many of the long
    // files spend most of their time waiting in real time (an outage to heal, a lease to lapse, a process
    // to start); a third worker runs other files in those gaps, on two cores as on more.
    pool: 'forks',
    maxWorkers: 3,
    sequence: { sequencer: LongFilesFirst },
    // Each worker keeps its modules from one file to the next: importing src/ and its libraries afresh
    // for every file cost more than running most files' tests. Nothing in src/ or test/support/ holds
    // module state a file could leave behind (the design forbids singletons), and spies are restored.
    isolate: false,
    restoreMocks: true,
    globalSetup: ['test/globalSetup.ts'],
  },
});
