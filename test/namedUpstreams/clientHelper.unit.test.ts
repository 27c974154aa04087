import { describe, expect, it } from 'vitest';
import { createBrokerClient } from '../../src/browser/client.js';

const base = 'https://broker.test';

/** A broker behind a `fetch` that records each URL: one token per token request, 200 from the proxy. */
function recordingFetch() {
  const urls: string[] = [];
  const authorizations: (string | null)[] = [];
  let minted = 0;
  const fetch = async (url: string, init: RequestInit): Promise<Response> => {
    urls.push(url);
    if (url.startsWith(`${base}/api/client-token`)) {
      minted += 1;
      return Response.json({ token: `token-${minted}`, tokenType: 'Bearer', expiresIn: 900 });
    }
    authorizations.push(new Headers(init.headers).get('authorization'));
    return new Response('ok');
  };
  return { fetch, urls, authorizations };
}

describe('client.js with named upstreams', () => {
  it('when a client calls two upstreams, then each goes under /api/proxy/<name>/ with the one token', async () => {
    const broker = recordingFetch();
    const client = createBrokerClient({ baseUrl: base, fetch: broker.fetch });
    await Promise.all([
      client.upstream('uitpas').fetch('/passholders/me'),
      client.upstream('entry').fetch('events?q=jazz'),
    ]);
    expect(broker.urls).toEqual([
      `${base}/api/client-token`,
      `${base}/api/proxy/uitpas/passholders/me`,
      `${base}/api/proxy/entry/events?q=jazz`,
    ]);
    expect(broker.authorizations).toEqual(['Bearer token-1', 'Bearer token-1']);
  });

  it('when the client names upstreams, then the token request narrows the token to them', async () => {
    const broker = recordingFetch();
    const client = createBrokerClient({ baseUrl: base, fetch: broker.fetch, upstreams: ['entry', 'a b'] });
    await client.getToken();
    expect(broker.urls).toEqual([`${base}/api/client-token?upstreams=entry,a%20b`]);
  });

  it('when a name holds a slash, then it stays one path segment', async () => {
    const broker = recordingFetch();
    const client = createBrokerClient({ baseUrl: base, fetch: broker.fetch });
    await client.upstream('../admin').fetch('/x');
    expect(broker.urls.at(-1)).toBe(`${base}/api/proxy/..%2Fadmin/x`);
  });
});
