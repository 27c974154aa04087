import type { Logger } from '../telemetry/logger.js';
import type { CredentialSource } from './types.js';

/**
 * `UPSTREAM_API_KEY`: the credential of an API that takes a long-lived key and has no token endpoint.
 * Nothing can renew it, so a 401 or 403 from the API is passed to the client as it is, and logged once as
 * what it almost always is: a wrong, revoked or under-privileged key in the configuration.
 */
export function createStaticKey({
  key,
  setting,
  logger,
}: {
  key: string;
  /** The variable that holds it, named in the log line. */
  setting: string;
  logger: Logger;
}): CredentialSource {
  const credential = Promise.resolve({ accessToken: key });
  let reported = false;
  return {
    get: () => credential,
    invalidate: () => Promise.resolve(),
    refused(status) {
      if (reported) return;
      reported = true;
      logger.error(
        { status, setting },
        `the API refused the static API key with ${status}: check ${setting} (the answer is passed on; nothing can renew a static key)`,
      );
    },
  };
}
