import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { systemClock } from '../clock.js';
import { writeFileAtomic } from './atomicWrite.js';
import {
  type CliContext,
  CliFailure,
  type Command,
  parseUsage,
  positiveInteger,
  UsageError,
} from './context.js';
import {
  generateSigningKey,
  isSigningAlgorithm,
  type JwkSet,
  parseJwkSet,
  type SigningAlgorithm,
  toPublicJwks,
} from './jwks.js';

const defaultKeep = 3;
/**
 * How long after `keys rotate` a new key starts signing: the 5 minutes verifiers may cache
 * `/.well-known/jwks.json` (its `max-age`), plus 2 minutes for the Secret to reach every replica (the
 * kubelet's sync period is about a minute).
 */
export const defaultActivateInSeconds = 420;
/** An activation further out than 30 days is a typo. */
const maxActivateInSeconds = 30 * 86_400;

function activateInOption(value: string | undefined): number {
  if (value === undefined) return defaultActivateInSeconds;
  if (!/^\d+$/.test(value) || Number(value) > maxActivateInSeconds) {
    throw new UsageError(`--activate-in must be a whole number of seconds from 0 to ${maxActivateInSeconds}`);
  }
  return Number(value);
}

function algorithmOption(value: string | undefined, fallback: SigningAlgorithm): SigningAlgorithm {
  if (value === undefined) return fallback;
  if (!isSigningAlgorithm(value)) throw new UsageError('--alg must be EdDSA, ES256 or HS256');
  return value;
}

function kidOption(value: string | undefined): string | undefined {
  if (value !== undefined && value.trim() === '') throw new UsageError('--kid must not be empty');
  return value;
}

