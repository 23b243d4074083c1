/**
 * What `check` can see before anything runs: a process child's command exists on its PATH and is
 * an executable file (not a directory), and a child with `user:` can reach its command, the
 * scripts it names and its cwd (every directory on the way searchable by that user: a clone under
 * a 0700 home directory is not). Otherwise these fail only at run time, as exit 127 or EACCES.
 */
import { readdirSync, readFileSync, type Stats, statSync } from 'node:fs';
import * as path from 'node:path';
import {
  errorAt,
  type ManifestError,
  type ManifestSource,
  type NodeSpec,
  type ProcessSpec,
} from '../manifest/index.ts';
import { closest } from './suggest.ts';

interface Who {
  name: string;
  uid: number;
  gids: number[];
}

function readDb(file: string): string[][] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => l.split(':'));
  } catch {
    return [];
  }
}

/** The user's uid, primary and supplementary gids; null when unknown (admission says so). */
function who(user: string | number, group: string | number | null): Who | null {
  const passwd = readDb('/etc/passwd');
  const entry = passwd.find(
    (f) => f[0] === String(user) || (/^\d+$/.test(String(user)) && f[2] === String(user)),
  );
  const uid = entry ? Number(entry[2]) : /^\d+$/.test(String(user)) ? Number(user) : null;
  if (uid === null) return null;
  const name = entry?.[0] ?? String(user);
  const groups = readDb('/etc/group');
  const gid = (g: string | number) =>
    /^\d+$/.test(String(g)) ? Number(g) : Number(groups.find((f) => f[0] === String(g))?.[2] ?? Number.NaN);
  const gids = [
    group !== null ? gid(group) : Number(entry?.[3] ?? Number.NaN),
    ...groups.filter((f) => (f[3] ?? '').split(',').includes(name)).map((f) => Number(f[2])),
  ].filter((g) => Number.isInteger(g));
  return { name, uid, gids };
}

/** Whether `who` has `bit` (4 read, 1 execute/search) on a file with these stats. */
function may(s: Stats, w: Who, bit: number): boolean {
  if (w.uid === 0) return bit !== 1 || s.isDirectory() || (s.mode & 0o111) !== 0;
  if (s.uid === w.uid) return ((s.mode >> 6) & bit) !== 0;
  if (w.gids.includes(s.gid)) return ((s.mode >> 3) & bit) !== 0;
  return (s.mode & bit) !== 0;
}

const octal = (s: Stats) => (s.mode & 0o7777).toString(8).padStart(4, '0');

/** Why `w` cannot reach `file` with `bit`, or null: the first directory or the file that stops it. */
function blocked(file: string, w: Who, bit: number): string | null {
  const parts = path.resolve(file).split('/').filter(Boolean);
  let dir = '/';
  for (const part of parts.slice(0, -1)) {
    dir = path.join(dir, part);
    let s: Stats;
    try {
      s = statSync(dir);
    } catch {
      return null;
    }
    if (!may(s, w, 1)) return `${dir} is ${octal(s)} owned by uid ${s.uid}: ${w.name} may not enter it`;
  }
  let s: Stats;
  try {
    s = statSync(file);
  } catch {
    return null;
  }
  if (!may(s, w, bit))
    return `${file} is ${octal(s)} owned by uid ${s.uid}: ${w.name} may not ${bit === 1 ? (s.isDirectory() ? 'enter' : 'execute') : 'read'} it`;
  return null;
}

/** `command[0]` as the launcher's execvp would find it, or why not. */
function resolveCommand(spec: ProcessSpec): { file: string } | { error: string } {
  const name = spec.command[0] ?? '';
  const check = (file: string): { file: string } | { error: string } | null => {
    let s: Stats;
    try {
      s = statSync(file);
    } catch {
      return null;
    }
    if (s.isDirectory()) return { error: `command ${file} is a directory, not a program` };
    if ((s.mode & 0o111) === 0) return { error: `command ${file} is not executable (mode ${octal(s)})` };
    return { file };
  };
  if (name.includes('/')) {
    const file = path.resolve(spec.cwd, name);
    return check(file) ?? { error: `command ${name} not found (no ${file})` };
  }
  const dirs = (spec.env.PATH ?? process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin')
    .split(':')
    .filter(Boolean);
  for (const dir of dirs) {
    const found = check(path.join(dir, name));
    if (found && 'file' in found) return found;
  }
  const programs = dirs.flatMap((d) => {
    try {
      return readdirSync(d);
    } catch {
      return [];
    }
  });
  const near = closest(name, programs);
  return { error: `command ${name} not found on PATH${near ? ` (did you mean ${near}?)` : ''}` };
}

function processes(node: NodeSpec, out: ProcessSpec[] = []): ProcessSpec[] {
  for (const c of node.children) {
    if (c.kind === 'node') processes(c, out);
    else if (c.kind === 'process') out.push(c);
  }
  return out;
}

export function reachErrors(root: NodeSpec, source: ManifestSource): ManifestError[] {
  const errors: ManifestError[] = [];
  for (const spec of processes(root)) {
    const at = (field: string, message: string) => errors.push(errorAt(source, spec.path, field, message));
    const command = resolveCommand(spec);
    if ('error' in command) {
      at('command', command.error);
      continue;
    }
    if (spec.user === null) continue;
    const w = who(spec.user, spec.group);
    if (w === null || w.uid === 0) continue;
    const why = blocked(command.file, w, 1);
    if (why) at('user', `${w.name} cannot run its command: ${why}`);
    // Scripts the command names (node app.js, python3 -m x is not a file): each must be readable.
    for (const arg of spec.command.slice(1)) {
      if (arg.startsWith('-')) continue;
      const file = path.resolve(spec.cwd, arg);
      let isFile = false;
      try {
        isFile = statSync(file).isFile();
      } catch {
        // not a file
      }
      const whyArg = isFile ? blocked(file, w, 4) : null;
      if (whyArg) at('user', `${w.name} cannot read ${arg}: ${whyArg}`);
    }
    const whyCwd = blocked(spec.cwd, w, 1);
    if (whyCwd) at('user', `${w.name} cannot enter its cwd: ${whyCwd}`);
  }
  return errors;
}
