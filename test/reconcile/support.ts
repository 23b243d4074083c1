/**
 * A real tree for the reconciliation tests: a manifest written to a temporary directory, run
 * with `captree up --detach` through the bin, edited and applied as a user would; pids read with
 * `ps --json`, cgroup limits read from the cgroup files. Torn down with `down` (then by pid).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readPid, statePaths } from '../../src/daemon/index.ts';
import { captree, cgroupsNamed, killAll, psJson, type Result } from '../cli/helpers.ts';

export interface LiveTree {
  dir: string;
  name: string;
  /** `captree ARGS` in the tree's directory. */
  run(args: string[]): Promise<Result>;
  /** Rewrites captree.yaml (`@NAME@` → the tree's name). */
  write(yaml: string): void;
  /** Process path → pid, from `ps --json`. */
  pids(): Promise<Record<string, number | null>>;
  /** A cgroup file of a path's group, e.g. ('/x/cache', 'memory.limit_in_bytes'); null if none. */
  cgroupFile(path: string, file: string): string | null;
  /** Where that file is; null if none. */
  cgroupPath(path: string, file: string): string | null;
  daemonPid(): number | null;
  down(): Promise<void>;
}

export async function liveTree(
  prefix: string,
  yaml: string,
  prepare?: (dir: string) => void,
): Promise<LiveTree> {
  const dir = mkdtempSync(join(tmpdir(), `captree-${prefix}-`));
  const name = `ct${prefix}${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const write = (text: string) => writeFileSync(join(dir, 'captree.yaml'), text.replaceAll('@NAME@', name));
  write(yaml);
  prepare?.(dir);
  const run = (args: string[]) => captree(args, dir);
  const daemonPid = () => readPid(statePaths(join(dir, '.captree')));
  const seen = new Set<number>();
  const pids = async () => {
    const out: Record<string, number | null> = {};
    for (const e of await psJson(dir)) {
      if (e.kind === 'node') continue;
      out[e.path] = e.pid;
      if (e.pid) seen.add(e.pid);
    }
    return out;
  };
  const cgroupPath = (path: string, file: string): string | null => {
    // The tree's root group in every hierarchy; the file exists in the one of its controller.
    const rel = path.split('/').slice(2);
    for (const root of cgroupsNamed(`captree-${name}-`)) {
      const at = join(root, ...rel, file);
      if (existsSync(at)) return at;
    }
    return null;
  };
  const up = await run(['up', '--detach']);
  if (up.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`up failed (${up.code}): ${up.stderr}${up.stdout}`);
  }
  return {
    dir,
    name,
    run,
    write,
    pids,
    daemonPid,
    cgroupFile(path, file) {
      const at = cgroupPath(path, file);
      return at === null ? null : readFileSync(at, 'utf8').trim();
    },
    cgroupPath,
    async down() {
      const daemon = daemonPid();
      await run(['down']).catch(() => {});
      killAll([daemon, ...seen]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The journal's records of one type, parsed. */
export function journalOf(dir: string, type?: string): Record<string, unknown>[] {
  let text = '';
  try {
    text = readFileSync(join(dir, '.captree', 'journal.jsonl'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => type === undefined || r.type === type);
}

/** Paths whose pid differs between two `pids()` readings. */
export function changedPids(a: Record<string, number | null>, b: Record<string, number | null>): string[] {
  return Object.keys(b)
    .filter((p) => a[p] !== undefined && a[p] !== b[p])
    .sort();
}

/** Waits (polling `check` every 50 ms) until it returns a value, or fails after `ms`. */
export async function until<T>(
  what: string,
  check: () => Promise<T | null | undefined | false>,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
