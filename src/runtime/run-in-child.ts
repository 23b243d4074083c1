/**
 * Runs a command inside a running process child's confinement (`reload: { exec: ... }`): the
 * nginx way of reloading (`nginx -s reload` reads the master's pid file and signals it) works
 * only where the child's pid numbers, files and network are the ones the command sees.
 *
 * The launcher starts it (the daemon does not fork), already in the child's cgroups so it counts
 * against the child's budget, with the child's environment as it was started and its output in
 * the child's log. `nsenter` joins the main process's mount, network, PID, IPC and UTS
 * namespaces, root and working directory; then `setpriv` (util-linux, resolved inside the
 * child's filesystem view) takes the child's uid, gid and groups, drops every capability and sets
 * no_new_privs, as the child itself runs: the command can do nothing the child could not.
 */
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import type { CgroupGroup } from './cgroup/index.ts';
import type { Launcher } from './launcher/client.ts';
import { credentialsOf, environmentOf } from './main-process.ts';

export interface RunResult {
  code: number | null;
  signal: string | null;
  /** Killed because it did not finish within the timeout. */
  timedOut: boolean;
}

/** Variables that describe the child's own handles (fds, notify socket): not the command's. */
const notInherited = /^(LISTEN_FDS|LISTEN_FDNAMES|LISTEN_PID|NOTIFY_SOCKET|WATCHDOG_USEC|WATCHDOG_PID)=/;

export interface RunInChildOptions {
  launcher: Pick<Launcher, 'spawn' | 'killGroup'>;
  group: Pick<CgroupGroup, 'procsFiles'>;
  /** Host pid of the child's main process (`mainProcess`). */
  main: number;
  command: readonly string[];
  timeoutMs: number;
  /** Launcher stream keys of the child's log. */
  stdout: string;
  stderr: string;
}

/** The host's nsenter by absolute path: the launcher would look it up on the child's PATH. */
function nsenter(): string {
  return ['/usr/bin/nsenter', '/bin/nsenter', '/usr/sbin/nsenter'].find((f) => existsSync(f)) ?? 'nsenter';
}

export async function runInChild(o: RunInChildOptions): Promise<RunResult> {
  const creds = credentialsOf(o.main);
  const env = environmentOf(o.main);
  if (creds === null || env === null) throw new Error(`its main process (pid ${o.main}) is gone`);
  const argv = [
    nsenter(),
    `--target=${o.main}`,
    '--mount',
    '--net',
    '--pid',
    '--ipc',
    '--uts',
    '--root',
    '--wd',
    '--',
    'setpriv',
    `--reuid=${creds.uid}`,
    `--regid=${creds.gid}`,
    ...(creds.groups.length > 0 ? [`--groups=${creds.groups.join(',')}`] : ['--clear-groups']),
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--no-new-privs',
    '--',
    ...o.command,
  ];
  const spawned = await o.launcher.spawn({
    argv,
    env: env.filter((e) => !notInherited.test(e)),
    cgroupProcs: o.group.procsFiles,
    stdout: o.stdout,
    stderr: o.stderr,
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    // nsenter and the command it forked share its process group.
    o.launcher.killGroup(spawned.pid, 'SIGKILL').catch(() => {});
  }, o.timeoutMs);
  try {
    const exit = await spawned.exited;
    return { code: exit.code, signal: exit.signal, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** `exit code 1`, `killed by SIGKILL after the 30 s timeout`: for messages. */
export function describeRun(command: readonly string[], r: RunResult, timeoutMs: number): string {
  const name = basename(command[0] ?? '');
  if (r.timedOut) return `${name} did not finish within ${timeoutMs} ms and was killed`;
  if (r.code !== null) return `${name} exited with code ${r.code}`;
  return `${name} was killed by ${r.signal}`;
}
