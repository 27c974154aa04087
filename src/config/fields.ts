import { z } from 'zod';
import { parseTrustEntry } from '../caller/trustProxy.js';

/**
 * How the text of one environment variable becomes a value: the building blocks of `envSchema` in
 * config.ts and its parts. An empty value counts as unset everywhere, so `NAME=` in a .env file means "the default".
 */

export const emptyToUndefined = (value: unknown) =>
  typeof value === 'string' && value.trim() === '' ? undefined : value;
export const optionalString = z.preprocess(emptyToUndefined, z.string().trim().optional());
export const optionalUrl = z.preprocess(
  emptyToUndefined,
  z.url({ protocol: /^https?$/, error: 'must be an absolute http(s) URL' }).optional(),
);
/** A whole number in `min..max`; loadConfig adds the setting's example (or this fallback) to the message. */
export const int = (min: number, max: number, fallback: number) => {
  const error = `must be a whole number from ${min} to ${max}`;
  return z.preprocess(
    emptyToUndefined,
    z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error }).default(fallback),
  );
};
/** A whole number in `min..max`, or unset. */
export const optionalInt = (min: number, max: number) => {
  const error = `must be a whole number from ${min} to ${max}`;
  return z.preprocess(
    emptyToUndefined,
    z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error }).optional(),
  );
};

/** A request budget per client IP: `limit` requests per `windowMs`. */
export interface RateLimitRule {
  limit: number;
  windowMs: number;
}

const windowUnits: Record<string, number> = { second: 1_000, minute: 60_000, hour: 3_600_000 };

/** `<n>/second`, `<n>/minute`, `<n>/hour` (e.g. `60/minute`), or `off`. */
export const rateLimit = (fallback: string) =>
  z.preprocess(
    emptyToUndefined,
    z
      .string()
      .default(fallback)
      .transform((value, ctx): RateLimitRule | undefined => {
        const trimmed = value.trim().toLowerCase();
        if (trimmed === 'off') return undefined;
        const match = /^(\d{1,9})\s*\/\s*(second|minute|hour)$/.exec(trimmed);
        const limit = Number(match?.[1]);
        const windowMs = windowUnits[match?.[2] ?? ''];
        if (!match || !(limit > 0) || windowMs === undefined) {
          ctx.addIssue({
            code: 'custom',
            message: 'must be <n>/second, <n>/minute, <n>/hour (n ≥ 1) or off',
          });
          return z.NEVER;
        }
        return { limit, windowMs };
      }),
  );

/** A comma-separated list; empty means none. */
export const list = z.preprocess(
  (value) =>
    typeof value === 'string'
      ? value
          .split(',')
          .map((item) => item.trim())
          .filter(Boolean)
      : [],
  z.array(z.string()),
);

/**
 * `false` (default: the socket address is the client), a hop count, or a list of trusted proxy
 * addresses/CIDRs/`loopback`/`linklocal`/`uniquelocal` as proxy-addr (Express's `trust proxy`) reads them.
 * `true` is refused: it trusts the left-most `X-Forwarded-For` entry, which the client writes itself.
 */
export const trustProxy = z.preprocess(
  emptyToUndefined,
  z
    .string()
    .default('false')
    .transform((value, ctx): false | number | string[] => {
      const trimmed = value.trim().toLowerCase();
      if (trimmed === 'false' || trimmed === '0') return false;
      if (trimmed === 'true') {
        ctx.addIssue({
          code: 'custom',
          message:
            'must be a hop count or a list of proxy addresses; "true" would trust client-written X-Forwarded-For',
        });
        return z.NEVER;
      }
      if (/^\d+$/.test(trimmed)) return Number(trimmed);
      const entries: string[] = [];
      for (const raw of trimmed.split(',')) {
        const parsed = parseTrustEntry(raw);
        if (parsed.problem !== undefined) {
          ctx.addIssue({ code: 'custom', message: parsed.problem });
          return z.NEVER;
        }
        entries.push(parsed.entry);
      }
      return entries;
    }),
);

export const jwkSet = z.preprocess(
  emptyToUndefined,
  z
    .string()
    .transform((value, ctx) => {
      try {
        return JSON.parse(value) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON Web Key Set ({"keys":[...]})' });
        return z.NEVER;
      }
    })
    .pipe(
      z.object(
        { keys: z.array(z.record(z.string(), z.unknown())).min(1, 'must hold at least one key') },
        { error: 'must be a JSON Web Key Set ({"keys":[...]})' },
      ),
    )
    .optional(),
);
