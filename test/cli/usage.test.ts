import { parse } from 'dotenv';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/run.js';
import { appOrigin, startBroker } from '../support/broker.js';
import { registerSecret } from '../support/logs.js';
import { waitFor } from '../support/waiting.js';

/** Runs one command line in process, as the entry point does, and keeps what it wrote. */
async function cli(argv: string[], env: Record<string, string> = {}, signal?: AbortSignal) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(
    argv,
    {
      env,
      cwd: process.cwd(),
      stdout: (text) => {
        stdout += text;
      },
      stderr: (text) => {
        stderr += text;
      },
      readStdin: async () => '',
      secrets: new Set(Object.values(env)),
      ...(signal ? { signal } : {}),
    },
    '0.0.0-test',
  );
  return { code, stdout, stderr };
}

describe('token-broker mistakes on the command line', () => {
  it('when an option is misspelt, then the one meant is named instead of the parser text', async () => {
    const result = await cli(['claim', '--url', 'http://127.0.0.1:1', '--orgin', 'https://app.example.com']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^token-broker claim: unknown option --orgin; did you mean --origin\?/);
    expect((await cli(['check-config', '--dotnev', '.env'])).stderr).toContain('did you mean --dotenv?');
  });

  it('when --url names a route rather than the broker, then the 404 comes with the base URL to use', async () => {
    const broker = await startBroker({ upstream: 'fake', api: 'fixed' });
    const result = await cli(
      ['claim', '--url', `${broker.url}/api/auth/claim`, '--origin', 'https://app.example.com'],
      { BROKER_API_KEY: broker.apiKey },
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`not_found`);
    expect(result.stderr).toContain(`try --url ${broker.url}`);
    expect(result.stderr).not.toContain(broker.apiKey);
  });
});

describe('token-broker dev-upstream', () => {
  it('when started, then it prints settings that point a broker at a real authorization server and API, and stops on its signal', async () => {
    const stop = new AbortController();
    let printed = '';
    const running = runDevUpstream(stop.signal, (text) => {
      printed += text;
    });
    await waitFor(() => printed.includes('UPSTREAM_API_URL='));
    const settings = parse(printed);
    registerSecret('dev-upstream client secret', settings.UPSTREAM_CLIENT_SECRET ?? '');
    expect(Object.keys(settings).sort()).toEqual([
      'UPSTREAM_API_URL',
      'UPSTREAM_CLIENT_ID',
      'UPSTREAM_CLIENT_SECRET',
      'UPSTREAM_ISSUER',
      'UPSTREAM_RESOURCE',
      'UPSTREAM_SCOPE',
    ]);
    // A second broker, configured by nothing but the printed lines, proxies to the demo API.
    const broker = await startBroker({ upstream: 'fake', env: { ...settings, UPSTREAM_TOKEN_URL: '' } });
    const answer = await broker.request({
      path: '/api/proxy/hello',
      headers: { origin: appOrigin, authorization: `Bearer ${await broker.clientToken()}` },
    });
    expect(answer.status).toBe(200);
    stop.abort();
    expect(await running).toBe(0);
    await expect(fetch(settings.UPSTREAM_ISSUER ?? '')).rejects.toThrow();
  });
});

async function runDevUpstream(signal: AbortSignal, stdout: (text: string) => void): Promise<number> {
  return runCli(
    ['dev-upstream'],
    {
      env: {},
      cwd: process.cwd(),
      stdout,
      stderr: () => {},
      readStdin: async () => '',
      secrets: new Set(),
      signal,
    },
    '0.0.0-test',
  );
}
