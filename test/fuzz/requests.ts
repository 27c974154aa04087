import fc from 'fast-check';
import { afterAll, beforeAll, expect } from 'vitest';
import { errorCatalog } from '../../src/errors.js';
import { type Answer, appOrigin, type FakeUpstreamBroker, startBroker } from '../support/broker.js';
import { expectNoSecrets } from '../support/logs.js';

/** Cases per route: at least 1,000 in `npm test`; `npm run fuzz` sets FUZZ_RUNS=20000. */
export const numRuns = Number(process.env.FUZZ_RUNS ?? 1000);

/**
 * Per-test time limit, about 100 ms a case: 1,000 cases took up to 66 s on two cores shared with a
 * second suite, where the former 30 ms a case timed out.
 */
export const fuzzTimeoutMs = Math.max(120_000, numRuns * 100);

/** One generated request. */
export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | undefined;
}

export interface FuzzTarget {
  broker: FakeUpstreamBroker;
  /** A valid client token for `appOrigin` from 127.0.0.1. */
  clientToken: string;
}

/**
 * The broker every fuzzer hits (a fake upstream and an API answering a fixed body, see
 * ../support/broker.ts), started before the file's tests and closed after them. The object is filled in
 * by `beforeAll`, so read it inside tests only.
 */
export function useFuzzTarget(): FuzzTarget {
  const target = {} as FuzzTarget;
  beforeAll(async () => {
    const broker = await startBroker({ upstream: 'fake', api: 'fixed' });
    Object.assign(target, { broker, clientToken: await broker.clientToken() });
  });
  afterAll(() => target.broker?.close());
  return target;
}

/** Characters undici lets through in a header value: visible ASCII, space, tab and Latin-1 letters. */
const headerChar = fc.oneof(
  { weight: 20, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)) },
  { weight: 1, arbitrary: fc.constantFrom('\t', 'é', 'ÿ', '\u00a0') },
);
export const headerValue = (maxLength = 120) => fc.string({ unit: headerChar, maxLength });

/** Characters undici accepts in a request target (U+0021..U+00FF), `#` excluded. */
const pathChar = fc
  .integer({ min: 0x21, max: 0x7e })
  .filter((code) => code !== 0x23)
  .map((code) => String.fromCharCode(code));
export const rawPathSuffix = fc.string({ unit: pathChar, maxLength: 80 });

const fieldNames = [
  'token',
  'origin',
  'ip',
  'token_type_hint',
  '__proto__',
  'constructor',
  'toString',
  'a[b]',
  '',
];
const fieldName = fc.oneof(fc.constantFrom(...fieldNames), fc.string({ maxLength: 12 }));
const fieldValue = (secrets: fc.Arbitrary<string>) =>
  fc.oneof(
    fc.string({ maxLength: 40 }),
    secrets,
    fc.constantFrom(appOrigin, 'null', '::ffff:1.2.3.4', '1.2.3', ''),
  );

/** A query string of arbitrary fields (duplicates, prototype names, odd encodings) or raw garbage. */
export function queryString(secrets: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constant(''),
    fc
      .array(fc.tuple(fieldName, fieldValue(secrets)), { maxLength: 6 })
      .map(
        (pairs) => `?${pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}`,
      ),
    rawPathSuffix.map((raw) => `?${raw}`),
  );
}

const contentTypes = [
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'application/json; charset=bogus',
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=latin1',
  'text/plain',
  'multipart/form-data; boundary=x',
  'application/problem+json',
  'application/*',
  '*/*',
];

/** JSON of any shape, form bodies, garbage, and bodies past MAX_BODY_BYTES, with a matching or lying type. */
export function bodyAndType(secrets: fc.Arbitrary<string>): fc.Arbitrary<{ body?: string; type?: string }> {
  const type = fc.oneof(fc.constantFrom(...contentTypes), headerValue(40));
  const form = fc
    .array(fc.tuple(fieldName, fieldValue(secrets)), { maxLength: 25 })
    .map((pairs) => new URLSearchParams(pairs).toString());
  const json = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value) ?? 'null'),
    fc.dictionary(fieldName, fieldValue(secrets), { maxKeys: 5 }).map((value) => JSON.stringify(value)),
  );
  const body = fc.oneof(
    { weight: 4, arbitrary: json },
    { weight: 3, arbitrary: form },
    { weight: 2, arbitrary: fc.string({ maxLength: 200 }) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 16_000, max: 40_000 }).map((size) => `{"token":"${'x'.repeat(size)}"}`),
    },
  );
  return fc.oneof(fc.constant({}), fc.record({ body, type }), fc.record({ body }));
}

