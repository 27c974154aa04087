import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseDotenv } from 'dotenv';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { checkSigningKeys, generateSigningKey } from '../../src/cli/jwks.js';
import { type Config, loadConfig, secretSettings } from '../../src/config/index.js';
import { registerSecret } from '../support/logs.js';

/**
 * The deployment examples must start the production image as they stand: their settings go through
 * loadConfig exactly as the container would read them, with the secret files they name made here the way
 * their comments say to make them.
 */
const root = fileURLToPath(new URL('../..', import.meta.url));
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const documents = (path: string) =>
  parseAllDocuments(read(path)).map((doc) => doc.toJS() as Record<string, unknown>);

/** A value for each secret setting, as an operator would generate it. */
async function secretValues(): Promise<Record<string, string>> {
  const signingKeys = JSON.stringify({ keys: [await generateSigningKey('EdDSA')] });
  expect(await checkSigningKeys(JSON.parse(signingKeys))).toEqual([]);
  return {
    SIGNING_KEYS: signingKeys,
    BROKER_API_KEYS: registerSecret('deploy example api key', randomBytes(32).toString('hex')),
    UPSTREAM_CLIENT_SECRET: registerSecret('deploy example client secret', randomBytes(24).toString('hex')),
    CACHE_ENCRYPTION_KEY: registerSecret('deploy example cache key', randomBytes(32).toString('base64')),
  };
}

/** loadConfig over `env`, each `NAME_FILE` path answering the secret of NAME; fails on any other path. */
function configFrom(env: Record<string, string>, secrets: Record<string, string>): Config {
  const byPath = new Map<string, string>();
  for (const name of secretSettings) {
    const path = env[`${name}_FILE`];
    if (path) byPath.set(path, `${secrets[name] ?? ''}\n`);
  }
  return loadConfig(env, {
    readFile: (path) => {
      const text = byPath.get(path);
      if (text === undefined) throw Object.assign(new Error(path), { code: 'ENOENT' });
      return text;
    },
  });
}

function expectWorkingProduction(config: Config): void {
  expect(config.production).toBe(true);
  expect(config.upstreams[0]?.config.apiUrl).toBeDefined();
  expect(config.allowedOrigins.length).toBeGreaterThan(0);
  expect(config.apiKeys.length).toBeGreaterThan(0);
  expect(config.signingKeys?.keys.length).toBe(1);
}

describe('deploy/compose.yaml', () => {
  const [compose] = documents('deploy/compose.yaml');
  const services = compose?.services as Record<string, Record<string, unknown>>;
  const broker = services.broker ?? {};

  it('when its environment, broker.env.example and secrets are read like the container does, then the production config loads', async () => {
    const envFiles = (broker.env_file as { path: string }[]).map((file) => file.path);
    expect(envFiles).toEqual(['broker.env']);
    const fromFile = parseDotenv(read('deploy/broker.env.example'));
    // Compose's `environment` wins over `env_file`, as the container sees it.
    const env = { ...fromFile, ...(broker.environment as Record<string, string>) };
    expect(env.NODE_ENV).toBe('production');
    expectWorkingProduction(configFrom(env, await secretValues()));
  });

  it('when its *_FILE settings are read, then each names a secret that compose mounts at /run/secrets', () => {
    const environment = broker.environment as Record<string, string>;
    const mounted = broker.secrets as string[];
    const declared = compose?.secrets as Record<string, { file: string }>;
    const files = Object.entries(environment).filter(([name]) => name.endsWith('_FILE'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const [name, path] of files) {
      const secret = path.replace('/run/secrets/', '');
      expect({ name, mounted: mounted.includes(secret), declared: declared[secret]?.file }).toEqual({
        name,
        mounted: true,
        declared: `secrets/${secret}`,
      });
    }
  });

  it('when broker.env.example is read, then it holds no secret: those come from files', () => {
    const names = Object.keys(parseDotenv(read('deploy/broker.env.example')));
    expect(names.filter((name) => (secretSettings as readonly string[]).includes(name))).toEqual([]);
  });
});

interface SidecarPod {
  containers: { name: string; env?: { name: string; value?: string }[] }[];
  volumes: { secret?: { items?: { key: string }[] } }[];
}

function sidecarPod(): SidecarPod {
  const deployment = documents('deploy/kubernetes/sidecar.yaml').find((doc) => doc.kind === 'Deployment');
  const spec = deployment?.spec as { template: { spec: SidecarPod } } | undefined;
  if (!spec) throw new Error('sidecar.yaml has no Deployment');
  return spec.template.spec;
}

describe('deploy/kubernetes/sidecar.yaml', () => {
  it('when the broker container env is read with the Secret files it mounts, then the production config loads', async () => {
    const container = sidecarPod().containers.find((candidate) => candidate.name === 'token-broker');
    const env = Object.fromEntries(
      (container?.env ?? []).map((variable) => [variable.name, variable.value ?? '']),
    );
    expectWorkingProduction(configFrom(env, await secretValues()));
  });

  it('when the Secret example is read, then it holds every key the broker mounts, and API keys long enough', () => {
    const [secret] = documents('deploy/kubernetes/secret.example.yaml');
    const data = secret?.stringData as Record<string, string>;
    for (const volume of sidecarPod().volumes) {
      for (const item of volume.secret?.items ?? []) expect(Object.keys(data)).toContain(item.key);
    }
    for (const key of ['broker-api-keys', 'app-api-key'])
      expect(data[key]?.length).toBeGreaterThanOrEqual(32);
  });
});
