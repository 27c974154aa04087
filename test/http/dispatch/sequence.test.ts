import { describe, expect, it } from 'vitest';
import type { BrokerRequest, BrokerResponse, Handler, Next } from '../../../src/http/dispatch/handler.js';
import { sequence } from '../../../src/http/dispatch/sequence.js';

/** sequence() never reads the request or the response: it only hands them on. */
const req = {} as BrokerRequest;
const res = {} as BrokerResponse;

/** Runs the handlers and resolves with what reached `done`, and the order the handlers ran in. */
function run(handlers: (ran: string[]) => Handler[]): Promise<{ ran: string[]; done: unknown[] }> {
  const ran: string[] = [];
  return new Promise((resolve) => {
    sequence(handlers(ran))(req, res, (...args: unknown[]) => resolve({ ran, done: args }));
  });
}

const step =
  (name: string, pass?: unknown): ((ran: string[]) => Handler) =>
  (ran) =>
  (_req, _res, next: Next) => {
    ran.push(name);
    next(pass);
  };

describe('sequence', () => {
  it('when every handler calls next, then they run in order and done is called with no argument', async () => {
    const outcome = await run((ran) => [step('a')(ran), step('b')(ran), step('c')(ran)]);
    expect(outcome).toEqual({ ran: ['a', 'b', 'c'], done: [] });
  });

  it('when the list is empty, then done is called at once', async () => {
    expect(await run(() => [])).toEqual({ ran: [], done: [] });
  });

  it('when a handler passes an error, then the rest are skipped and done gets the error', async () => {
    const error = new Error('refused');
    const outcome = await run((ran) => [step('a', error)(ran), step('b')(ran)]);
    expect(outcome).toEqual({ ran: ['a'], done: [error] });
  });

  it("when a handler passes 'route', then the list goes on, as Express 5 does", async () => {
    const outcome = await run((ran) => [step('a', 'route')(ran), step('b')(ran)]);
    expect(outcome).toEqual({ ran: ['a', 'b'], done: [] });
  });

  it("when a handler passes 'router', then the list is left and done gets 'router'", async () => {
    const outcome = await run((ran) => [step('a', 'router')(ran), step('b')(ran)]);
    expect(outcome).toEqual({ ran: ['a'], done: ['router'] });
  });

  it('when a handler passes null, then it counts as no error', async () => {
    const outcome = await run((ran) => [step('a', null)(ran), step('b')(ran)]);
    expect(outcome).toEqual({ ran: ['a', 'b'], done: [] });
  });

  it('when a handler throws, then done gets what it threw', async () => {
    const error = new Error('thrown');
    const outcome = await run((ran) => [
      () => {
        ran.push('a');
        throw error;
      },
      step('b')(ran),
    ]);
    expect(outcome).toEqual({ ran: ['a'], done: [error] });
  });

  it('when an async handler rejects, then done gets the rejection', async () => {
    const error = new Error('rejected');
    const outcome = await run((ran) => [
      async () => {
        ran.push('a');
        throw error;
      },
      step('b')(ran),
    ]);
    expect(outcome).toEqual({ ran: ['a'], done: [error] });
  });

  it('when an async handler rejects with nothing, then done gets an Error all the same', async () => {
    const outcome = await run(() => [() => Promise.reject(undefined)]);
    expect(outcome.done[0]).toEqual(new Error('Rejected promise'));
  });

  it('when an async handler resolves after calling next, then the list goes on once', async () => {
    const outcome = await run((ran) => [
      async (_req, _res, next) => {
        ran.push('a');
        await Promise.resolve();
        next();
      },
      step('b')(ran),
    ]);
    expect(outcome).toEqual({ ran: ['a', 'b'], done: [] });
  });

  it('when the list it was given changes afterwards, then the sequence runs the list as it was', async () => {
    const ran: string[] = [];
    const handlers = [step('a')(ran)];
    const run = sequence(handlers);
    handlers.push(step('late')(ran));
    await new Promise<void>((resolve) => run(req, res, () => resolve()));
    expect(ran).toEqual(['a']);
  });

  it('when it runs twice at once, then each run keeps its own place in the list', async () => {
    const ran: string[] = [];
    const wait: Handler = async (_req, _res, next) => {
      await new Promise((resolve) => setImmediate(resolve));
      next();
    };
    const both = sequence([step('a')(ran), wait, step('b')(ran)]);
    await Promise.all([
      new Promise<void>((resolve) => both(req, res, () => resolve())),
      new Promise<void>((resolve) => both(req, res, () => resolve())),
    ]);
    expect(ran).toEqual(['a', 'a', 'b', 'b']);
  });
});
