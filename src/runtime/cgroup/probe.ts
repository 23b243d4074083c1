/**
 * Finds the cgroup hierarchies this process can build child groups in, and decides which driver
 * (v2, v1 hybrid, v1, none) makes a grant real on this host.
 *
 * Hazards:
 * - Mount points and names differ between hosts and containers: everything comes from
 *   `/proc/self/mountinfo` and `/proc/self/cgroup`, never from assumed paths. A hierarchy whose
 *   mount root does not contain our own cgroup (a foreign bind mount, a cgroup namespace we are
 *   outside of) is unusable and recorded as such.
 * - Groups are created under this process's own cgroup in every hierarchy, never at a root: a
 *   supervisor started inside a container or a delegated subtree must stay inside it.
 * - On v1, `cpu` and `cpuacct` may be separate hierarchies or co-mounted; hierarchies are keyed by
 *   mount, so a co-mounted pair is one directory, not two.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const CGROUP2_SUPER_MAGIC = 0x63677270;

/** What the kernel offers, independent of whether we may use it. */
export type CgroupLayout = 'v2' | 'hybrid' | 'v1' | 'none';
/** The controllers captree maps a grant onto. */
export type LimitController = 'cpu' | 'memory' | 'pids';
/** How a limit or a measurement is realised on this host. */
export type Via = 'cgroup v2' | 'cgroup v1' | 'none';

export interface MountEntry {
  mountPoint: string;
  /** The path inside the hierarchy that is mounted (usually `/`). */
  root: string;
  fsType: string;
  superOptions: string[];
}

export interface ProcCgroupEntry {
  id: number;
  /** Empty for the unified (v2) hierarchy; `name=systemd` style entries are kept verbatim. */
  controllers: string[];
  path: string;
}

/** One mounted hierarchy, resolved to the directory of this process's own cgroup in it. */
export interface Hierarchy {
  kind: 'v1' | 'v2';
  mountPoint: string;
  /** v1: the controllers bound to the hierarchy; v2: `cgroup.controllers` of our own group. */
  controllers: string[];
  /** Our cgroup path inside the hierarchy, as `/proc/self/cgroup` names it. */
  selfPath: string;
  /** Absolute directory of our own cgroup; new groups are created below it. */
  selfDir: string;
}

export interface Enforcement {
  enforced: boolean;
  via: Via;
  /** Human explanation, e.g. `enforced (cgroup v1)` or why not. */
  detail: string;
}

export interface CgroupProbe {
  layout: CgroupLayout;
  /** The driver createRoot will use; `none` when cgroups exist but cannot be written. */
  driver: 'v2' | 'hybrid' | 'v1' | 'none';
  /** Why the driver is weaker than the layout suggests, if it is. */
  reason: string | null;
  /** The cgroup2 hierarchy: the only one on v2, the `unified` one on hybrid, null on v1. */
  unified: Hierarchy | null;
  /** v1 hierarchies we use, keyed by mount point (co-mounted controllers share one). */
  v1: Hierarchy[];
  limits: { cpu: Enforcement; cpuWeight: Enforcement; memory: Enforcement; pids: Enforcement };
  accounting: { cpu: Via; memory: Via; pids: Via };
  /** `cgroup.kill` exists: a group is emptied by the kernel, forks racing the kill included. */
  cgroupKill: boolean;
  /** `cgroup.events` exists: emptiness is an inotify event, not a poll. */
  cgroupEvents: boolean;
}

const WANTED_V1 = new Set(['cpu', 'cpuacct', 'memory', 'pids']);

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Parses `/proc/self/mountinfo`, keeping cgroup and cgroup2 mounts only. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const fsType = right[0] ?? '';
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    out.push({
      mountPoint: unescapeMount(left[4] ?? ''),
      root: unescapeMount(left[3] ?? '/'),
      fsType,
      superOptions: (right[2] ?? '').split(','),
    });
  }
  return out;
}

/** Parses `/proc/self/cgroup`. */
export function parseProcCgroup(text: string): ProcCgroupEntry[] {
  const out: ProcCgroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const a = line.indexOf(':');
    const b = line.indexOf(':', a + 1);
    if (a < 0 || b < 0) continue;
    const ctl = line.slice(a + 1, b);
    out.push({
      id: Number(line.slice(0, a)),
      controllers: ctl === '' ? [] : ctl.split(','),
      path: line.slice(b + 1),
    });
  }
  return out;
}

/** Maps our cgroup path onto a mount, or null when the mount does not contain our cgroup. */
export function resolveSelfDir(mount: MountEntry, selfPath: string): string | null {
  const root = mount.root === '/' ? '' : mount.root.replace(/\/$/, '');
  if (root !== '' && selfPath !== root && !selfPath.startsWith(`${root}/`)) return null;
  const rel = selfPath.slice(root.length);
  if (rel.split('/').includes('..')) return null;
  return path.join(mount.mountPoint, rel).replace(/(.)\/$/, '$1');
}

export interface ProbeInput {
  statfsType: number | null;
  mountinfo: string;
  procCgroup: string;
  /** Reads a file inside a cgroup directory; null when absent. Injected so parsing is testable. */
  readFile: (file: string) => string | null;
  writable: (dir: string) => boolean;
  kernelRelease: string;
}

function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const a = Number(m[1]);
  const b = Number(m[2]);
  return a > major || (a === major && b >= minor);
}

const notEnforced = (detail: string): Enforcement => ({ enforced: false, via: 'none', detail });

