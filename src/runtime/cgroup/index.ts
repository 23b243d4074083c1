/**
 * Entry point of the cgroup drivers: probe once, then create groups. The probe result is plain
 * data (JSON-serialisable) so `captree doctor` and admission read the same facts the driver acts
 * on.
 *
 * Hazard: the probe reflects the moment it ran; a host whose cgroup mounts change underneath a
 * running supervisor is not supported.
 */
import { createRootGroup, type RootOptions } from './group.ts';
import { NoneGroup } from './none.ts';
import { type CgroupProbe, probeCgroupLayout } from './probe.ts';
import type { CgroupGroup } from './types.ts';

export type { RootOptions } from './group.ts';
export { NoneGroup } from './none.ts';
export type { CgroupLayout, CgroupProbe, Enforcement, Hierarchy, LimitController, Via } from './probe.ts';
export { analyseCgroups, parseMountinfo, parseProcCgroup, probeCgroupLayout } from './probe.ts';
export type { AppliedLimits, CgroupGroup, CreateOptions, Limits, Usage } from './types.ts';
export { CgroupError } from './types.ts';

/** What this host's cgroups can do, plus the factory for root groups. */
export interface CgroupHost extends CgroupProbe {
  /**
   * Creates `name` directly under this process's own cgroup in every hierarchy (or a process-
   * group stand-in with the none driver). Pass `{ reuse: true }` to adopt an existing group.
   */
  createRoot(name: string, options?: RootOptions): CgroupGroup;
}

/** Probes the host. `force: 'none'` gives the none driver on any host (tests, advisory mode). */
export function probeCgroups(options: { cgroupRoot?: string; force?: 'none' } = {}): CgroupHost {
  const probe = probeCgroupLayout(options.cgroupRoot);
  if (options.force === 'none') {
    probe.driver = 'none';
    probe.reason = 'cgroups disabled by request';
    probe.unified = null;
    probe.v1 = [];
    for (const k of ['cpu', 'cpuWeight', 'memory', 'pids'] as const) {
      probe.limits[k] = {
        enforced: false,
        via: 'none',
        detail: `${probe.limits[k].detail.split(':')[0]}: not enforced (cgroups disabled)`,
      };
    }
    probe.accounting = { cpu: 'none', memory: 'none', pids: 'none' };
    probe.cgroupKill = false;
    probe.cgroupEvents = false;
  }
  const host: CgroupHost = {
    ...probe,
    createRoot(name, rootOptions) {
      if (probe.driver === 'none') return new NoneGroup(name);
      return createRootGroup(probe, name, rootOptions);
    },
  };
  // Keep JSON.stringify(host) to data only.
  Object.defineProperty(host, 'createRoot', { enumerable: false });
  return host;
}
