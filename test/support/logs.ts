import { appendFileSync, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { expect, inject } from 'vitest';
import { createLogger, type Logger } from '../../src/telemetry/logger.js';
import { encodings } from './leaks.js';

export interface CapturedLogger {
  logger: Logger;
  /** Every line this logger wrote, parsed. */
  lines(): Record<string, unknown>[];
}

/**
 * A real pino logger (the production redaction config) whose output is kept for assertions and also
 * appended to the whole run's log file, which the global teardown scans for leaked secrets.
 */
export function captureLogs(level = 'debug'): CapturedLogger {
  const captured: string[] = [];
  const stream = new PassThrough();
  const file = createWriteStream(join(inject('leakDir'), 'logs.ndjson'), { flags: 'a' });
  stream.on('data', (chunk: Buffer) => {
    captured.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    file.write(chunk);
  });
  const logger = createLogger({ level }, stream);
  return {
    logger,
    lines: () => captured.map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

/** Registers a secret the test uses; the run fails if any log line of any suite contains it. */
export function registerSecret(label: string, value: string): string {
  appendFileSync(join(inject('leakDir'), 'secrets.ndjson'), `${JSON.stringify({ label, value })}\n`);
  return value;
}

/** Fails when `text` holds any of `secrets` in any spelling the code could produce. */
export function expectNoSecrets(text: string, secrets: readonly string[], where = 'answer'): void {
  for (const secret of secrets) {
    for (const spelling of encodings(secret)) {
      if (spelling.length < 12) continue;
      expect(text.includes(spelling), `${where} holds a secret`).toBe(false);
    }
  }
}
