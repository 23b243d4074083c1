/**
 * The state directory (`.captree/` beside the manifest, or `--state DIR`): where a running tree
 * is found by every command other than `up`. Ownership is a pid file created exclusively, so two
 * `captree up` cannot both own one directory; a pid file left by a dead daemon is taken over.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createExclusive, ensurePrivateDir, readPrivate, writeAtomic } from './private-fs.ts';

export const STATE_DIR_NAME = '.captree';

export interface StatePaths {
  dir: string;
  socket: string;
  pidFile: string;
  journal: string;
  log: string;
  /** Run-time changes that must survive a daemon crash (`DurableState`). */
  state: string;
}

export function statePaths(dir: string): StatePaths {
  const abs = path.resolve(dir);
  return {
    dir: abs,
    socket: path.join(abs, 'control.sock'),
    pidFile: path.join(abs, 'daemon.pid'),
    journal: path.join(abs, 'journal.jsonl'),
    log: path.join(abs, 'daemon.log'),
    state: path.join(abs, 'state.json'),
  };
}

/** `.captree/` beside the manifest file. */
export function stateDirFor(manifestFile: string): string {
  return path.join(path.dirname(path.resolve(manifestFile)), STATE_DIR_NAME);
}

/** The daemon pid recorded in the state dir, or null. */
export function readPid(paths: StatePaths): number | null {
  try {
    const pid = Number.parseInt((readPrivate(paths.pidFile) ?? '').trim(), 10);
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
  ensurePrivateDir(paths.dir);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = createExclusive(paths.pidFile);
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

/**
 * `state.json`: what an operator changed at run time that the manifest does not say, so a
 * daemon restarted after a crash (`kill -9` included) finds the tree as it was acknowledged.
 * Today: the children held stopped by `captree stop`. Written whole on every change (a
 * temporary file, fsync, rename, fsync of the directory), so a crash leaves the old or the new
 * version, never a torn one. A clean stop of the tree removes it: the next `up` starts from the
 * manifest alone. Readers ignore fields they do not know, so later versions can add sections
 * (children admitted at run time) beside `held`.
 */
export interface StateFile {
  version: 1;
  /** Paths held stopped by an operator, sorted. */
  held: string[];
  /** Sections owned by other modules (e.g. `admitted`: children admitted at run time). */
  [section: string]: unknown;
}

export class DurableState {
  readonly file: string;
  #held: Set<string>;
  #sections = new Map<string, unknown>();

  private constructor(file: string, held: Iterable<string>) {
    this.file = file;
    this.#held = new Set(held);
  }

  /** A section another module keeps here (plain JSON data), as last written. */
  section(name: string): unknown {
    return this.#sections.get(name);
  }

  /** Replaces a section (undefined removes it); durable when it returns. */
  setSection(name: string, value: unknown): void {
    if (name === 'version' || name === 'held') throw new Error(`state.json section ${name} is reserved`);
    if (value === undefined) this.#sections.delete(name);
    else this.#sections.set(name, value);
    this.#write();
  }

  /** The state left by an earlier daemon, or an empty one; a file that cannot be parsed is an error. */
  static load(file: string): DurableState {
    // Refused when it is a symlink or another user's: its commands would run as this user.
    const text = readPrivate(file);
    if (text === null) return new DurableState(file, []);
    let parsed: Partial<StateFile>;
    try {
      parsed = JSON.parse(text) as Partial<StateFile>;
    } catch (err) {
      throw new Error(`${file} is not valid JSON (${(err as Error).message}); move it away to start afresh`);
    }
    const held = Array.isArray(parsed.held) ? parsed.held.filter((p) => typeof p === 'string') : [];
    const state = new DurableState(file, held);
    for (const [name, value] of Object.entries(parsed))
      if (name !== 'version' && name !== 'held') state.#sections.set(name, value);
    return state;
  }

  get held(): readonly string[] {
    return [...this.#held].sort();
  }

  isHeld(path: string): boolean {
    return this.#held.has(path);
  }

  /**
   * Durable when it returns; a hold that cannot be written (a full disk) throws and is not taken.
   * Releasing one never throws: the write is tried again each second until it succeeds (a daemon
   * killed meanwhile finds the path still held, which an operator's `start` undoes).
   */
  setHeld(path: string, held: boolean): void {
    if (this.#held.has(path) === held) return;
    if (held) {
      this.#held.add(path);
      try {
        this.#write();
      } catch (err) {
        this.#held.delete(path);
        throw err;
      }
      return;
    }
    this.#held.delete(path);
    this.#writeSoon();
  }

  #retry: ReturnType<typeof setInterval> | null = null;

  #writeSoon(): void {
    try {
      this.#write();
    } catch {
      if (this.#retry !== null) return;
      this.#retry = setInterval(() => {
        try {
          this.#write();
        } catch {
          return; // still failing: next second
        }
        if (this.#retry !== null) clearInterval(this.#retry);
        this.#retry = null;
      }, 1000);
      this.#retry.unref();
    }
  }

  /** After a clean stop: the next daemon starts from the manifest alone. */
  remove(): void {
    if (this.#retry !== null) clearInterval(this.#retry);
    this.#retry = null;
    fs.rmSync(this.file, { force: true });
  }

  #write(): void {
    const data: StateFile = {
      version: 1,
      held: this.held as string[],
      ...Object.fromEntries(this.#sections),
    };
    writeAtomic(this.file, `${JSON.stringify(data, null, 2)}\n`);
    // Whatever a retry was waiting to write is in this one.
    if (this.#retry !== null) clearInterval(this.#retry);
    this.#retry = null;
  }
}
