import type { IncomingMessage, ServerResponse } from 'node:http';
import { BrokerError } from '../../errors.js';
import type { ErrorHandler } from '../problem.js';
import type { BrokerRequest, BrokerResponse, Handler, RequestLocals } from './handler.js';
import {
  directTargetFor,
  directTargets,
  type Route,
  routeFor,
  splitTarget,
  validAbsoluteTarget,
} from './routeMatcher.js';
import { sequence } from './sequence.js';

/** A request listener, as `http.createServer` and supertest take it. */
export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

export interface DirectRoutesOptions {
  /** Serves every request the direct lane does not take: Express, with every route of the table mounted. */
  app: RequestListener;
  /** What every request goes through first, in both lanes: the app runs the same list as its first layer. */
  common: Handler[];
  /** The route table (routeTable.ts): the direct lane serves the routes whose `lane` is `direct`. */
  routes: readonly Route[];
  /** Answers what a chain passed on: an error, or a request no layer answered (404). */
  onError: ErrorHandler;
}

/**
 * The broker's request listener. The routes every browser call takes (the proxy, client tokens) are
 * served here straight from `node:http`, in the plain spellings browsers send; everything else goes to
 * Express, which mounts the same chains for the spellings it alone understands (absolute-form targets,
 * a trailing slash, odd characters). Express costs about as much per request as a proxied exchange
 * itself (docs/performance.md): it swaps the prototypes of the request and response, walks its router's
 * layers and wraps every `next`. The chains are written against `node:http` alone (handler.ts), so both
 * lanes run the same code and answer alike. Either way the route's name is set here, once, in
 * `res.locals.route`, for the metrics and the access log.
 */
export function directRoutes({ app, common, routes, onError }: DirectRoutesOptions): RequestListener {
  const targets = directTargets(routes).map(({ route, takes }) => {
    const { path } = route;
    // Stripped after `common`, which logs and counts the path as the client sent it.
    const strip: Handler = (req, _res, next) => {
      req.url = (req.url ?? '').slice(path.length);
      next();
    };
    const chain = route.match === 'mount' ? [...common, strip, ...route.chain] : [...common, ...route.chain];
    return { route, takes, run: sequence(chain) };
  });
  // A target that is no URL still goes through the first steps (request id, access log, metrics, headers),
  // with only its path left for them to read, and gets the broker's own 400.
  const refuseTarget = sequence([
    ...common,
    () => {
      throw new BrokerError('invalid_request', {
        detail: 'the request target is not a valid URL: send a path such as /api/proxy/...',
      });
    },
  ]);
  return (req, res) => {
    const url = req.url ?? '';
    const response = res as BrokerResponse;
    // Express keeps a `locals` it finds on the response.
    const locals = Object.create(null) as RequestLocals;
    response.locals = locals;
    // `/` first: the origin form browsers send costs one comparison here.
    if (url.charCodeAt(0) !== 0x2f && !validAbsoluteTarget(url)) {
      req.url = splitTarget(url).path;
      serve(refuseTarget, req, res, url);
      return;
    }
    const target = directTargetFor(targets, url, req.method ?? '');
    if (target === undefined) {
      locals.route = routeFor(routes, req)?.name;
      app(req, res);
      return;
    }
    locals.route = target.route.name;
    serve(target.run, req, res, url);
  };

  function serve(run: Handler, req: IncomingMessage, res: ServerResponse, url: string): void {
    const request: BrokerRequest = req;
    request.originalUrl = url;
    const response = res as BrokerResponse;
    run(request, response, (error) => {
      try {
        onError(error ?? new BrokerError('not_found'), request, response);
      } catch {
        // What Express's final handler does when its error middleware fails: no answer is left to give.
        response.destroy();
      }
    });
  }
}
