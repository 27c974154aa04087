import type { z } from 'zod';

/**
 * The steps every part of the environment goes through: `NAME_FILE` secrets read into `NAME`, and
 * zod issues turned into one problem line per variable.
 */

/** `env` with every `NAME_FILE` of `secrets` read into `NAME`. */
export function resolveSecretFiles(
  env: Record<string, string | undefined>,
  secrets: readonly string[],
  readFile: (path: string) => string,
  problems: string[],
  /** The name a line should show for a setting (a named upstream's prefixed variable). */
  shown: (name: string) => string = (name) => name,
): Record<string, string | undefined> {
  const resolved: Record<string, string | undefined> = { ...env };
  for (const name of secrets) {
    const file = env[`${name}_FILE`];
    if (!file) continue;
    if (env[name]) {
      problems.push(`${shown(name)}_FILE: set together with ${shown(name)}; use one of them`);
      continue;
    }
    try {
      resolved[name] = readFile(file).trim();
    } catch (error) {
      problems.push(
        `${shown(name)}_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  return resolved;
}

/** One line per issue, naming the variable; for secrets only the rule, since zod may quote the input. */
export function issueProblems(
  issues: readonly z.core.$ZodIssue[],
  secrets: readonly string[],
  shown: (name: string) => string = (name) => name,
): string[] {
  return issues.map((issue) => {
    const name = String(issue.path[0] ?? 'environment');
    const message =
      secrets.includes(name) && issue.code === 'invalid_type'
        ? 'has the wrong type'
        : issue.code === 'invalid_value'
          ? `must be one of ${issue.values.join(', ')}`
          : issue.message;
    return `${shown(name)}: ${message}`;
  });
}
