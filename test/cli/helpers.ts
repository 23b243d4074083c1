/**
 * Running the `captree` bin as a user would, from a temporary copy of an example directory
 * whose tree name and TCP ports are made unique, so tests can run beside each other and beside
 * other trees on the host.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isAlive } from '../../src/daemon/index.ts';

export const repo = resolve(import.meta.dirname, '../..');
export const node = join(repo, 'node_modules/.bin/node');
export const bin = join(repo, 'src/cli/main.ts');

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `captree ARGS` in `cwd`; never rejects on a non-zero exit. */
export function captree(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolvePromise) => {
    execFile(
      node,
      [bin, ...args],
      { cwd, env: { ...process.env, NO_COLOR: '1', ...env }, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolvePromise({ code, stdout, stderr });
      },
    );
  });
}

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolvePromise(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** A temp copy of examples/demo with a unique tree name and free ports. */
export async function demoCopy(): Promise<{ dir: string; name: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'captree-cli-'));
  // Without the state a `npm run demo` in the clone leaves beside the example.
  cpSync(join(repo, 'examples/demo'), dir, { recursive: true, filter: (src) => !src.includes('/.captree') });
  const name = `ct${process.pid}${Math.random().toString(36).slice(2, 7)}`;
  const [db, api] = [await freePort(), await freePort()];
  const file = join(dir, 'captree.yaml');
  const text = readFileSync(file, 'utf8')
    .replace(/^name: demo$/m, `name: ${name}`)
    .replaceAll('15432', String(db))
    .replaceAll('18080', String(api))
    .replaceAll('demo.kv', `${name}.kv`)
    .replaceAll('demo.http', `${name}.http`);
  writeFileSync(file, text);
  return { dir, name };
}

export interface Entry {
  path: string;
  kind: string;
  state: string;
  pid: number | null;
  restarts: number;
  ready: boolean;
  uptimeMs: number | null;
  grant: { cpu: number | null; memory: number | null; pids: number | null };
  used: { cpu: number | null; memory: number | null };
}

export async function psJson(cwd: string): Promise<Entry[]> {
  const r = await captree(['ps', '--json'], cwd);
  if (r.code !== 0) throw new Error(`ps --json exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Entry[];
}

export function pidsOf(entries: Entry[]): Record<string, number | null> {
  return Object.fromEntries(entries.map((e) => [e.path, e.pid]));
}

export function alive(pids: number[]): number[] {
  return pids.filter((p) => isAlive(p));
}

/** Directories under /sys/fs/cgroup whose name contains `name`. */
export function cgroupsNamed(name: string, dir = '/sys/fs/cgroup', depth = 0, out: string[] = []): string[] {
  if (depth > 12) return out;
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const p = join(dir, e.name);
    if (e.name.includes(name)) out.push(p);
    cgroupsNamed(name, p, depth + 1, out);
  }
  return out;
}

/** Last-resort cleanup: kill a daemon and whatever it ran, by pid, if a test left them. */
export function killAll(pids: (number | null | undefined)[]): void {
  for (const pid of pids) {
    if (!pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The captured log of a process child at `path`, read from the state dir (records as text). */
export function logText(state: string, path: string): string {
  try {
    return readFileSync(join(state, 'logs', `${path.slice(1).replaceAll('/', '.')}.log`), 'utf8');
  } catch {
    return '';
  }
}

/** Removes the cgroups named after `name` (deepest first) that a failed test left behind. */
export function removeCgroups(name: string): void {
  for (const dir of cgroupsNamed(name).sort((a, b) => b.length - a.length)) {
    const walk = (d: string): string[] => {
      let subs: string[] = [];
      try {
        subs = readdirSync(d, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => join(d, e.name));
      } catch {
        return [];
      }
      return [...subs.flatMap(walk), d];
    };
    for (const d of walk(dir)) {
      try {
        rmdirSync(d);
      } catch {
        // Gone, or still busy.
      }
    }
  }
}
