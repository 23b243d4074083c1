/**
 * The manifest's typed tree as caps contracts, and what this host can hold: the part of
 * admission that needs neither the YAML document nor the schema (no `yaml`, no `zod`), so the
 * daemon can admit a tree it received as plain data (`tree.json`) without loading the manifest
 * layer. Rejections become `file:line:col` errors in `admission.ts`, loaded only when needed.
 * The mapping rules are described there.
 */

import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { join, resolve } from 'node:path';
import { type CapTree, checkTree, type Grant, type HostCapabilities } from '../caps/index.ts';
import { allPrivileges } from '../caps/privileges.ts';
import type { ManifestTree, YamlPath } from '../manifest/index.ts';
import { contractsOf, type Spec } from '../reconcile/contracts.ts';
import { type HostReport, probeHost } from '../runtime/host-probe.ts';

export type { Spec } from '../reconcile/contracts.ts';
// The mapping itself is pure (reconciliation plans with it); re-exported for the daemon's callers.
export { contractOf, contractsOf, privilegesOf } from '../reconcile/contracts.ts';

// ---------------------------------------------------------------------------------------------
// Host

/** What the host is asked to hold beyond what the probes can see (there is no secret store yet). */
export interface HostExtras {
  readonly secrets?: readonly string[];
  /** Named networks besides `host`. */
  readonly networks?: HostCapabilities['networks'];
  /** Environment variable names the root may pass on; default: the names in this process's environment. */
  readonly env?: readonly string[];
}

/** The named networks a manifest's root declares (`networks:`), as the host holds them for admission. */
export function manifestNetworks(tree: ManifestTree): NonNullable<HostCapabilities['networks']> {
  return Object.fromEntries(Object.keys(tree.networks ?? {}).map((name) => [name, {}]));
}

/** Host facts that are not in the probe report, injected so the computation can be tested. */
export interface HostFacts {
  readonly cpus: number;
  readonly memory: number;
  /** `/proc/sys/kernel/pid_max`, or null when unreadable. */
  readonly pidMax: number | null;
  readonly readFile: (file: string) => string | null;
  /** The daemon runs as uid 0 (it holds `root`, every capability and every user). */
  readonly root?: boolean;
}

/** What this host can enforce and hold, from the runtime probes. */
export async function hostCapabilities(extras: HostExtras = {}): Promise<HostCapabilities> {
  const report = await probeHost();
  const readFile = (file: string): string | null => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return null;
    }
  };
  const pidMax = Number.parseInt(readFile('/proc/sys/kernel/pid_max') ?? '', 10);
  return hostCapabilitiesFrom(
    report,
    {
      cpus: os.availableParallelism(),
      memory: os.totalmem(),
      pidMax: Number.isSafeInteger(pidMax) && pidMax > 0 ? pidMax : null,
      readFile,
      // A daemon run as root holds every privilege; one run as another user can hand out none.
      root: process.getuid?.() === 0,
    },
    extras,
  );
}

// 2^22 is the kernel's ceiling for pid_max; used only when /proc cannot be read.
const PID_MAX_LIMIT = 4_194_304;

/**
 * Pure over its inputs. Totals are capped by the limits of the cgroup captree itself runs in:
 * a daemon confined to 2 GiB must not admit a tree that assumes the machine's 64.
 */
