import { randomBytes } from 'node:crypto';
import { open, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Replaces a file's contents so that a reader sees either the old or the new file, never half of
 * one: write a temporary file in the same directory, flush it, then rename it over the original
 * (rename is atomic within a file system). The original's mode, and owner when we run as root, are
 * kept, so a key file readable only by the broker stays that way.
 */
export async function writeFileAtomic(path: string, data: string): Promise<void> {
  // A symlinked file (Kubernetes mounts secrets that way) is updated where it lives, not replaced by a copy.
  const target = await realpath(path);
  const original = await stat(target);
  const temp = join(
    dirname(target),
    `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
  );
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(data, 'utf8');
    await handle.chmod(original.mode & 0o7777);
    if (process.getuid?.() === 0) await handle.chown(original.uid, original.gid);
    await handle.sync();
    await handle.close();
    await rename(temp, target);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw error;
  }
}