/** Credentials in every state: the real key, a valid client token, tampered and garbage ones. */
export function credential(target: { apiKey: string; clientToken?: string }): fc.Arbitrary<string> {
  const token = target.clientToken ?? 'eyJhbGciOiJub25lIn0.e30.';
  const [head = '', payload = '', signature = ''] = token.split('.');
  return fc.oneof(
    fc.constant(target.apiKey),
    fc.constant(token),
    fc.constant(`${head}.${payload}.${signature.slice(0, -2)}`),
    fc.constant(`${head}.${payload}x.${signature}`),
    fc.constant(`eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.${payload}.`),
    headerValue(60),
    fc.string({ unit: fc.constantFrom(...'ABCDEFabcdef0123456789-_.'), maxLength: 400 }),
  );
}

export function authorization(secrets: fc.Arbitrary<string>): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    fc.constant(undefined),
    secrets.map((value) => `Bearer ${value}`),
    secrets.map((value) => `bearer   ${value}  `),
    secrets.map((value) => `Basic ${value}`),
    headerValue(80),
  );
}

const requestId = fc.oneof(fc.constant(undefined), fc.uuid(), headerValue(200), fc.constant('a'.repeat(129)));
const originHeader = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom(
    appOrigin,
    'HTTPS://APP.EXAMPLE.COM:443',
    'https://a.example.org',
    'null',
    'https://evil.example',
  ),
  fc.webUrl(),
  headerValue(80),
);
const forwardedFor = fc.oneof(
  fc.constant(undefined),
  fc.ipV4().map(String),
  fc.ipV6().map(String),
  fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), headerValue(20)), { maxLength: 4 }).map((list) => list.join(', ')),
);

/** Headers a browser, a backend or an attacker might send; undefined entries are left out. */
export function headers(secrets: fc.Arbitrary<string>): fc.Arbitrary<Record<string, string>> {
  return fc
    .record({
      origin: originHeader,
      referer: fc.oneof(fc.constant(undefined), fc.webUrl({ withQueryParameters: true }), headerValue(80)),
      authorization: authorization(secrets),
      'x-client-token': fc.oneof(fc.constant(undefined), secrets),
      'x-request-id': requestId,
      'x-forwarded-for': forwardedFor,
      accept: fc.oneof(
        fc.constant(undefined),
        fc.constantFrom('application/json', 'text/html', '*/*'),
        headerValue(30),
      ),
    })
    .map((record) =>
      Object.fromEntries(
        Object.entries(record).filter((entry): entry is [string, string] => entry[1] !== undefined),
      ),
    );
}

export const methods = fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD');

/** Assembles a request from its generated parts. */
export function assemble(
  method: string,
  path: string,
  headerSet: Record<string, string>,
  payload: { body?: string; type?: string },
): FuzzRequest {
  const withBody = payload.body !== undefined && method !== 'GET' && method !== 'HEAD';
  return {
    method,
    path,
    headers: { ...headerSet, ...(withBody && payload.type ? { 'content-type': payload.type } : {}) },
    body: withBody ? payload.body : undefined,
  };
}

const safeRequestId = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Sends one request and checks what every answer must satisfy: no 5xx (but 503 where `allow503`), every
 * 4xx/5xx a problem+json with a catalogued code and its status, a safe request id, and no secret the
 * caller did not send itself (`mayHold` lists those an answer is allowed to carry, e.g. the upstream token).
 */
export async function sendAndCheck(
  broker: FakeUpstreamBroker,
  request: FuzzRequest,
  options: { allow503?: boolean; mayHold?: (answer: Answer) => string[] } = {},
): Promise<Answer> {
  const answer = await broker.request(request);
  const where = `${request.method} ${request.path} -> ${answer.status} ${answer.body.slice(0, 200)}`;
  if (answer.status >= 500) expect(options.allow503 && answer.status === 503, where).toBe(true);
  if (answer.status >= 400) {
    expect(String(answer.headers['content-type']), where).toMatch(/^application\/problem\+json/);
    if (request.method !== 'HEAD') {
      const problem = JSON.parse(answer.body) as { code: keyof typeof errorCatalog; status: number };
      expect(Object.keys(errorCatalog), where).toContain(problem.code);
      expect(problem.status, where).toBe(errorCatalog[problem.code].status);
      expect(answer.status, where).toBe(problem.status);
      expect(answer.headers['cache-control'], where).toBe('no-store');
    }
  }
  expect(String(answer.headers['x-request-id']), where).toMatch(safeRequestId);
  const sent = JSON.stringify(request);
  const allowed = new Set(options.mayHold?.(answer) ?? []);
  const secrets = broker.secrets().filter((secret) => !sent.includes(secret) && !allowed.has(secret));
  expectNoSecrets(answer.body, secrets, where);
  expectNoSecrets(JSON.stringify(answer.headers), secrets, where);
  return answer;
}

/** The process is still healthy: liveness answers. */
export async function expectHealthy(broker: FakeUpstreamBroker): Promise<void> {
  const answer = await broker.request({ path: '/healthz' });
  expect(answer.status).toBe(200);
  expect(JSON.parse(answer.body)).toMatchObject({ status: 'ok' });
}
