import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * The shapes of what the routes accept and answer. Routes parse with these, and the OpenAPI document
 * is generated from them, so the two cannot drift.
 */

const boundedString = (max: number) => z.string().min(1).max(max);

/** `POST /api/auth/claim`, from query, JSON or form (Trefle-compatible field names). */
export const claimRequest = z.object({
  token: boundedString(1024).optional(),
  origin: boundedString(2048).optional(),
  ip: z
    .string()
    .max(64)
    .refine((value) => isIP(value.split('%')[0] ?? '') !== 0, { error: 'ip must be an IPv4 or IPv6 address' })
    .optional(),
});

export const clientTokenResponse = z.object({
  token: z.string(),
  tokenType: z.literal('Bearer'),
  expiresIn: z.number().int().positive(),
  expiresAt: z.iso.datetime(),
});

export const claimResponse = z.object({
  token: z.string(),
  /** Trefle's format, in UTC. */
  expiration: z.string().regex(/^\d{2}-\d{2}-\d{4} \d{2}:\d{2}$/),
  expiresIn: z.number().int().positive(),
  expiresAt: z.iso.datetime(),
});

/** RFC 6749 §5.1 field names, for another container of the pod. */
export const upstreamTokenResponse = z.object({
  access_token: z.string(),
  token_type: z.string(),
  expires_in: z.number().int().nonnegative(),
  scope: z.string().optional(),
});

export const problemResponse = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  code: z.string(),
  detail: z.string().optional(),
  instance: z.string().optional(),
});

export type ClaimRequest = z.infer<typeof claimRequest>;
export type ClientTokenResponse = z.infer<typeof clientTokenResponse>;
export type ClaimResponse = z.infer<typeof claimResponse>;
export type UpstreamTokenResponse = z.infer<typeof upstreamTokenResponse>;
