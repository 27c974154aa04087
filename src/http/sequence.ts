import type { NextFunction, Request, RequestHandler, Response } from 'express';

/**
 * Runs middlewares one after the other as one Express layer: each router layer costs a path match, a
 * prefix trim and a params pass per request, which a fixed list run in order does not need. Behaves as
 * Express 5 runs them: a synchronous throw or a rejected promise reaches `done(error)`, `next('route')`
 * goes on with the next one, any other error (or `'router'`) leaves the list for `done`.
 */
export function sequence(handlers: readonly RequestHandler[]): RequestHandler {
  const list = handlers.flat(Number.POSITIVE_INFINITY) as RequestHandler[];
  return (req: Request, res: Response, done: NextFunction) => {
    let index = 0;
    const next = (error?: unknown): void => {
      if (error !== undefined && error !== null && error !== 'route') {
        done(error);
        return;
      }
      const handler = list[index++];
      if (handler === undefined) {
        done();
        return;
      }
      run(handler, req, res, next);
    };
    next();
  };
}

function run(handler: RequestHandler, req: Request, res: Response, next: NextFunction): void {
  let result: unknown;
  try {
    result = handler(req, res, next);
  } catch (error) {
    next(error);
    return;
  }
  if (result !== null && typeof result === 'object' && typeof (result as Promise<void>).then === 'function') {
    (result as Promise<void>).then(undefined, (error: unknown) => {
      next(error || new Error('Rejected promise'));
    });
  }
}

/** What makes parseurl leave its fast path (and so may give another pathname): then the router decides. */
export const unusualTarget = /[\s#]/;

/**
 * Runs `handler` for a request whose target is exactly `path` (with or without a query), as written;
 * passes any other request on. Placed ahead of the router layers that never match `path`, it spares the
 * request their matching; the same handler mounted as a route serves every other spelling Express accepts.
 */
export function exactPath(path: string, handler: RequestHandler): RequestHandler {
  const withQuery = `${path}?`;
  return (req, res, next) => {
    const url = req.url;
    if ((url === path || url.startsWith(withQuery)) && !unusualTarget.test(url)) handler(req, res, next);
    else next();
  };
}
