import type { Clock } from '../clock.js';
import { meant } from '../config/typos.js';

/**
 * What every CLI command gets: its environment, where to write, and the values it must never print.
 * Commands take this instead of touching `process` so that the entry point alone owns the process.
 */
export interface CliContext {
  env: Record<string, string | undefined>;
  cwd: string;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readStdin: () => Promise<string>;
  /** Secrets seen while running (API keys, client secrets); error output is scrubbed of every one. */
  secrets: Set<string>;
  /** What "now" is for activation times; the system clock when absent. */
  clock?: Clock;
  /** Aborted when a long-running command should stop (SIGINT or SIGTERM at the entry point). */
  signal?: AbortSignal;
}

/** The command line itself is wrong: exit status 2, with a pointer to the command's `--help`. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The command ran and could not do its job: exit status 1. */
export class CliFailure extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliFailure';
  }
}

/** One command or subcommand: its help text and what it does. */
export interface Command {
  name: string;
  summary: string;
  help: string;
  /** Resolves to the exit status; throws UsageError or CliFailure for the usual failures. */
  run: (args: string[], ctx: CliContext) => Promise<number>;
}

/** Shorter secrets would match ordinary words in a message; every real secret here is longer. */
const minimumRedactedLength = 4;

/** Replaces every known secret in `text` with `[redacted]`. */
export function redact(text: string, secrets: Iterable<string>): string {
  let result = text;
  for (const secret of secrets) {
    if (secret.length >= minimumRedactedLength) result = result.split(secret).join('[redacted]');
  }
  return result;
}

/**
 * Runs `node:util` parseArgs and turns its errors into UsageErrors. Only the first line of its
 * message is kept, and a stray positional is not quoted back: it could be a secret typed in the wrong place.
 * An unknown option close to one of `options` (`--orgin`) is answered with the one meant.
 */
export function parseUsage<T>(parse: () => T, options: readonly string[] = []): T {
  try {
    return parse();
  } catch (error) {
    const { code, message } = error as { code?: string; message: string };
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError('unexpected argument');
    const unknown = code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'(--[^'=]+)/.exec(message)?.[1] : undefined;
    const suggestion =
      unknown &&
      meant(
        unknown,
        options.map((option) => `--${option}`),
      );
    if (suggestion) throw new UsageError(`unknown option ${unknown}; did you mean ${suggestion}?`);
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      throw new UsageError(message.split('\n')[0] ?? message);
    }
    throw error;
  }
}

/** Parses a whole positive number of an option, or throws a UsageError naming the option. */
export function positiveInteger(value: string, option: string, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) {
    throw new UsageError(`${option} must be a whole number from 1 to ${max}`);
  }
  return Number(value);
}
