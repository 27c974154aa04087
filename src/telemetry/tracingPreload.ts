/**
 * Imported first by main.ts: with tracing asked for, the SDK starts (and its instrumentations hook
 * `http`, `undici` and `ioredis`) before any other module of the broker is evaluated; without, nothing
 * of OpenTelemetry's SDK is loaded and `tracing` is undefined. Reads `process.env` because it must run
 * before main.ts parses anything.
 */
import type { Tracing } from './tracing.js';
import { tracingRequested } from './tracingSwitch.js';

export const tracing: Tracing | undefined = tracingRequested(process.env)
  ? (await import('./tracing.js')).startTracing()
  : undefined;
