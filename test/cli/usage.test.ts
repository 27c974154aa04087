import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/run.js';
import { startBroker } from '../support/broker.js';

/** Runs one command line in process, as the entry point does, and keeps what it wrote. */
async function cli(argv: string[], env: Record<string, string> = {}) {
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
