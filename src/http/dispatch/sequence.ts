import type { BrokerRequest, BrokerResponse, Handler, Next } from './handler.js';

/**
 * Runs middlewares one after the other as one layer: each Express router layer costs a path match, a
 * prefix trim and a params pass per request, which a fixed list run in order does not need. Also how the
 * direct lane (directRoutes.ts) runs its chains. Behaves as Express 5 runs them: a synchronous throw or a rejected promise reaches `done(error)`, `next('route')`
 * goes on with the next one, any other error (or `'router'`) leaves the list for `done`.
 */
export function sequence(handlers: readonly Handler[]): Handler {
  const list = [...handlers];
  return (req, res, done) => {
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

function run(handler: Handler, req: BrokerRequest, res: BrokerResponse, next: Next): void {
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
