import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The spellings of a secret the code could produce: plain, URL-encoded, base64 and base64url. */
export function encodings(secret: string): string[] {
  const base64 = Buffer.from(secret).toString('base64');
  return [
    ...new Set([
      secret,
      encodeURIComponent(secret),
      base64.replace(/=+$/, ''),
      Buffer.from(secret).toString('base64url'),
      JSON.stringify(secret).slice(1, -1),
    ]),
  ];
}

/**
 * What the whole-run scan reads: every log line (`logs.ndjson`) and every span a broker exported to a
 * test's OTLP receiver (`spans.ndjson`, one export request a line; see otlpReceiver.ts).
 */
export const scannedFiles = ['logs.ndjson', 'spans.ndjson'] as const;

/** Lines of the scanned files that hold a secret listed in `secrets.ndjson`, with the secret's label and the file. */
export function findLeaks(dir: string): string[] {
  const secretsFile = join(dir, 'secrets.ndjson');
  if (!existsSync(secretsFile)) return [];
  const secrets = new Map<string, string>();
  for (const line of readFileSync(secretsFile, 'utf8').split('\n')) {
    if (!line) continue;
    const { label, value } = JSON.parse(line) as { label: string; value: string };
    if (!secrets.has(value)) secrets.set(value, label);
  }
  const leaks: string[] = [];
  for (const file of scannedFiles) {
    const path = join(dir, file);
    if (!existsSync(path)) continue;
    const text = readFileSync(path, 'utf8');
    for (const [value, label] of secrets) {
      for (const spelling of encodings(value)) {
        // Short fragments would match by chance; every secret the suites register is long.
        if (spelling.length < 12) continue;
        const index = text.indexOf(spelling);
        if (index >= 0) {
          const start = text.lastIndexOf('\n', index) + 1;
          const end = text.indexOf('\n', index);
          const around = text.slice(
            Math.max(start, index - 150),
            end < 0 ? undefined : Math.min(end, index + 150),
          );
          leaks.push(`${label} in ${file}: ${around}`);
          break;
        }
      }
    }
  }
  return leaks;
}
