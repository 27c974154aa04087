import type { z } from 'zod';

/**
 * The steps every part of the environment goes through: `NAME_FILE` secrets read into `NAME`, and
 * zod issues turned into one problem line per variable.
 */

/**
 * What the example files (`deploy/kubernetes/secret.example.yaml`) hold in place of a secret: started
 * with it, the broker would take the placeholder for a real client secret or API key.
 */
const placeholder = /REPLACE_ME/i;

/**
 * `env` with every `NAME_FILE` of `secrets` read into `NAME`. A secret that is still a placeholder is
 * reported here, in one line; `placeholders` names them, so that their schema issues are not reported too.
 */
export function resolveSecretFiles(
  env: Record<string, string | undefined>,
  secrets: readonly string[],
  readFile: (path: string) => string,
  problems: string[],
  /** The name a line should show for a setting (a named upstream's prefixed variable). */
  shown: (name: string) => string = (name) => name,
  placeholders: Set<string> = new Set(),
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
  for (const name of secrets) {
    if (!placeholder.test(resolved[name] ?? '')) continue;
    placeholders.add(name);
    const from = env[`${name}_FILE`] ? `${shown(name)}_FILE` : shown(name);
    problems.push(
      `${from}: still holds the REPLACE_ME placeholder of the example files; put the real value in`,
    );
  }
  return resolved;
}

/** One line per issue, naming the variable; for secrets only the rule, since zod may quote the input. */
export function issueProblems(
  issues: readonly z.core.$ZodIssue[],
  secrets: readonly string[],
  shown: (name: string) => string = (name) => name,
  placeholders: ReadonlySet<string> = new Set(),
): string[] {
  return issues.flatMap((issue) => {
    const name = String(issue.path[0] ?? 'environment');
    if (placeholders.has(name)) return [];
    const message =
      secrets.includes(name) && issue.code === 'invalid_type'
        ? 'has the wrong type'
        : issue.code === 'invalid_value'
          ? `must be one of ${issue.values.join(', ')}`
          : issue.message;
    return [`${shown(name)}: ${message}`];
  });
}
