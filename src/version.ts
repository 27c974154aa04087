import { readFileSync } from 'node:fs';

/** The package's version; package.json sits one level up from src/ and dist/ alike. */
export const packageVersion: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