/** The decision procedure, pure over its input so odd hosts can be tested from fixtures. */
export function analyseCgroups(input: ProbeInput): CgroupProbe {
  const mounts = parseMountinfo(input.mountinfo);
  const self = parseProcCgroup(input.procCgroup);
  const reasons: string[] = [];

  let unified: Hierarchy | null = null;
  const v2Mount = mounts.find((m) => m.fsType === 'cgroup2' && self.some((e) => e.id === 0));
  const v2Self = self.find((e) => e.id === 0 && e.controllers.length === 0);
  if (v2Mount && v2Self) {
    const dir = resolveSelfDir(v2Mount, v2Self.path);
    if (dir) {
      const ctl = input.readFile(path.join(dir, 'cgroup.controllers'));
      unified = {
        kind: 'v2',
        mountPoint: v2Mount.mountPoint,
        controllers: ctl ? ctl.trim().split(/\s+/).filter(Boolean) : [],
        selfPath: v2Self.path,
        selfDir: dir,
      };
    } else reasons.push(`cgroup2 mount ${v2Mount.mountPoint} does not contain our cgroup ${v2Self.path}`);
  }

  const v1: Hierarchy[] = [];
  for (const m of mounts) {
    if (m.fsType !== 'cgroup') continue;
    const ctls = m.superOptions.filter((o) => WANTED_V1.has(o));
    if (ctls.length === 0) continue;
    if (v1.some((h) => h.controllers.some((c) => ctls.includes(c)))) continue; // a second bind of one hierarchy
    const entry = self.find((e) => e.id !== 0 && ctls.every((c) => e.controllers.includes(c)));
    if (!entry) continue;
    const dir = resolveSelfDir(m, entry.path);
    if (!dir) {
      reasons.push(`v1 ${ctls.join(',')} mount ${m.mountPoint} does not contain our cgroup ${entry.path}`);
      continue;
    }
    v1.push({ kind: 'v1', mountPoint: m.mountPoint, controllers: ctls, selfPath: entry.path, selfDir: dir });
  }

  let layout: CgroupLayout;
  if (input.statfsType === CGROUP2_SUPER_MAGIC) layout = unified ? 'v2' : 'none';
  else if (v1.length > 0) layout = unified ? 'hybrid' : 'v1';
  else layout = unified ? 'v2' : 'none';
  if (layout === 'v2') v1.length = 0; // a pure v2 host has no v1 controllers worth mixing in

  let driver: CgroupProbe['driver'] = layout;
  const dirs = [...(unified ? [unified.selfDir] : []), ...v1.map((h) => h.selfDir)];
  const unwritable = dirs.filter((d) => !input.writable(d));
  if (driver !== 'none' && unwritable.length > 0) {
    driver = 'none';
    reasons.push(
      `cannot create cgroups: no write access to ${unwritable.join(', ')} (not root, not delegated)`,
    );
  }
  if (layout === 'none' && reasons.length === 0) reasons.push('no cgroup hierarchy is mounted');

  const v1With = (c: string) => (driver === 'none' ? undefined : v1.find((h) => h.controllers.includes(c)));
  const v2Has = (c: string) => driver !== 'none' && unified !== null && unified.controllers.includes(c);
  const limit = (c: LimitController, what: string): Enforcement => {
    if (v2Has(c)) return { enforced: true, via: 'cgroup v2', detail: `${what}: enforced (cgroup v2)` };
    if (v1With(c)) return { enforced: true, via: 'cgroup v1', detail: `${what}: enforced (cgroup v1)` };
    if (driver === 'none') return notEnforced(`${what}: not enforced (no usable cgroups)`);
    return notEnforced(`${what}: not enforced (the ${c} controller is not available to us)`);
  };

  const cgroupFiles = driver !== 'none' && unified !== null;
  // The root group has no cgroup.kill; when we sit at the root, fall back on the kernel version
  // (cgroup.kill arrived in 5.14) rather than creating a throwaway group just to look.
  const killHere = unified ? input.readFile(path.join(unified.selfDir, 'cgroup.kill')) !== null : false;
  const cgroupKill =
    cgroupFiles && (killHere || (unified!.selfPath === '/' && kernelAtLeast(input.kernelRelease, 5, 14)));

  return {
    layout,
    driver,
    reason: reasons.length > 0 ? reasons.join('; ') : null,
    unified: driver === 'none' ? null : unified,
    v1: driver === 'none' ? [] : v1,
    limits: {
      cpu: limit('cpu', 'cpu limits'),
      cpuWeight: limit('cpu', 'cpu weights'),
      memory: limit('memory', 'memory limits'),
      pids: limit('pids', 'pids limits'),
    },
    accounting: {
      cpu: v1With('cpuacct') ? 'cgroup v1' : cgroupFiles ? 'cgroup v2' : 'none',
      memory: v2Has('memory') ? 'cgroup v2' : v1With('memory') ? 'cgroup v1' : 'none',
      pids: v2Has('pids') ? 'cgroup v2' : v1With('pids') ? 'cgroup v1' : 'none',
    },
    cgroupKill,
    cgroupEvents: cgroupFiles,
  };
}

function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Reads the live host and analyses it. Cheap (a few small reads); call once per process. */
export function probeCgroupLayout(cgroupRoot = '/sys/fs/cgroup'): CgroupProbe {
  let statfsType: number | null = null;
  try {
    statfsType = fs.statfsSync(cgroupRoot).type;
  } catch {
    statfsType = null;
  }
  return analyseCgroups({
    statfsType,
    mountinfo: readOrNull('/proc/self/mountinfo') ?? '',
    procCgroup: readOrNull('/proc/self/cgroup') ?? '',
    readFile: readOrNull,
    writable: (dir) => {
      try {
        fs.accessSync(dir, fs.constants.W_OK);
        return true;
      } catch {
        return false;
      }
    },
    kernelRelease: os.release(),
  });
}
