/**
 * The main process of a process child, as `captree signal` and `captree reload` reach it: the
 * program its `command` started, not the helpers the launcher puts around a confined child.
 *
 * A confined child's reported pid is an outer process; it forked the init (pid 1) of the child's
 * PID namespace, which forked the program (pid 2 there, see native/launcher.c). A signal sent to
 * the outer process would be relayed to the program's whole process group; the operator asked
 * for the main process, so it is found here by its host pid: the process whose pid in the
 * innermost namespace is 2, among init's children. An unconfined child's pid is the program.
 */
import { readFileSync, readlinkSync } from 'node:fs';

function read(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** `NSpid:` of /proc/PID/status: the pid in each namespace, outermost first; null once gone. */
function nsPids(pid: number): number[] | null {
  const status = read(`/proc/${pid}/status`);
  const line = status?.split('\n').find((l) => l.startsWith('NSpid:'));
  return line ? line.slice(6).trim().split(/\s+/).map(Number) : null;
}

function link(file: string): string | null {
  try {
    return readlinkSync(file);
  } catch {
    return null;
  }
}

function children(pid: number): number[] {
  const text = read(`/proc/${pid}/task/${pid}/children`) ?? '';
  return text
    .trim()
    .split(/\s+/)
    .filter((s) => s !== '')
    .map(Number);
}

/**
 * The host pid of the program `outer` runs; null when it is gone (a program that exited 0 and
 * left daemons running has no main process any more).
 */
export function mainProcess(outer: number): number | null {
  const own = nsPids(outer);
  if (own === null) return null;
  // The outer process of a confined child made a PID namespace for its children, not for itself.
  if (link(`/proc/${outer}/ns/pid`) === link(`/proc/${outer}/ns/pid_for_children`)) return outer;
  const deeper = (pid: number, inner: number) => {
    const ns = nsPids(pid);
    return ns !== null && ns.length === own.length + 1 && ns.at(-1) === inner;
  };
  const init = children(outer).find((c) => deeper(c, 1));
  return init === undefined ? null : (children(init).find((c) => deeper(c, 2)) ?? null);
}

export interface Credentials {
  uid: number;
  gid: number;
  groups: number[];
}

/** The real uid, gid and supplementary groups of a live process. */
export function credentialsOf(pid: number): Credentials | null {
  const status = read(`/proc/${pid}/status`);
  if (status === null) return null;
  const field = (name: string) =>
    (status.split('\n').find((l) => l.startsWith(`${name}:`)) ?? `${name}:`)
      .slice(name.length + 1)
      .trim()
      .split(/\s+/)
      .filter((s) => s !== '')
      .map(Number);
  const [uid] = field('Uid');
  const [gid] = field('Gid');
  if (uid === undefined || gid === undefined) return null;
  return { uid, gid, groups: field('Groups') };
}

/** The environment a live process was started with (/proc/PID/environ), as NAME=value strings. */
export function environmentOf(pid: number): string[] | null {
  const text = read(`/proc/${pid}/environ`);
  return text === null ? null : text.split('\0').filter((s) => s !== '');
}
