import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take longest, whether they wait on real time (outages, leases, Redis restarts, process
 * start-ups) or build something (the image, Chromium pages, fuzzing). A long file that starts last holds
 * the run open after the other workers are done; started first, the short files fill in around it.
 */
export const longFiles: readonly RegExp[] = [
  /^test\/deploy\/imageSteps\.test\.ts$/,
  /^test\/chaos\//,
  /^test\/fuzz\//,
  /^test\/hardening\/(rejectedRecovery|quotaProbes|shutdown|slowClients|coldReplicaStall)\.test\.ts$/,
  /^test\/store\/fleet/,
  /^test\/smoke\//,
  /chromium\.test\.ts$/,
  /^test\/ops\/(tracing|startupChecks)\.test\.ts$/,
  /^test\/config\/reload\.test\.ts$/,
  /^test\/signing\/fleetRotation\.test\.ts$/,
];

/**
 * vitest's own order (longest first by the durations it cached from earlier runs, failed files first),
 * with `longFiles` ahead of the rest: a fresh clone has no cache, and vitest would start files by size.
 */
export class LongFilesFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const isLong = (file: TestSpecification) => {
      const path = relative(file.project.config.root, file.moduleId).split('\\').join('/');
      return longFiles.some((pattern) => pattern.test(path));
    };
    return [...sorted.filter(isLong), ...sorted.filter((file) => !isLong(file))];
  }
}
