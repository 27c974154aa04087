import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { findLeaks } from './support/leaks.js';

declare module 'vitest' {
  export interface ProvidedContext {
    leakDir: string;
  }
}

/**
 * The suites serve and load the built browser helper (`dist/browser/`), so it is built first when a
 * source is newer than it.
 *
 * Every suite's logs, the spans its brokers exported, and every secret the suites used land in one
 * folder; when the whole run is over, no log line or span may contain any of those secrets in any
 * encoding (plain, base64, URL-encoded).
 */
export default function setup(project: TestProject) {
  execFileSync(
    process.execPath,
    [fileURLToPath(new URL('../scripts/buildClient.mjs', import.meta.url)), '--if-stale'],
    {
      stdio: 'inherit',
    },
  );
  const dir = mkdtempSync(join(tmpdir(), 'token-broker-leaks-'));
  project.provide('leakDir', dir);
  return () => {
    try {
      const leaks = findLeaks(dir);
      if (leaks.length > 0) {
        // vitest reports an error thrown here but still exits 0; the exit code is what CI reads.
        process.exitCode = 1;
        throw new Error(`secrets leaked into the logs or spans of this test run:\n${leaks.join('\n')}`);
      }
      const logged = readFileSync(join(dir, 'logs.ndjson'), { encoding: 'utf8', flag: 'a+' });
      if (process.env.LEAK_CHECK_VERBOSE)
        console.log(`leak check: ${logged.split('\n').length} log lines clean`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}
