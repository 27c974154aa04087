import { ConfigError, type LoadConfigOptions, loadConfig } from '../../src/config/index.js';
import { BrokerError } from '../../src/errors.js';

/** The BrokerError `promise` rejects with; anything else (a value, another error) fails the test. */
export async function refusal(promise: Promise<unknown>): Promise<BrokerError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof BrokerError)) throw new Error('expected a BrokerError');
  return error;
}

/** The problem lines loadConfig reports for `env`; a config that loads fails the test. */
export function configProblems(env: Record<string, string>, options: LoadConfigOptions = {}): string[] {
  try {
    loadConfig(env, options);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}
