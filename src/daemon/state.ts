/**
 * The state directory (`.captree/` beside the manifest, or `--state DIR`): where a running tree
 * is found by every command other than `up`. Ownership is a pid file created exclusively, so two
 * `captree up` cannot both own one directory; a pid file left by a dead daemon is taken over.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const STATE_DIR_NAME = '.captree';

export interface StatePaths {
  dir: string;
  socket: string;
  pidFile: string;
  journal: string;
  log: string;
}

export function statePaths(dir: string): StatePaths {
  const abs = path.resolve(dir);
  return {
    dir: abs,
    socket: path.join(abs, 'control.sock'),
    pidFile: path.join(abs, 'daemon.pid'),
    journal: path.join(abs, 'journal.jsonl'),
    log: path.join(abs, 'daemon.log'),
  };
}

/** `.captree/` beside the manifest file. */
export function stateDirFor(manifestFile: string): string {
  return path.join(path.dirname(path.resolve(manifestFile)), STATE_DIR_NAME);
}

/** The daemon pid recorded in the state dir, or null. */
export function readPid(paths: StatePaths): number | null {
  try {
    const pid = Number.parseInt(fs.readFileSync(paths.pidFile, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * True if a process with this pid runs (EPERM means it exists but is not ours). A zombie is not
 * running: a detached daemon's reaper may be a slow init, and `down` must not wait for it.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

export class StateDirBusyError extends Error {
  readonly pid: number;
  constructor(dir: string, pid: number) {
    super(`a tree is already running from ${dir} (daemon pid ${pid}); stop it with: captree down`);
    this.name = 'StateDirBusyError';
    this.pid = pid;
  }
}

/** The live daemon owning `paths`, if any. */
export function liveOwner(paths: StatePaths): number | null {
  const pid = readPid(paths);
  return pid !== null && isAlive(pid) ? pid : null;
}

/**
 * Makes this process the owner of the state dir; throws `StateDirBusyError` if a live daemon
 * owns it. Returns a release function that removes the pid file (only if still ours).
 */
export function acquireStateDir(paths: StatePaths): () => void {
  fs.mkdirSync(paths.dir, { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(paths.pidFile, 'wx', 0o644);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      return () => {
        if (readPid(paths) === process.pid) fs.rmSync(paths.pidFile, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = liveOwner(paths);
      if (owner !== null) throw new StateDirBusyError(paths.dir, owner);
      // A dead daemon's pid file (or one being written right now: retry a couple of times).
      fs.rmSync(paths.pidFile, { force: true });
    }
  }
  throw new Error(`cannot take over ${paths.pidFile}: it keeps reappearing`);
}