async function readSetFile(file: string, ctx: CliContext): Promise<JwkSet> {
  try {
    const text = file === '-' ? await ctx.readStdin() : await readFile(resolve(ctx.cwd, file), 'utf8');
    return parseJwkSet(text, file === '-' ? 'standard input' : file);
  } catch (error) {
    if (error instanceof CliFailure) throw error;
    throw new CliFailure(`cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

function onePositional(positionals: string[], what: string): string {
  if (positionals.length === 0) throw new UsageError(`missing ${what}`);
  if (positionals.length > 1) throw new UsageError('unexpected argument');
  return positionals[0] as string;
}

export const generateCommand: Command = {
  name: 'generate',
  summary: 'print a new private JWK Set for SIGNING_KEYS',
  help: `Usage: token-broker keys generate [--alg EdDSA|ES256|HS256] [--kid <kid>]

Prints a JWK Set holding one new private signing key, on one line, ready for SIGNING_KEYS
or a SIGNING_KEYS_FILE:

  token-broker keys generate > signing-keys.json && chmod 600 signing-keys.json

Options:
  --alg <alg>   EdDSA (Ed25519, the default), ES256 (P-256), or HS256 (a shared secret,
                only for Trefle-compatible verifiers; it cannot be published as a JWKS)
  --kid <kid>   key id; default: the RFC 7638 thumbprint (a random id for HS256)
  -h, --help    show this help

The output is a private key: keep it out of logs, shells' history and source control.`,
  async run(args, ctx) {
    const options = { alg: { type: 'string' }, kid: { type: 'string' } } as const;
    const { values, positionals } = parseUsage(
      () => parseArgs({ args, options, allowPositionals: true }),
      Object.keys(options),
    );
    if (positionals.length > 0) throw new UsageError('unexpected argument');
    const key = await generateSigningKey(algorithmOption(values.alg, 'EdDSA'), kidOption(values.kid));
    ctx.stdout(`${JSON.stringify({ keys: [key] })}\n`);
    return 0;
  },
};

export const rotateCommand: Command = {
  name: 'rotate',
  summary: 'add a new signing key to a JWK Set file, keeping older keys for verification',
  help: `Usage: token-broker keys rotate <file> [--alg EdDSA|ES256|HS256] [--kid <kid>] [--keep <n>]
                                [--activate-in <seconds>]

Generates a new key and writes it first in <file>, followed by the keys already there, with
an activation time ("nbf", seconds since the epoch) --activate-in seconds from now. The broker
publishes and verifies with every key at once, and signs with the first key whose activation
time has passed: every replica switches to the new key at that time, once all of them and
every JWKS cache have it. The file is replaced atomically and keeps its permissions. Prints the
new kid on standard output.

Options:
  --alg <alg>   algorithm of the new key; default: that of the current first key, else EdDSA
  --kid <kid>   key id; default: the RFC 7638 thumbprint (a random id for HS256)
  --activate-in <seconds>
                when the new key starts signing (default ${defaultActivateInSeconds}: the 5-minute JWKS cache
                plus 2 minutes for the file to reach every replica); 0 signs at once
  --keep <n>    keep at most n keys, the new one included; the oldest are dropped (default ${defaultKeep}).
                Keep at least 2 until every token signed by the old key has expired
                (CLIENT_TOKEN_TTL), or those tokens stop verifying.
  -h, --help    show this help

A running broker re-reads SIGNING_KEYS_FILE when it changes (or on SIGHUP).`,
  async run(args, ctx) {
    const options = {
      alg: { type: 'string' },
      kid: { type: 'string' },
      keep: { type: 'string' },
      'activate-in': { type: 'string' },
    } as const;
    const { values, positionals } = parseUsage(
      () => parseArgs({ args, options, allowPositionals: true }),
      Object.keys(options),
    );
    const file = onePositional(positionals, '<file>');
    if (file === '-') throw new UsageError('rotate needs a file, not standard input');
    const keep = values.keep === undefined ? defaultKeep : positiveInteger(values.keep, '--keep', 100);
    const kid = kidOption(values.kid);
    const activateIn = activateInOption(values['activate-in']);
    const set = await readSetFile(file, ctx);
    const current = set.keys[0]?.alg;
    const alg = algorithmOption(
      values.alg,
      current !== undefined && isSigningAlgorithm(current) ? current : 'EdDSA',
    );
    if (kid !== undefined && set.keys.some((key) => key.kid === kid)) {
      throw new CliFailure(`kid ${kid} is already in ${file}`);
    }
    const nbf = Math.floor((ctx.clock ?? systemClock).now() / 1000) + activateIn;
    const key = { ...(await generateSigningKey(alg, kid)), nbf };
    const keys = [key, ...set.keys].slice(0, keep);
    try {
      await writeFileAtomic(resolve(ctx.cwd, file), `${JSON.stringify({ keys }, null, 2)}\n`);
    } catch (error) {
      throw new CliFailure(`cannot write ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const dropped = set.keys.length + 1 - keys.length;
    ctx.stderr(
      `rotated ${file}: new ${alg} key signs from ${new Date(nbf * 1000).toISOString()}, ` +
        `${keys.length - 1} older key(s) still verify${dropped > 0 ? `, ${dropped} dropped` : ''}\n`,
    );
    ctx.stdout(`${String(key.kid)}\n`);
    return 0;
  },
};

export const publicCommand: Command = {
  name: 'public',
  summary: 'print the public JWKS of a private JWK Set',
  help: `Usage: token-broker keys public <file|->

Prints the public keys of a private JWK Set (from <file>, or standard input for "-") as a
JWKS, the document the broker serves at /.well-known/jwks.json. Private members are removed;
HS256 (oct) keys are shared secrets with no public half, so they are left out (with a note on
standard error).

Options:
  -h, --help    show this help`,
  async run(args, ctx) {
    const { positionals } = parseUsage(() => parseArgs({ args, options: {}, allowPositionals: true }));
    const file = onePositional(positionals, '<file>');
    const { jwks, omitted } = toPublicJwks(await readSetFile(file, ctx));
    if (omitted > 0) {
      ctx.stderr(`note: left out ${omitted} HS256 (oct) key(s): a shared secret has no public half\n`);
    }
    ctx.stdout(`${JSON.stringify(jwks)}\n`);
    return 0;
  },
};

const subcommands = [generateCommand, rotateCommand, publicCommand];

/** `token-broker keys <generate|rotate|public>`: the signing keys for SIGNING_KEYS. */
export const keysCommand: Command & { subcommands: Command[] } = {
  name: 'keys',
  summary: 'generate, rotate and publish signing keys (SIGNING_KEYS)',
  subcommands,
  help: `Usage: token-broker keys <command> [options]

Commands:
${subcommands.map((command) => `  ${command.name.padEnd(10)}${command.summary}`).join('\n')}

Run "token-broker keys <command> --help" for the options of each.`,
  // Reached only when args[0] names no subcommand: run.ts dispatches the others.
  async run(args) {
    const names = subcommands.map((command) => command.name).join(', ');
    throw new UsageError(args[0] === undefined ? `missing command (${names})` : `unknown command (${names})`);
  },
};