export function hostCapabilitiesFrom(
  report: HostReport,
  facts: HostFacts,
  extras: HostExtras = {},
): HostCapabilities {
  const cg = report.cgroups;
  const dirOf = (controller: string): { dir: string; v2: boolean } | null => {
    if (cg.unified?.controllers.includes(controller)) return { dir: cg.unified.selfDir, v2: true };
    const h = cg.v1.find((x) => x.controllers.includes(controller));
    return h ? { dir: h.selfDir, v2: false } : null;
  };
  const numberIn = (file: string): number | null => {
    const text = facts.readFile(file)?.trim();
    if (text === undefined || !/^\d+$/.test(text)) return null;
    const n = Number(text);
    return Number.isSafeInteger(n) && n > 0 ? n : null;
  };

  let memory = facts.memory;
  const mem = dirOf('memory');
  const memLimit = mem ? numberIn(join(mem.dir, mem.v2 ? 'memory.max' : 'memory.limit_in_bytes')) : null;
  if (memLimit !== null && memLimit < memory) memory = memLimit;

  let pids = facts.pidMax ?? PID_MAX_LIMIT;
  const pid = dirOf('pids');
  const pidLimit = pid ? numberIn(join(pid.dir, 'pids.max')) : null;
  if (pidLimit !== null && pidLimit < pids) pids = pidLimit;

  let cpu = facts.cpus;
  const quota = cpuQuota(dirOf('cpu'), facts.readFile);
  if (quota !== null && quota < cpu) cpu = quota;
  // caps counts cpu in millicores; a fractional quota is rounded down so the host never over-promises.
  cpu = Math.max(1, Math.floor(cpu * 1000)) / 1000;

  return {
    cpu,
    memory,
    pids,
    cpuLimits: cg.limits.cpu.enforced,
    memoryLimits: cg.limits.memory.enforced,
    pidsLimits: cg.limits.pids.enforced,
    netNamespaces: report.namespaces.net.available,
    mountNamespaces: report.namespaces.mount.available,
    ...(extras.networks ? { networks: extras.networks } : {}),
    ...(extras.secrets ? { secrets: [...extras.secrets] } : {}),
    env: [...(extras.env ?? Object.keys(process.env))].sort(),
    ...(facts.root ? { privileges: allPrivileges() } : {}),
  };
}

function cpuQuota(
  at: { dir: string; v2: boolean } | null,
  readFile: (file: string) => string | null,
): number | null {
  if (!at) return null;
  if (at.v2) {
    const [q, p] = (readFile(join(at.dir, 'cpu.max')) ?? '').trim().split(/\s+/);
    const quota = Number(q);
    const period = Number(p);
    return q !== 'max' && quota > 0 && period > 0 ? quota / period : null;
  }
  const quota = Number((readFile(join(at.dir, 'cpu.cfs_quota_us')) ?? '').trim());
  const period = Number((readFile(join(at.dir, 'cpu.cfs_period_us')) ?? '').trim());
  return quota > 0 && period > 0 ? quota / period : null;
}

/** Two children listening on the same resolved unix socket path: where, and why. */
export interface ListenClash {
  path: string;
  field: YamlPath;
  message: string;
}

export function unixListenClashes(tree: ManifestTree): ListenClash[] {
  const holders = new Map<string, string>();
  const clashes: ListenClash[] = [];
  const walk = (spec: Spec): void => {
    for (const [name, ep] of Object.entries(spec.requires.listen)) {
      if (ep.type !== 'unix') continue;
      const file = resolve(tree.dir, ep.path);
      const holder = holders.get(file);
      if (holder === undefined) holders.set(file, spec.path);
      else
        clashes.push({
          path: spec.path,
          field: ['requires', 'listen', name],
          message: `${spec.path} requires listen ${name} unix:${file}, ${holder} already listens there`,
        });
    }
    if (spec.kind === 'node') for (const c of spec.children) walk(c);
  };
  walk(tree.root);
  return clashes;
}

/**
 * Admission without error positions: the grants when the tree is admitted, else null (then
 * `admitManifest` in `admission.ts` says where and why).
 */
export function admitContracts(
  tree: ManifestTree,
  host: HostCapabilities,
): { grants: Map<string, Grant>; startOrder: Map<string, string[]>; caps: CapTree } | null {
  if (unixListenClashes(tree).length > 0) return null;
  const checked = checkTree(contractsOf(tree), host);
  if (!checked.ok) return null;
  return {
    grants: new Map(checked.grants),
    startOrder: new Map([...checked.startOrder].map(([p, order]) => [p, [...order]])),
    caps: checked.tree,
  };
}
