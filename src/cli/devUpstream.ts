import { startDevUpstream } from '../dev/devUpstream.js';
import { createLogger } from '../telemetry/logger.js';
import { CliFailure, type Command } from './context.js';

/**
 * `token-broker dev-upstream`: the embedded dev authorization server and demo API alone, for pointing
 * a broker (or a second one) at a real OAuth2 upstream without writing one. oidc-provider is a dev
 * dependency, so this works from a clone, not from a production install.
 */
export const devUpstreamCommand: Command = {
  name: 'dev-upstream',
  summary: 'start the dev authorization server and demo API, and print the settings that use them',
  help: `Usage: token-broker dev-upstream

Starts a real OAuth2 authorization server (client credentials, JWT access tokens) and a demo API that
accepts only its tokens, both on 127.0.0.1, and prints the UPSTREAM_* settings that point a broker at
them, in .env form. They run until Ctrl-C. For development only: the client secret is printed.

Example:
  token-broker dev-upstream > upstream.env &
  set -a; . ./upstream.env; set +a; npm start`,
  async run(args, ctx) {
    if (args.length > 0) throw new CliFailure('dev-upstream takes no arguments');
    // Only errors of the two servers are worth a line; the settings below say the rest.
    const logger = createLogger(
      { level: 'error', name: 'dev-upstream' },
      { write: (line) => ctx.stderr(line) },
    );
    const upstream = await startDevUpstream({ logger, announce: false }).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw error;
      throw new CliFailure(
        'needs the development dependencies (oidc-provider): run it from a clone of the repository after npm install',
      );
    });
    ctx.stdout(
      [
        '# token-broker dev upstream on 127.0.0.1 (development only); Ctrl-C stops it.',
        '# Point a broker at it with these settings:',
        ...Object.entries(upstream.env).map(([name, value]) => `${name}=${value}`),
        '',
      ].join('\n'),
    );
    await new Promise<void>((resolve) => {
      if (ctx.signal?.aborted) resolve();
      ctx.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
    await upstream.close();
    return 0;
  },
};
