/**
 * Checks beyond the manifest's own schema that `captree check` and `captree up` run before
 * anything starts: the full admission of the tree against what this host can hold and enforce
 * (caps/ through admission.ts). Every problem is returned at once, in the manifest's error
 * format, so the CLI prints them with file:line:col.
 */
import type { ManifestError, ManifestSource, ManifestTree } from '../manifest/index.ts';
import { hostCapabilities, manifestNetworks } from './contracts.ts';

/** Problems that would make `tree` fail to start; [] when it may start. */
export async function checkTree(tree: ManifestTree, source: ManifestSource): Promise<ManifestError[]> {
  // build-tree brings the runtime (launcher, cgroups) with it: load it only when checking.
  // admission.ts brings the manifest layer (yaml): load it only when checking, too.
  const [{ availableSecrets }, { admitManifest }] = await Promise.all([
    import('./build-tree.ts'),
    import('./admission.ts'),
  ]);
  const host = await hostCapabilities({ secrets: availableSecrets(tree), networks: manifestNetworks(tree) });
  const admitted = admitManifest(tree, source, host);
  return admitted.ok ? [] : admitted.errors;
}
