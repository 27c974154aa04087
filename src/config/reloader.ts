import { createHash } from 'node:crypto';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Clock } from '../clock.js';
import type { Logger } from '../telemetry/logger.js';
import { type Config, ConfigError, envSchema, loadConfig, secretSettings } from './index.js';
import { unprefixedName } from './upstreamNames.js';

/** What the last reload did: applied a new generation, found nothing changed, or refused the files. */
export type ReloadOutcome = 'applied' | 'unchanged' | 'refused';

export interface ReloadResult {
  outcome: ReloadOutcome;
  /** What started it: `SIGHUP`, `file`, or a caller's word. */
  trigger: string;
  /** ISO 8601. */
  at: string;
  /** With `refused`: the settings named by the problems (never their values). */
  settings?: string[];
}

export interface ConfigStatus {
  /** 1 at start, one more for each applied reload. */
  generation: number;
  lastReload: ReloadResult | undefined;
}

export interface ConfigReloader {
  /** Re-reads every file now; resolves once the new generation is applied or refused. */
  reload(trigger: string): Promise<ReloadResult>;
  status(): ConfigStatus;
  close(): void;
}

export interface ConfigReloaderDeps {
  /** The environment the first generation was loaded from; its `*_FILE` paths are re-read. */
  env: Record<string, string | undefined>;
  logger: Logger;
  clock: Clock;
  /**
   * Puts a new generation in place, or throws an Error whose message names the setting it cannot take
   * (and nothing of its value): then nothing of the generation applies.
   */
  apply(next: Config): void | Promise<void>;
  /** Told the outcome of every reload (metrics); must not throw. */
  onReload?: (result: ReloadResult, status: ConfigStatus) => void;
  readFile?: (path: string) => string;
  /** Watch the folders of the `*_FILE` settings (the default); tests of the reload logic alone turn it off. */
  watchFiles?: boolean;
  /** Events closer together than this make one reload: a Kubernetes swap is several renames. */
  debounceMs?: number;
}

const fileForms = new Set([
  ...secretSettings.map((name) => `${name}_FILE`),
  ...Object.keys(envSchema.shape).filter((name) => name.endsWith('_FILE')),
]);

/**
 * Every `*_FILE` setting of the environment that the configuration reads, named upstreams' included: a
 * new secret (in a `*Secrets` list) or file setting (in a schema) is watched with no change here.
 */
export function fileSettings(env: Record<string, string | undefined>): Map<string, string> {
  return new Map(
    Object.entries(env).flatMap(([name, path]) =>
      path && fileForms.has(unprefixedName(name)) ? [[name, path]] : [],
    ),
  );
}

/** The setting a problem line starts with (`UPSTREAM_CLIENT_SECRET_FILE: cannot read ...`). */
const settingOf = (problem: string) => /^([A-Z][A-Z0-9_]*)/.exec(problem)?.[1] ?? 'configuration';

/**
 * Re-reads the configuration while the broker runs: every `*_FILE` setting's folder is watched (the
 * kubelet updates a mounted secret by swapping its `..data` symlink, which a watch on the file itself
 * never sees), events are debounced, and the whole environment goes through `loadConfig` again. A new
 * generation is applied whole or not at all; a refused one leaves the running one serving and is logged
 * on one line naming the settings. Reloads run one at a time.
 */
export function createConfigReloader(deps: ConfigReloaderDeps): ConfigReloader {
  const { env, clock, apply, debounceMs = 250 } = deps;
  const readFile = deps.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  const logger = deps.logger.child({ component: 'configReloader' });
  const files = fileSettings(env);
  let generation = 1;
  let lastReload: ReloadResult | undefined;
  let contents = fingerprint(files, readFile);
  let running: Promise<ReloadResult> | undefined;
  let again: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  const status = (): ConfigStatus => ({ generation, lastReload });

  async function attempt(trigger: string): Promise<ReloadResult> {
    const at = new Date(clock.now()).toISOString();
    const seen = fingerprint(files, readFile);
    const finish = (result: ReloadResult) => {
      lastReload = result;
      deps.onReload?.(result, status());
      return result;
    };
    if (seen === contents) return finish({ outcome: 'unchanged', trigger, at });
    try {
      await apply(loadConfig(env, { readFile }));
    } catch (error) {
      const problems =
        error instanceof ConfigError
          ? error.problems
          : [error instanceof Error ? error.message : 'apply failed'];
      const settings = [...new Set(problems.map(settingOf))];
      // The problems of loadConfig name settings and rules; they never quote a secret's value.
      logger.warn(
        { trigger, generation, settings, problems },
        `configuration reload refused: ${settings.join(', ')}; generation ${generation} keeps serving`,
      );
      return finish({ outcome: 'refused', trigger, at, settings });
    }
    contents = seen;
    generation += 1;
    logger.info({ trigger, generation }, `configuration generation ${generation} applied`);
    return finish({ outcome: 'applied', trigger, at });
  }

  function reload(trigger: string): Promise<ReloadResult> {
    if (running) {
      // One more pass after the running one, which may have read the files before this change.
      again = trigger;
      return running;
    }
    running = attempt(trigger).finally(() => {
      running = undefined;
      const next = again;
      again = undefined;
      if (next !== undefined) void reload(next);
    });
    return running;
  }

  const watchers: FSWatcher[] = [];
  if (deps.watchFiles ?? true) {
    const folders = new Map<string, Set<string>>();
    for (const path of files.values()) {
      const names = folders.get(dirname(path)) ?? new Set<string>();
      names.add(basename(path));
      folders.set(dirname(path), names);
    }
    const schedule = () => {
      clearTimeout(timer);
      timer = setTimeout(() => void reload('file'), debounceMs);
      timer.unref();
    };
    for (const [folder, names] of folders) {
      try {
        const watcher = watch(folder, { persistent: false }, (_event, name) => {
          // `..data` is the kubelet's swap; a name of ours is a plain rewrite or rename.
          if (name === null || name.startsWith('..') || names.has(name)) schedule();
        });
        watcher.on('error', (error) => logger.warn({ folder, err: error }, 'secret folder watch failed'));
        watchers.push(watcher);
      } catch (error) {
        logger.warn(
          { folder, code: (error as NodeJS.ErrnoException).code },
          'cannot watch a secret folder: its files are re-read on SIGHUP only',
        );
      }
    }
  }

  return {
    reload,
    status,
    close() {
      clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
    },
  };
}

/** One hash of every file's content (or of its absence), to tell a real change from a touch. */
function fingerprint(files: Map<string, string>, readFile: (path: string) => string): string {
  const hash = createHash('sha256');
  for (const [name, path] of files) {
    let content: string;
    try {
      content = readFile(path);
    } catch (error) {
      content = `\u0000unreadable:${(error as NodeJS.ErrnoException).code ?? 'error'}`;
    }
    hash.update(name).update('\u0000').update(content).update('\u0000');
  }
  return hash.digest('hex');
}
