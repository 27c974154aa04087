import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type CliContext,
  CliFailure,
  type Command,
  parseUsage,
  positiveInteger,
  UsageError,
} from './context.js';

const defaultTimeoutSeconds = 10;

/**
 * Registers every `--api-key` value before parsing, so that even an error from parseArgs itself
 * cannot echo the key.
 */
function rememberArgvKeys(args: string[], secrets: Set<string>): void {
  for (const [index, arg] of args.entries()) {
    if (arg === '--') break;
    if (arg === '--api-key' && args[index + 1] !== undefined) secrets.add(args[index + 1] as string);
    if (arg.startsWith('--api-key=')) secrets.add(arg.slice('--api-key='.length));
  }
}

async function apiKey(
  values: { 'api-key'?: string; 'api-key-file'?: string },
  ctx: CliContext,
): Promise<string> {
  if (values['api-key'] !== undefined && values['api-key-file'] !== undefined) {
    throw new UsageError('use --api-key or --api-key-file, not both');
  }
  let key = values['api-key'] ?? ctx.env.BROKER_API_KEY;
  const file = values['api-key-file'];
  if (file !== undefined) {
    try {
      key = await readFile(resolve(ctx.cwd, file), 'utf8');
    } catch (error) {
      throw new CliFailure(`cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  key = key?.trim();
  if (!key) throw new UsageError('missing API key: pass --api-key-file, set BROKER_API_KEY, or --api-key');
  ctx.secrets.add(key);
  return key;
}

function brokerUrl(value: string | undefined): URL {
  if (value === undefined) throw new UsageError('missing --url (or BROKER_URL)');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError('--url must be an http(s) URL such as http://127.0.0.1:8080');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError('--url must be an http(s) URL such as http://127.0.0.1:8080');
  }
  // Resolve the route against the base as a directory, so a broker mounted under a path prefix works.
  if (!url.pathname.endsWith('/')) url.pathname = `${url.pathname}/`;
  return new URL('api/auth/claim', url);
}

/** The broker's RFC 9457 answer as `code: detail`, or the bare HTTP status when it sent none. */
function describeFailure(response: Response, text: string): string {
  const retryAfter = response.headers.get('retry-after');
  const retry = retryAfter ? ` (retry after ${retryAfter} s)` : '';
  try {
    const problem = JSON.parse(text) as { code?: unknown; detail?: unknown; title?: unknown };
    if (typeof problem.code === 'string') {
      const detail = typeof problem.detail === 'string' ? problem.detail : problem.title;
      return `${problem.code}: ${typeof detail === 'string' ? detail : `HTTP ${response.status}`}${retry}`;
    }
  } catch {
    // Not JSON: a proxy or something that is not the broker answered; the status says enough.
  }
  return `the broker answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}${retry}`;
}

async function post(url: URL, key: string, body: string, timeoutMs: number): Promise<Response> {
  try {
    return await fetch(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        accept: 'application/json, application/problem+json',
      },
      body,
      // A redirect is reported rather than followed: the API key is not sent to a second address.
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const { name, cause } = error as { name?: string; cause?: { code?: string } };
    if (name === 'TimeoutError') throw new CliFailure(`the broker at ${url.origin} did not answer in time`);
    throw new CliFailure(`cannot reach the broker at ${url.origin} (${cause?.code ?? name ?? 'error'})`);
  }
}

/** `token-broker claim`: a client token from a running broker, as a backend would get one. */
export const claimCommand: Command = {
  name: 'claim',
  summary: 'ask a running broker for a client token (POST /api/auth/claim)',
  help: `Usage: token-broker claim --url <broker url> --origin <origin> [--ip <ip>]
                          [--upstreams <name,...>] [--api-key-file <file> | --api-key <key>]

Posts {origin, ip, upstreams} to <broker url>/api/auth/claim with the broker API key as
"Authorization: Bearer", and prints the JSON answer: {token, expiration, expiresIn, expiresAt}.
On an error answer prints "code: detail" on standard error and exits 1.

Options:
  --url <url>            the broker's base URL, e.g. http://127.0.0.1:8080 (default: $BROKER_URL)
  --origin <origin>      the origin the token is bound to, e.g. https://app.example.com
  --ip <ip>              bind the token to this client IP as well
  --upstreams <names>    open only these named upstreams, comma-separated, e.g. uitpas,entry
                         (default: every upstream the origin may reach)
  --api-key-file <file>  read the broker API key from a file
  --api-key <key>        the broker API key (visible to other users in the process list:
                         prefer --api-key-file or $BROKER_API_KEY)
  --timeout <seconds>    give up after this long (default ${defaultTimeoutSeconds})
  -h, --help             show this help

Environment:
  BROKER_URL, BROKER_API_KEY   used when --url or the API key options are not given`,
  async run(args, ctx) {
    rememberArgvKeys(args, ctx.secrets);
    const options = {
      url: { type: 'string' },
      origin: { type: 'string' },
      ip: { type: 'string' },
      upstreams: { type: 'string' },
      'api-key': { type: 'string' },
      'api-key-file': { type: 'string' },
      timeout: { type: 'string' },
    } as const;
    const { values, positionals } = parseUsage(
      () => parseArgs({ args, options, allowPositionals: true }),
      Object.keys(options),
    );
    if (positionals.length > 0) throw new UsageError('unexpected argument');
    const url = brokerUrl(values.url ?? ctx.env.BROKER_URL);
    if (!values.origin) throw new UsageError('missing --origin');
    if (values.upstreams !== undefined && values.upstreams.trim() === '') {
      throw new UsageError('--upstreams must name some upstreams, e.g. --upstreams uitpas,entry');
    }
    const timeout =
      values.timeout === undefined
        ? defaultTimeoutSeconds
        : positiveInteger(values.timeout, '--timeout', 300);
    const key = await apiKey(values, ctx);

    const response = await post(
      url,
      key,
      JSON.stringify({ origin: values.origin, ip: values.ip, upstreams: values.upstreams }),
      timeout * 1000,
    );
    const text = await response.text();
    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get('location');
      throw new CliFailure(
        `the broker answered HTTP ${response.status}${location ? ` to ${location}` : ''}; pass the final address as --url`,
      );
    }
    if (response.status === 404 && url.pathname !== '/api/auth/claim') {
      // The route was resolved under the path of --url: that path is the likely mistake.
      throw new CliFailure(
        `${describeFailure(response, text)}; --url is the broker's base URL, and ${url.origin}${url.pathname} has no claim route: try --url ${url.origin}`,
      );
    }
    if (!response.ok) throw new CliFailure(describeFailure(response, text));
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new CliFailure(`the broker answered HTTP ${response.status} without JSON`);
    }
    ctx.stdout(`${JSON.stringify(answer, null, 2)}\n`);
    return 0;
  },
};
