import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodings, findLeaks } from './leaks.js';

describe('leak scanner', () => {
  it('when a secret appears in a log line in any encoding, then it is reported', () => {
    const secret = 'sup3r-secret/value+with=chars';
    for (const spelling of encodings(secret)) {
      const dir = mkdtempSync(join(tmpdir(), 'leak-scan-'));
      writeFileSync(
        join(dir, 'secrets.ndjson'),
        `${JSON.stringify({ label: 'client secret', value: secret })}\n`,
      );
      writeFileSync(join(dir, 'logs.ndjson'), `{"msg":"ok"}\n{"msg":"x ${spelling} y"}\n`);
      expect(findLeaks(dir)).toEqual([expect.stringContaining('client secret')]);
    }
  });

  it('when an exported span holds a secret, then it is reported with the file it was found in', () => {
    const dir = mkdtempSync(join(tmpdir(), 'leak-scan-'));
    const secret = 'an-upstream-access-token-value';
    writeFileSync(
      join(dir, 'secrets.ndjson'),
      `${JSON.stringify({ label: 'upstream token', value: secret })}\n`,
    );
    writeFileSync(join(dir, 'logs.ndjson'), '{"msg":"ok"}\n');
    const span = {
      key: 'url.full',
      value: { stringValue: `http://api/x?key=${encodeURIComponent(secret)}` },
    };
    writeFileSync(
      join(dir, 'spans.ndjson'),
      `${JSON.stringify({ resourceSpans: [{ attributes: [span] }] })}\n`,
    );
    expect(findLeaks(dir)).toEqual([expect.stringMatching(/^upstream token in spans\.ndjson: /)]);
  });

  it('when no log line holds a secret, then nothing is reported', () => {
    const dir = mkdtempSync(join(tmpdir(), 'leak-scan-'));
    writeFileSync(
      join(dir, 'secrets.ndjson'),
      `${JSON.stringify({ label: 'k', value: 'another-long-secret' })}\n`,
    );
    writeFileSync(join(dir, 'logs.ndjson'), '{"msg":"[redacted]"}\n');
    expect(findLeaks(dir)).toEqual([]);
  });
});
