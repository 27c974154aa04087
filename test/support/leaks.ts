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

/** Lines of `logs.ndjson` that hold a secret listed in `secrets.ndjson`, with the secret's label. */
export function findLeaks(dir: string): string[] {
  const secretsFile = join(dir, 'secrets.ndjson');
  const logsFile = join(dir, 'logs.ndjson');
  if (!existsSync(secretsFile) || !existsSync(logsFile)) return [];
  const logs = readFileSync(logsFile, 'utf8');
  const leaks: string[] = [];
  const seen = new Set<string>();
  for (const line of readFileSync(secretsFile, 'utf8').split('\n')) {
    if (!line) continue;
    const { label, value } = JSON.parse(line) as { label: string; value: string };
    if (seen.has(value)) continue;
    seen.add(value);
    for (const spelling of encodings(value)) {
      // Short fragments would match by chance; every secret the suites register is long.
      if (spelling.length < 12) continue;
      const index = logs.indexOf(spelling);
      if (index >= 0) {
        const start = logs.lastIndexOf('\n', index) + 1;
        leaks.push(`${label}: ${logs.slice(start, logs.indexOf('\n', index)).slice(0, 300)}`);
        break;
      }
    }
  }
  return leaks;
}
