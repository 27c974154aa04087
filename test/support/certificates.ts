import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A certificate and its key, as PEM text and as files in the authority's folder. */
export interface IssuedCertificate {
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
}

export interface TestAuthority {
  /** The CA's own certificate: what a server or client verifies the others with. */
  ca: IssuedCertificate;
  /**
   * A P-256 certificate for `subject` (`/O=Example/CN=name`), signed by the CA or by its own key
   * (`selfSigned`), with the subjectAltName entries given (`IP:127.0.0.1`, `DNS:broker.internal`).
   */
  issue(
    name: string,
    options: { subject: string; altNames?: string[]; selfSigned?: boolean },
  ): Promise<IssuedCertificate>;
  remove(): Promise<void>;
}

/** One `openssl req` that makes a key and a certificate valid for a day; EC keys keep it to milliseconds. */
async function request(dir: string, name: string, args: string[]): Promise<IssuedCertificate> {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-keyout',
    keyPath,
    '-out',
    certPath,
    ...args,
  ]);
  const [cert, key] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
  return { cert, key, certPath, keyPath };
}

/**
 * A certificate authority made for one test file with the `openssl` CLI (Node can check certificates but
 * not issue them), in a fresh temporary folder.
 */
export async function createTestAuthority(): Promise<TestAuthority> {
  const dir = await mkdtemp(join(tmpdir(), 'tb-pki-'));
  const ca = await request(dir, 'ca', ['-subj', '/CN=token-broker test CA']);
  return {
    ca,
    issue: (name, { subject, altNames = [], selfSigned = false }) =>
      request(dir, name, [
        '-subj',
        subject,
        '-addext',
        'basicConstraints=CA:FALSE',
        ...(altNames.length > 0 ? ['-addext', `subjectAltName=${altNames.join(',')}`] : []),
        ...(selfSigned ? [] : ['-CA', ca.certPath, '-CAkey', ca.keyPath]),
      ]),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
