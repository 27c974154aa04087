import type { Logger } from '../telemetry/logger.js';
import type { CredentialSource } from './types.js';

/** A static key that a configuration reload can swap (`UPSTREAM_API_KEY_FILE` rotated). */
export interface StaticKey extends CredentialSource {
  /** The next call sends `key`; a call already sent keeps the one it had. */
  replace(key: string): void;
}

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
}): StaticKey {
  let credential = Promise.resolve({ accessToken: key });
  let reported = false;
  return {
    get: () => credential,
    replace(next) {
      credential = Promise.resolve({ accessToken: next });
      // A new key that is refused too deserves its own line.
      reported = false;
    },
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
