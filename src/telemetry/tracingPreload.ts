/**
 * Imported first by main.ts: with tracing asked for, the SDK starts (and its instrumentations hook
 * `http`, `undici` and `ioredis`) before any other module of the broker is evaluated; without, nothing
 * of OpenTelemetry is loaded. Reads `process.env` because it must run before main.ts parses anything.
 */
import { tracingRequested } from './tracingSwitch.js';

if (tracingRequested(process.env)) {
  const { startTracing } = await import('./tracing.js');
  startTracing();
}
