/**
 * A RunningTree of in-process tasks, for exercising the daemon, the control API and the CLI
 * plumbing without processes or cgroups. Each "process" child is a task that runs until asked
 * to stop; its log is a real file in the log format, fed through `log(path, text)`.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { node, Supervisor, task } from '../../src/core/index.ts';
import type { RunningTree } from '../../src/daemon/index.ts';
import type { ManifestTree } from '../../src/manifest/index.ts';
import { ChildLog } from '../../src/runtime/logs/index.ts';

export interface FakeTree extends RunningTree {
  /** Writes one line to a child's log, as its stdout would; resolves once it is on disk. */
  log(path: string, text: string): Promise<void>;
  closed: boolean;
}

const forever = task(
  ({ signal }) =>
    new Promise<void>((resolve) => {
      signal.addEventListener('abort', () => resolve(), { once: true });
    }),
);

/** /<name> rest_for_one [a, b, c] and a nested one_for_one node `sub` with [x]. */
export function fakeTree(name: string, logsDir: string): FakeTree {
  mkdirSync(logsDir, { recursive: true });
  const supervisor = new Supervisor({
    name,
    strategy: 'rest_for_one',
    intensity: 5,
    period: 10_000,
    children: [
      { id: 'a', driver: forever, shutdown: 1000 },
      { id: 'b', driver: forever, shutdown: 1000 },
      { id: 'c', driver: forever, shutdown: 1000 },
      { id: 'sub', driver: node({ name: 'sub', children: [{ id: 'x', driver: forever }] }) },
    ],
  });
  const logs = new Map<string, ChildLog>();
  const logOf = (path: string) => {
    let l = logs.get(path);
    if (!l) {
      l = new ChildLog({ dir: logsDir, name: path.slice(1).replaceAll('/', '.') });
      logs.set(path, l);
    }
    return l;
  };
  const workers = new Set([`/${name}/a`, `/${name}/b`, `/${name}/c`, `/${name}/sub/x`]);
  const tree: FakeTree = {
    supervisor,
    closed: false,
    runtime: {
      async close() {
        await Promise.all([...logs.values()].map((l) => l.close()));
        tree.closed = true;
      },
    },
    locate: (path) => supervisor.locate(path),
    resources: (path) => ({
      grant: { cpu: path === `/${name}` ? 1 : 0.25, memory: 64 * 1024 * 1024, pids: null },
      used: { cpu: null, memory: workers.has(path) ? 1024 * 1024 : null },
    }),
    logFiles: (path) =>
      workers.has(path) ? { dir: logsDir, name: path.slice(1).replaceAll('/', '.') } : null,
    onLog: (path, fn) => (workers.has(path) ? logOf(path).onRecord((r) => fn(r.text)) : () => {}),
    log(path, text) {
      const l = logOf(path);
      l.push('out', `${text}\n`);
      return l.flush();
    },
  };
  return tree;
}

/** A parsed manifest whose only use here is naming the tree. */
export function fakeManifest(name: string, dir: string): ManifestTree {
  return {
    file: join(dir, 'captree.yaml'),
    dir,
    root: { name, path: `/${name}`, kind: 'node', children: [] } as unknown as ManifestTree['root'],
  };
}
