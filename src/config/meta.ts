import { z } from 'zod';

/**
 * What each setting's schema carries through zod's `.meta()`: the configuration reference
 * (docs/configuration.md) is generated from it, and loadConfig appends the example to every problem.
 */
export interface SettingMeta {
  description: string;
  /** A valid value; for a secret, the shape of one (never a real secret). */
  example: string;
  /** The default as an operator would write it, where the parsed default is not a plain value. */
  default?: string;
}

export function settingMeta(schema: z.ZodType): SettingMeta | undefined {
  return z.globalRegistry.get(schema) as SettingMeta | undefined;
}

/** The default of a setting as text, or undefined when it has none. */
export function defaultText(schema: z.ZodType): string | undefined {
  const meta = settingMeta(schema);
  if (meta?.default !== undefined) return meta.default;
  const parsed = schema.safeParse(undefined);
  if (!parsed.success) return undefined;
  const value: unknown = parsed.data;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
    return String(value);
  return undefined;
}

/** Where the example of a `NAME_FILE` setting points: a mounted secret, as Docker and Kubernetes place them. */
export const secretFileExample = (name: string) => `/run/secrets/${name.toLowerCase().replaceAll('_', '-')}`;
