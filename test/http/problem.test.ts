import { describe, expect, it } from 'vitest';
import { BrokerError, errorCatalog } from '../../src/errors.js';
import { describeCause, problemFor, sendProblem, toBrokerError } from '../../src/http/problem.js';
import { serveHandlers } from '../support/handlerServer.js';
import { captureLogs } from '../support/logs.js';
import { call } from '../support/rawCall.js';

describe('problemFor', () => {
  it('when an error is exposed, then the problem carries its detail, type, title and instance', () => {
    const error = new BrokerError('origin_not_allowed', {
      detail: 'https://x.example is not in ALLOWED_ORIGINS',
    });
    expect(problemFor(error, 'req-1')).toEqual({
      type: 'urn:token-broker:problem:origin_not_allowed',
      title: errorCatalog.origin_not_allowed.title,
      status: 403,
      code: 'origin_not_allowed',
      detail: 'https://x.example is not in ALLOWED_ORIGINS',
      instance: 'req-1',
    });
  });

  it('when an internal error has a detail, then the problem leaves it out', () => {
    const problem = problemFor(new BrokerError('internal_error', { detail: 'a stack or a secret' }));
    expect(problem).toEqual({
      type: 'urn:token-broker:problem:internal_error',
      title: errorCatalog.internal_error.title,
      status: 500,
      code: 'internal_error',
    });
  });
});

describe('toBrokerError', () => {
  const code = (error: unknown) => toBrokerError(error).code;

  it('when a body parser refuses a body, then its status and type map to our codes', () => {
    expect(code({ type: 'entity.too.large', status: 413 })).toBe('payload_too_large');
    expect(code({ status: 413 })).toBe('payload_too_large');
    expect(code({ type: 'encoding.unsupported', status: 415 })).toBe('unsupported_media_type');
    expect(code({ type: 'charset.unsupported', status: 415 })).toBe('unsupported_media_type');
    expect(code({ status: 404 })).toBe('not_found');
    expect(code({ type: 'entity.parse.failed', status: 400 })).toBe('invalid_request');
  });

  it('when a 4xx comes from a parser, then the detail says the body could not be parsed and the cause is kept', () => {
    const cause = { type: 'entity.parse.failed', status: 400 };
    const error = toBrokerError(cause);
    expect(error.detail).toBe('the request body could not be parsed');
    expect(error.cause).toBe(cause);
  });

  it('when a BrokerError is given, then it is returned as it is', () => {
    const error = new BrokerError('rate_limited');
    expect(toBrokerError(error)).toBe(error);
  });

  it('when anything else is thrown, then it is an internal error', () => {
    expect(code(new Error('bug'))).toBe('internal_error');
    expect(code({ status: 503 })).toBe('internal_error');
    expect(code(undefined)).toBe('internal_error');
    expect(code('a string')).toBe('internal_error');
  });
});

describe('describeCause', () => {
  it('when causes are chained, then the innermost message and the first system code are given', () => {
    const inner = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    const outer = Object.assign(new Error('fetch failed', { cause: inner }), { code: 'UND_ERR_X' });
    expect(describeCause(outer)).toEqual({
      reason: 'connect ECONNREFUSED 127.0.0.1:1',
      errorCode: 'UND_ERR_X',
    });
  });

  it('when there is no Error, then nothing is described', () => {
    expect(describeCause(undefined)).toEqual({});
    expect(describeCause('text')).toEqual({});
  });

  it('when a cause chain loops, then the walk stops', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    (a as { cause?: unknown }).cause = b;
    expect(describeCause(a).reason).toMatch(/^[ab]$/);
  });
});

describe('sendProblem and the error handler on a real socket', () => {
  it('when an error is sent, then the answer is problem+json, no-store, with its headers and exact length', async () => {
    const logs = captureLogs();
    const url = await serveHandlers(
      [
        (_req, res) => {
          res.locals.requestId = 'req-42';
          sendProblem(
            res,
            new BrokerError('rate_limited', { detail: 'slow down', headers: { 'Retry-After': '7' } }),
          );
        },
      ],
      logs.logger,
    );
    const answer = await call(url, '/');
    expect(answer.status).toBe(429);
    expect(answer.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(answer.headers['retry-after']).toBe('7');
    expect(Number(answer.headers['content-length'])).toBe(answer.body.length);
    expect(answer.json()).toMatchObject({ code: 'rate_limited', detail: 'slow down', instance: 'req-42' });
  });

  it('when a HEAD request is refused, then the headers come without a body', async () => {
    const url = await serveHandlers(
      [(_req, res) => sendProblem(res, new BrokerError('not_found'))],
      captureLogs().logger,
    );
    const answer = await call(url, '/', { method: 'HEAD' });
    expect(answer.status).toBe(404);
    expect(answer.body.length).toBe(0);
  });

  it('when a bug throws, then the answer is a bare 500 and the log has the stack at error level', async () => {
    const logs = captureLogs();
    const url = await serveHandlers(
      [
        () => {
          throw new Error('a bug with a detail nobody outside may see');
        },
      ],
      logs.logger,
    );
    const answer = await call(url, '/');
    expect(answer.status).toBe(500);
    expect(answer.text()).not.toContain('nobody outside');
    const line = logs.lines().find((entry) => entry.code === 'internal_error');
    expect(line).toMatchObject({
      level: 'error',
      err: {
        message: 'a bug with a detail nobody outside may see',
        stack: expect.stringMatching(/\n\s+at /),
      },
    });
  });

  it('when an upstream is unreachable, then one warn line gives the reason and no stack', async () => {
    const logs = captureLogs();
    const cause = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const url = await serveHandlers(
      [(_req, _res, next) => next(new BrokerError('upstream_unavailable', { cause }))],
      logs.logger,
    );
    expect((await call(url, '/')).status).toBe(503);
    const line = logs.lines().find((entry) => entry.code === 'upstream_unavailable');
    expect(line).toMatchObject({ level: 'warn', reason: 'connect ECONNREFUSED', errorCode: 'ECONNREFUSED' });
    expect(line?.err).toBeUndefined();
  });

  it('when a 4xx is answered, then nothing is logged by the error handler', async () => {
    const logs = captureLogs();
    const url = await serveHandlers(
      [(_req, _res, next) => next(new BrokerError('invalid_request'))],
      logs.logger,
    );
    expect((await call(url, '/')).status).toBe(400);
    expect(logs.lines()).toEqual([]);
  });

  it('when an answer already started fails, then the connection is cut, since no status can be sent', async () => {
    const url = await serveHandlers(
      [
        (_req, res, next) => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('partial');
          next(new BrokerError('upstream_unavailable'));
        },
      ],
      captureLogs().logger,
    );
    await expect(call(url, '/')).rejects.toThrow(/aborted|ECONNRESET|socket hang up/);
  });
});
