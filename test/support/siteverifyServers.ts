import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One siteverify request as the provider received it (form fields), and what it answers. */
export interface SiteverifyRequest {
  fields: Record<string, string>;
  contentType: string | undefined;
}

/** How the stand-in answers: a status and a body (JSON text or anything), or never (a timeout). */
export type SiteverifyBehaviour = (request: SiteverifyRequest) => { status: number; body: string } | 'hang';

export interface SiteverifyServer {
  url: string;
  requests: SiteverifyRequest[];
  setBehaviour(behaviour: SiteverifyBehaviour): void;
  /** Back to the documented behaviour. */
  reset(): void;
  close(): Promise<void>;
}

/**
 * A stand-in for Turnstile's, hCaptcha's and reCAPTCHA's siteverify endpoints (the real ones are off this
 * machine's network), speaking their documented request (POST, form-encoded `secret`, `response`,
 * `remoteip`, `idempotency_key`) and answer (`{success, challenge_ts, hostname, "error-codes", action}`).
 * By default a token is valid once: a second use answers `timeout-or-duplicate`, as the providers do.
 */
export async function startSiteverifyServer(expected: {
  secret: string;
  hostname: string;
  action?: string;
}): Promise<SiteverifyServer> {
  const requests: SiteverifyRequest[] = [];
  const used = new Set<string>();
  const standard: SiteverifyBehaviour = ({ fields }) => {
    const response = fields.response ?? '';
    const fresh = response.startsWith('ok-') && !used.has(response);
    if (fresh) used.add(response);
    const valid = fields.secret === expected.secret && fresh;
    return {
      status: 200,
      body: JSON.stringify({
        success: valid,
        challenge_ts: new Date(Date.now() - 2_000).toISOString(),
        hostname: expected.hostname,
        'error-codes': valid
          ? []
          : used.has(response)
            ? ['timeout-or-duplicate']
            : ['invalid-input-response'],
        ...(expected.action ? { action: expected.action } : {}),
      }),
    };
  };
  let behaviour = standard;
  const server = createServer(async (req, res) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    const request = {
      fields: Object.fromEntries(new URLSearchParams(text)),
      contentType: req.headers['content-type'],
    };
    requests.push(request);
    const answer = behaviour(request);
    // Never answered: the broker's timeout is what ends the exchange.
    if (answer === 'hang') return;
    res.writeHead(answer.status, { 'content-type': 'application/json' });
    res.end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/siteverify`,
    requests,
    setBehaviour: (next) => {
      behaviour = next;
    },
    reset: () => {
      behaviour = standard;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
