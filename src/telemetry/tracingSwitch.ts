/**
 * Tracing is off unless an OTLP endpoint or a traces exporter is named with the standard variables;
 * `OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none` keep it off (OpenTelemetry's own meanings).
 */
export function tracingRequested(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporter = env.OTEL_TRACES_EXPORTER?.trim().toLowerCase();
  if (exporter === 'none') return false;
  return Boolean(exporter || env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}
