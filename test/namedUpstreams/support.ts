import type { TestAuthServer } from '../support/oidcProvider.js';
import { call, type RawAnswer } from '../support/rawCall.js';

/**
 * The environment of a broker with named upstreams against `auth`: `UPSTREAMS` and each upstream's
 * `UPSTREAM_<NAME>_*` settings. The unprefixed settings startBroker sets are blanked (an empty value
 * is unset): with `UPSTREAMS` they would be every name's shared defaults, and these names set their own.
 */
export function namedUpstreamsEnv(
  auth: TestAuthServer,
  upstreams: Record<string, Record<string, string>>,
): Record<string, string> {
  const env: Record<string, string> = {
    UPSTREAMS: Object.keys(upstreams).join(','),
    UPSTREAM_TOKEN_URL: '',
    UPSTREAM_CLIENT_ID: '',
    UPSTREAM_CLIENT_SECRET: '',
    UPSTREAM_RESOURCE: '',
    UPSTREAM_SCOPE: '',
    RATE_LIMIT_CLIENT_TOKEN: 'off',
  };
  for (const [name, settings] of Object.entries(upstreams)) {
    const prefix = `UPSTREAM_${name.toUpperCase().replaceAll('-', '_')}_`;
    const all: Record<string, string> = {
      TOKEN_URL: auth.tokenUrl,
      CLIENT_ID: auth.clientId,
      CLIENT_SECRET: auth.clientSecret,
      RESOURCE: auth.resource,
      SCOPE: auth.scope,
      ...settings,
    };
    for (const [setting, value] of Object.entries(all)) env[prefix + setting] = value;
  }
  return env;
}

/** A client token from `/api/client-token` as a page of `origin` gets it. */
export function clientTokenFor(brokerUrl: string, origin: string, query = ''): Promise<RawAnswer> {
  return call(brokerUrl, `/api/client-token${query}`, { method: 'POST', headers: { origin } });
}

export async function tokenFor(brokerUrl: string, origin: string, query = ''): Promise<string> {
  const answer = await clientTokenFor(brokerUrl, origin, query);
  if (answer.status !== 200) throw new Error(`client token: ${answer.status} ${answer.text()}`);
  return answer.json().token as string;
}

/** A call through the proxy with a client token, as the page of `origin` makes it. */
export function proxied(brokerUrl: string, path: string, token: string, origin: string): Promise<RawAnswer> {
  return call(brokerUrl, path, { headers: { origin, authorization: `Bearer ${token}` } });
}
