import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigError, loadConfig } from '../../src/config/index.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const read = (path: string) => readFileSync(join(root, path), 'utf8');

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(entry.name) ? [relative(root, path)] : [];
  });
}

function documents(path: string): Record<string, unknown>[] {
  return parseAllDocuments(read(path)).map((doc) => doc.toJS() as Record<string, unknown>);
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface Container {
  name: string;
  env?: EnvVar[];
  ports?: { containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string }[];
  readinessProbe?: { httpGet?: { path: string } };
  livenessProbe?: { httpGet?: { path: string } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    runAsNonRoot?: boolean;
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[] };
  };
}
interface PodSpec {
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; secret?: { secretName: string; items?: { key: string; path: string }[] } }[];
}

function podSpecs(path: string): PodSpec[] {
  return documents(path).flatMap((doc) => {
    if (doc.kind === 'Pod') return [doc.spec as PodSpec];
    const template = (doc.spec as { template?: { spec: PodSpec } } | undefined)?.template;
    return template ? [template.spec] : [];
  });
}

/** Names of settings whose value is a secret; they may only be given as a file path or a secret reference. */
const secretName = /SECRET|PASSWORD|TOKEN$|API_KEYS?$|SIGNING_KEYS|REDIS_URL/;

describe('deployment examples', () => {
  const files = yamlFiles(join(root, 'deploy'));

  it('when every YAML file under deploy/ is parsed, then none has an error or a warning', () => {
    expect(files).toEqual(expect.arrayContaining(['deploy/compose.yaml', 'deploy/kubernetes/sidecar.yaml']));
    for (const file of files) {
      for (const doc of parseAllDocuments(read(file))) {
        expect({ file, errors: doc.errors, warnings: doc.warnings }).toEqual({
          file,
          errors: [],
          warnings: [],
        });
      }
    }
  });

  it('when the sidecar manifest is read, then the broker probes /healthz and /readyz and runs locked down', () => {
    const [pod] = podSpecs('deploy/kubernetes/sidecar.yaml');
    const broker = [...(pod?.initContainers ?? []), ...(pod?.containers ?? [])].find((container) =>
      container.ports?.some((port) => port.containerPort === 8080),
    );
    expect(broker).toBeDefined();
    if (!pod || !broker) return;
    expect(broker.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(broker.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(broker.env).toContainEqual({ name: 'NODE_ENV', value: 'production' });
    expect(broker.resources?.requests).toEqual(expect.objectContaining({ cpu: expect.any(String) }));
    expect(broker.resources?.limits).toEqual(expect.objectContaining({ memory: expect.any(String) }));
    expect(broker.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot).toBe(true);
    expect(broker.securityContext?.allowPrivilegeEscalation).toBe(false);
    expect(broker.securityContext?.readOnlyRootFilesystem).toBe(true);
    expect(broker.securityContext?.capabilities?.drop).toContain('ALL');
  });

  it('when the sidecar manifest is read, then secrets come from *_FILE paths on mounted Secret files only', () => {
    const [pod] = podSpecs('deploy/kubernetes/sidecar.yaml');
    const broker = pod?.containers.find((container) =>
      container.ports?.some((port) => port.containerPort === 8080),
    );
    const names = broker?.env?.map((variable) => variable.name) ?? [];
    expect(names).toEqual(
      expect.arrayContaining(['UPSTREAM_CLIENT_SECRET_FILE', 'SIGNING_KEYS_FILE', 'BROKER_API_KEYS_FILE']),
    );
    const secretFiles = new Map<string, string[]>();
    for (const volume of pod?.volumes ?? []) {
      if (volume.secret) secretFiles.set(volume.name, volume.secret.items?.map((item) => item.path) ?? []);
    }
    for (const container of pod?.containers ?? []) {
      for (const variable of container.env ?? []) {
        if (variable.name.endsWith('_FILE')) {
          // The path must be a file of a Secret volume mounted into this very container.
          const mounted = container.volumeMounts?.some(
            (mount) =>
              secretFiles.has(mount.name) &&
              secretFiles.get(mount.name)?.some((item) => variable.value === `${mount.mountPath}/${item}`),
          );
          expect({ container: container.name, variable: variable.name, mounted }).toEqual({
            container: container.name,
            variable: variable.name,
            mounted: true,
          });
        } else if (secretName.test(variable.name)) {
          expect({ variable: variable.name, inline: variable.value }).toEqual({
            variable: variable.name,
            inline: undefined,
          });
        }
      }
    }
  });

  it('when the Secret example is read, then every value is an obvious placeholder', () => {
    const [secret] = documents('deploy/kubernetes/secret.example.yaml');
    expect(secret?.kind).toBe('Secret');
    const values = Object.values((secret?.stringData ?? {}) as Record<string, string>);
    expect(values.length).toBeGreaterThanOrEqual(3);
    for (const value of values) expect(value).toContain('REPLACE_ME');
    expect(secret?.data).toBeUndefined();
  });

  it('when the sidecar is started with the example Secret as it is, then each placeholder is refused in one line', () => {
    const [secret] = documents('deploy/kubernetes/secret.example.yaml');
    const files = new Map(
      Object.entries((secret?.stringData ?? {}) as Record<string, string>).map(([key, value]) => [
        `/var/run/secrets/token-broker/${key}`,
        value,
      ]),
    );
    const env = {
      NODE_ENV: 'production',
      UPSTREAM_TOKEN_URL: 'https://auth.example.com/oauth/token',
      UPSTREAM_CLIENT_ID: 'web-app',
      UPSTREAM_CLIENT_SECRET_FILE: '/var/run/secrets/token-broker/upstream-client-secret',
      SIGNING_KEYS_FILE: '/var/run/secrets/token-broker/signing-keys.json',
      BROKER_API_KEYS_FILE: '/var/run/secrets/token-broker/broker-api-keys',
      REDIS_URL: 'redis://redis:6379',
      CACHE_ENCRYPTION_KEY_FILE: '/var/run/secrets/token-broker/cache-encryption-key',
    };
    let problems: string[] = [];
    try {
      loadConfig(env, { readFile: (path) => files.get(path) ?? '' });
    } catch (error) {
      if (error instanceof ConfigError) problems = error.problems;
    }
    const placeholder = 'still holds the REPLACE_ME placeholder of the example files; put the real value in';
    expect(problems.sort()).toEqual(
      [
        `BROKER_API_KEYS_FILE: ${placeholder}`,
        `CACHE_ENCRYPTION_KEY_FILE: ${placeholder}`,
        `SIGNING_KEYS_FILE: ${placeholder}`,
        `UPSTREAM_CLIENT_SECRET_FILE: ${placeholder}`,
      ].sort(),
    );
  });

  it('when the Ingress is read, then it sends only the browser routes to the broker and the rest to the app', () => {
    const [ingress] = documents('deploy/kubernetes/ingress.yaml');
    type Path = { path: string; pathType: string; backend: { service: { port: { name: string } } } };
    const rules = (ingress?.spec as { rules: { http: { paths: Path[] } }[] } | undefined)?.rules ?? [];
    const toBroker = rules
      .flatMap((rule) => rule.http.paths)
      .filter((path) => path.backend.service.port.name === 'broker')
      .map(({ path, pathType }) => `${pathType} ${path}`);
    expect(toBroker.sort()).toEqual(
      [
        'Exact /api/client-token',
        'Exact /api/client-token/challenge',
        'Exact /client.js',
        'Exact /pow-worker.js',
        'Exact /pow.js',
        'Prefix /api/proxy',
      ].sort(),
    );
  });

  it('when the NetworkPolicies are read, then the pod takes traffic from the ingress controller only, and Redis from the broker only', () => {
    const [web, redis] = documents('deploy/kubernetes/network-policy.yaml');
    const webSpec = web?.spec as {
      podSelector: unknown;
      policyTypes: string[];
      ingress: { from: unknown[] }[];
    };
    expect(webSpec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(webSpec.podSelector).toEqual({ matchLabels: { 'app.kubernetes.io/name': 'web' } });
    expect(webSpec.ingress.flatMap((rule) => rule.from)).toEqual([
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } },
    ]);
    expect(JSON.stringify(redis?.spec)).toContain('"app.kubernetes.io/name":"web"');
  });

  it('when the example Redis servers are read, then each asks for a password kept in a secret', () => {
    const [redisPod] = podSpecs('deploy/kubernetes/redis.yaml');
    const redis = redisPod?.containers[0] as Container & { args?: string[] };
    expect(redis.args?.slice(0, 2)).toEqual(['--requirepass', '$(REDIS_PASSWORD)']);
    expect(redis.env).toContainEqual({
      name: 'REDIS_PASSWORD',
      valueFrom: { secretKeyRef: { name: 'token-broker', key: 'redis-password' } },
    });
    const [compose] = documents('deploy/compose.yaml');
    const services = compose?.services as Record<
      string,
      { command?: string[]; environment?: Record<string, string> }
    >;
    expect(services.redis?.command?.join(' ')).toContain(
      '--requirepass "$$(cat /run/secrets/redis-password)"',
    );
    expect(services.broker?.environment?.REDIS_PASSWORD_FILE).toBe('/run/secrets/redis-password');
    // Readable by the image's user alone, and the Compose version that reads `env_file: required` is named.
    const comments = read('deploy/compose.yaml');
    expect(comments).not.toContain('chmod 644');
    expect(comments).toContain('chmod 600');
    expect(comments).toContain('Compose 2.24');
  });

  it('when the compose file is read, then the broker is built here, reads broker.env and uses the redis service', () => {
    const [compose] = documents('deploy/compose.yaml');
    const services = compose?.services as Record<string, Record<string, unknown>>;
    expect(Object.keys(services).sort()).toEqual(['broker', 'redis']);
    expect(services.broker?.build).toEqual({ context: '..', dockerfile: 'Dockerfile' });
    expect(JSON.stringify(services.broker?.env_file)).toContain('broker.env');
    expect(JSON.stringify(services.broker?.env_file)).not.toContain('.env.example');
    expect((services.broker?.environment as Record<string, string> | undefined)?.REDIS_URL).toBe(
      'redis://redis:6379',
    );
  });
});

describe('Dockerfile', () => {
  // Continuation lines joined, comments dropped: one entry per instruction.
  const instructions = read('Dockerfile')
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const stages = instructions.reduce<string[][]>((all, line) => {
    if (/^FROM\s/i.test(line)) all.push([]);
    all.at(-1)?.push(line);
    return all;
  }, []);
  const runtime = stages.at(-1) ?? [];
  const find = (keyword: string) => runtime.filter((line) => line.toUpperCase().startsWith(`${keyword} `));

  it('when read, then it is a multi-stage build on a pinned node:24.x.y image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage[0]).toMatch(/^FROM node:24\.\d+\.\d+-bookworm-slim\b/);
    expect(instructions).toContain('RUN npm run build');
    expect(runtime.some((line) => /^COPY --from=\w+ \/app\/dist/.test(line))).toBe(true);
  });

  it('when the runtime stage is read, then it installs production dependencies only and runs as a non-root user', () => {
    expect(find('ENV').join('\n')).toMatch(/NODE_ENV=production/);
    expect(
      find('RUN').some((line) => line.includes('npm ci --omit=dev') && line.includes('npm cache clean')),
    ).toBe(true);
    const users = find('USER');
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^USER (root|0)(:|$)/);
    expect(find('EXPOSE')).toEqual(['EXPOSE 8080']);
  });

  it('when the runtime stage is read, then the healthcheck uses node fetch on /healthz and CMD starts dist/main.js', () => {
    const [healthcheck] = find('HEALTHCHECK');
    expect(healthcheck).toContain('/healthz');
    expect(healthcheck).toContain('fetch(');
    expect(healthcheck).not.toMatch(/curl|wget/);
    const cmd = find('CMD').at(-1)?.slice('CMD '.length);
    expect(JSON.parse(cmd ?? 'null')).toEqual(['node', 'dist/main.js']);
  });

  it('when .dockerignore is read, then node_modules, build output and .env files stay out of the context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim());
    for (const entry of ['node_modules', 'dist', '.git', '.env', 'test']) expect(ignored).toContain(entry);
    expect(ignored.some((entry) => entry === '.env.*' || entry === '.env*')).toBe(true);
  });
});
