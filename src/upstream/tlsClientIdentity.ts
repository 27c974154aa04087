import { createHash, createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';

/**
 * The client certificate of RFC 8705 mutual-TLS client authentication, with its key and the CAs that
 * verify the servers, loaded and checked once per configuration generation.
 */
export interface TlsClientIdentity {
  /**
   * Certificate, key and CAs as one TLS context, handed to every connection the broker opens to the
   * token endpoint and the API. It holds the key without exposing it.
   */
  secureContext: SecureContext;
  /** `x5t#S256` of the certificate: what a certificate-bound token's `cnf` names (RFC 8705 §3.1). */
  thumbprint: string;
  /** Changes with the certificate or the CAs (a key cannot change alone): a new one needs new connections. */
  generation: string;
  /** A token or config logged by mistake shows nothing of the identity, and the token store saves none. */
  toJSON(): undefined;
}

/** The files of one identity, by the setting that names each: a problem line names the setting. */
export interface TlsClientFiles {
  cert: { setting: string; path: string };
  key: { setting: string; path: string };
  ca?: { setting: string; path: string } | undefined;
}

/**
 * The `x5t#S256` confirmation of a certificate: the base64url SHA-256 of its DER encoding.
 * @see https://www.rfc-editor.org/rfc/rfc8705#section-3.1
 */
export function certificateThumbprint(certificate: X509Certificate): string {
  return createHash('sha256').update(certificate.raw).digest('base64url');
}

const certificatePem = /-----BEGIN CERTIFICATE-----/;

/**
 * Reads and checks the certificate, key and optional CA files, or answers one line per problem, each
 * naming its setting and never quoting a file: a certificate that does not parse, a key that is not an
 * unencrypted PEM private key, a key that does not match the certificate, a CA file with no certificate.
 */
export function loadTlsClientIdentity(
  files: TlsClientFiles,
  readFile: (path: string) => string,
): TlsClientIdentity | string[] {
  const problems: string[] = [];
  const read = ({ setting, path }: { setting: string; path: string }): string | undefined => {
    try {
      return readFile(path);
    } catch (error) {
      problems.push(`${setting}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
      return undefined;
    }
  };
  const certText = read(files.cert);
  const keyText = read(files.key);
  const caText = files.ca && read(files.ca);
  let certificate: X509Certificate | undefined;
  if (certText !== undefined) {
    try {
      certificate = new X509Certificate(certText);
    } catch {
      problems.push(`${files.cert.setting}: ${files.cert.path} does not hold a PEM certificate`);
    }
  }
  let key: KeyObject | undefined;
  if (keyText !== undefined) {
    try {
      key = createPrivateKey(keyText);
    } catch {
      problems.push(`${files.key.setting}: ${files.key.path} does not hold an unencrypted PEM private key`);
    }
  }
  if (certificate && key && !certificate.checkPrivateKey(key)) {
    problems.push(
      `${files.key.setting}: the key in ${files.key.path} does not match the certificate of ${files.cert.setting}; rotate both files together`,
    );
  }
  if (files.ca && caText !== undefined && !certificatePem.test(caText)) {
    problems.push(`${files.ca.setting}: ${files.ca.path} holds no PEM certificate`);
  }
  if (problems.length > 0 || !certificate || keyText === undefined || certText === undefined) return problems;
  let secureContext: SecureContext;
  try {
    secureContext = createSecureContext({
      cert: certText,
      key: keyText,
      ...(caText === undefined ? {} : { ca: caText }),
    });
  } catch {
    // Both parsed and match: what is left is a CA bundle OpenSSL cannot read.
    return [`${files.ca?.setting ?? files.cert.setting}: OpenSSL cannot load it as a PEM certificate list`];
  }
  const generation = createHash('sha256')
    .update(`token-broker/tls-client/v1\u0000${certText}\u0000${caText ?? ''}`)
    .digest('base64url');
  return {
    secureContext,
    thumbprint: certificateThumbprint(certificate),
    generation,
    toJSON: () => undefined,
  };
}
