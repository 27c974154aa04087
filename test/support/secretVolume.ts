import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A folder laid out as the kubelet mounts a Kubernetes secret, updated the way it updates one. */
export interface SecretVolume {
  dir: string;
  /** The path a pod reads a key at: `<dir>/<name>`, a link through `..data`. */
  path(name: string): string;
  /** The kubelet's update: a new `..<version>` folder, `..data_tmp` linked to it, renamed over `..data`. */
  swap(files: Record<string, string>): void;
  remove(): void;
}

/** `files` (name → content) mounted as a Kubernetes secret volume in a fresh temporary folder. */
export function createSecretVolume(files: Record<string, string>): SecretVolume {
  const dir = mkdtempSync(join(tmpdir(), 'tb-secret-'));
  let version = 0;
  const write = (content: Record<string, string>) => {
    version += 1;
    const folder = `..2026_12_02_${version}`;
    mkdirSync(join(dir, folder));
    for (const [name, text] of Object.entries(content)) writeFileSync(join(dir, folder, name), text);
    symlinkSync(folder, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  };
  write(files);
  for (const name of Object.keys(files)) symlinkSync(join('..data', name), join(dir, name));
  return {
    dir,
    path: (name) => join(dir, name),
    swap(next) {
      write(next);
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
