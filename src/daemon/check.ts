/**
 * Checks beyond the manifest's own schema that `captree check` and `captree up` run before
 * anything starts: the hook where admission (caps/) plugs in. Every problem is returned at once,
 * in the manifest's error format, so the CLI prints them with file:line:col.
 */
import type { ManifestError, ManifestTree } from '../manifest/index.ts';

/** Problems that would make `tree` fail to start; [] when it may start. */
export function checkTree(_tree: ManifestTree): ManifestError[] {
  return [];
}
