import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * `npm run soak`: the chaos soak alone (test/soak), with the suite's set-up and leak check. Spread, not
 * mergeConfig, which would add the soak to the suite's `include` instead of replacing it.
 */
export default defineConfig({ ...base, test: { ...base.test, include: ['test/soak/**/*.soak.ts'] } });
