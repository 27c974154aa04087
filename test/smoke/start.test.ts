import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import { freePort } from '../support/freePort.js';
import { registerSecret } from '../support/logs.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe('npm start', () => {
  it('when started with no configuration, then it serves the dev upstream, mints tokens, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      PORT: String(port),
    };
    // The same command the README gives, minus npm's own wrapper (so the signal reaches the server).
    const child = spawn(process.execPath, [join(root, 'scripts/start.mjs')], {
      cwd: root,
      env,
      stdio: 'pipe',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // Listening, or not: the server exited, or 180 s went by (a first start builds dist/ with tsc, which took
    // 80 s on a loaded machine).
    let giveUp: NodeJS.Timeout | undefined;
    const listening = new Promise<boolean>((resolve) => {
      child.stdout.on('data', () => {
        if (stdout.includes('token-broker listening')) resolve(true);
      });
      void exited.then(() => resolve(false));
      giveUp = setTimeout(() => resolve(false), 180_000);
    });
    try {
      const started = await listening;
      clearTimeout(giveUp);
      if (!started) throw new Error(`did not start:\n${stderr}\n${stdout}`);
      const apiKey = /dev API key[^:]*: (\S+)/.exec(stderr)?.[1];
      expect(apiKey).toMatch(/^dev-/);
      registerSecret('dev api key', apiKey ?? '');
      expect(stdout).toMatch(/DEV UPSTREAM/);

      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const minted = await fetch(`${base}/api/client-token`, {
        method: 'POST',
        headers: { Origin: `http://localhost:${port}` },
      });
      expect(minted.status).toBe(200);
      const { token } = (await minted.json()) as { token: string };
      registerSecret('smoke client token', token);
      const proxied = await fetch(`${base}/api/proxy/hello`, {
        headers: { Origin: `http://localhost:${port}`, Authorization: `Bearer ${token}` },
      });
      expect(proxied.status).toBe(200);
      const upstream = await fetch(`${base}/api/upstream-token`, {
        headers: { Authorization: `Bearer ${apiKey}` },
      });
      expect(upstream.status).toBe(200);
      registerSecret(
        'smoke upstream token',
        ((await upstream.json()) as { access_token: string }).access_token,
      );
      const page = await fetch(`${base}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('demo.js');
      const helper = await fetch(`${base}/client.js`);
      expect(helper.status).toBe(200);
      // The minified ES module built from src/browser/ exports it under its own name.
      expect(await helper.text()).toMatch(/export\s*\{[^}]*\bcreateBrokerClient\b/);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stdout).toMatch(/"msg":"stopped"/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      // The server's own log lines join the whole run's leak scan.
      appendFileSync(join(inject('leakDir'), 'logs.ndjson'), stdout);
    }
  }, 240_000);
});
