/**
 * The cgroup subtree a parent delegated to a supervisor child (CAPTREE_CGROUP: its own cgroup
 * directories, one per hierarchy), as a `CgroupGroup` to create its children's groups under.
 *
 * The probe that decides the driver (v2, hybrid, v1) normally starts from `/proc/self/cgroup`;
 * here it starts from the delegated directories instead, so the groups land under them whatever
 * cgroup this process was moved to. Hierarchies the parent did not delegate are left alone.
 *
 * v2 no-internal-processes rule: to enable controllers for its children, a delegated group must
 * hold no process; the supervisor (and its launcher) are moved into a `self` leaf first. v1 and
 * the hybrid unified hierarchy (no controllers) have no such rule: nothing moves.
 *
 * The kernel keeps every group created here inside the parent's limits: a child's cpu quota
 * above the delegated group's is refused (v1, EINVAL) or capped (v2), memory and pids are
 * charged hierarchically. Nothing written here can exceed the grant.
 */
import { accessSync, constants, readFileSync, statfsSync } from 'node:fs';
import * as os from 'node:os';
import { createRootGroup } from '../runtime/cgroup/group.ts';
import { type CgroupGroup, NoneGroup, parseMountinfo } from '../runtime/cgroup/index.ts';
import { analyseCgroups, type CgroupProbe } from '../runtime/cgroup/probe.ts';

function readOrNull(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** The host's cgroup layout, seen from `dirs` instead of this process's own cgroup. */
export function probeDelegated(dirs: readonly string[]): CgroupProbe {
  const mountinfo = readOrNull('/proc/self/mountinfo') ?? '';
  const mounts = parseMountinfo(mountinfo);
  const lines: string[] = [];
  let id = 1;
  for (const dir of dirs) {
    const m = mounts
      .filter((x) => dir === x.mountPoint || dir.startsWith(`${x.mountPoint}/`))
      .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
    if (!m) throw new Error(`${dir} is not inside a mounted cgroup hierarchy`);
    const rel = dir.slice(m.mountPoint.length) || '/';
    const root = m.root === '/' ? '' : m.root.replace(/\/$/, '');
    const selfPath = `${root}${rel === '/' ? '' : rel}` || '/';
    if (m.fsType === 'cgroup2') lines.push(`0::${selfPath}`);
    else {
      const ctls = m.superOptions.filter((o) => ['cpu', 'cpuacct', 'memory', 'pids'].includes(o));
      if (ctls.length > 0) lines.push(`${id++}:${ctls.join(',')}:${selfPath}`);
    }
  }
  let statfsType: number | null = null;
  try {
    statfsType = statfsSync('/sys/fs/cgroup').type;
  } catch {}
  return analyseCgroups({
    statfsType,
    mountinfo,
    procCgroup: `${lines.join('\n')}\n`,
    readFile: readOrNull,
    writable: (d) => {
      try {
        accessSync(d, constants.W_OK);
        return true;
      } catch {
        return false;
      }
    },
    kernelRelease: os.release(),
  });
}

/**
 * A group named `name` under the delegated directories (re-used if it exists: a restarted
 * supervisor finds the one its predecessor left, emptied by the parent's kill), or a process-group
 * stand-in when nothing was delegated.
 */
export function delegatedGroup(dirs: readonly string[], name = 'children'): CgroupGroup {
  if (dirs.length === 0) return new NoneGroup(name);
  const probe = probeDelegated(dirs);
  if (probe.driver === 'none') return new NoneGroup(name);
  return createRootGroup(probe, name, { reuse: true, evacuateTo: 'self' });
}
