import express, { type RequestHandler } from 'express';
import helmet from 'helmet';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { fixedHeaders } from '../../src/http/middleware/fixedHeaders.js';

const policy = () =>
  helmet({
    contentSecurityPolicy: {
      directives: { defaultSrc: ["'self'"], frameAncestors: ["'none'"], formAction: ["'none'"] },
    },
  });

function appWith(middleware: RequestHandler) {
  const app = express();
  app.use(middleware);
  app.get('/x', (_req, res) => {
    res.json({ ok: true });
  });
  return app;
}

/** The headers helmet is responsible for: everything but what Express and Node add per answer. */
function securityHeaders(headers: Record<string, unknown>) {
  const perAnswer = new Set(['date', 'connection', 'keep-alive', 'content-length', 'content-type', 'etag']);
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !perAnswer.has(name)));
}

describe('fixed headers', () => {
  it('when helmet is run once and replayed, then every answer carries exactly the headers helmet sets', async () => {
    const direct = await request(appWith(policy())).get('/x');
    const replayed = await request(appWith(fixedHeaders(policy()))).get('/x');
    expect(Object.keys(securityHeaders(direct.headers)).length).toBeGreaterThan(10);
    expect(securityHeaders(replayed.headers)).toEqual(securityHeaders(direct.headers));
    // Helmet removes X-Powered-By; the replay must as well.
    expect(replayed.headers['x-powered-by']).toBeUndefined();
  });

  it('when a middleware does not pass the request on at once, then it is refused at start-up', () => {
    const later: RequestHandler = (_req, _res, next) => {
      setTimeout(next, 0);
    };
    expect(() => fixedHeaders(later)).toThrow(/synchronously/);
  });

  it('when a middleware fails, then its error surfaces at start-up', () => {
    const failing: RequestHandler = (_req, _res, next) => next(new Error('bad policy'));
    expect(() => fixedHeaders(failing)).toThrow('bad policy');
  });
});
