/**
 * Reconciliation figures (docs/performance-reconcile.md).
 *
 * 1. Planning a 1,000-child tree (10 rest_for_one nodes × 100 processes, each node with one
 *    provider its 99 siblings consume): the whole pure plan (re-admission of both trees, field
 *    diff, scope, steps) for a no-change manifest, 100 quantity edits, 10 command edits, 10 added
 *    and 10 removed children, and one provider's changed address. Beside it, the peer's way:
 *    `docker compose config --hash`-style full diffing (a canonical JSON hash per service, both
 *    trees), which says what changed but nothing about strategies, scopes or budgets.
 * 2. Assessing a 1,000-child snapshot (drift and recommendations, pure).
 * 3. Event → recommendation on a real daemon (in-process `startDaemon`, 40 real processes):
 *    each child is made to fail for good (SIGUSR1 → exit 3, a permanent exit code); the time
 *    from its `exited` event to its `reconcile_required` event, both as the daemon journals them.
 *
 * Run: node_modules/.bin/node bench/plan.ts [iterations=30]  (part 3 needs root and cgroups)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostCapabilities } from '../src/caps/index.ts';
import { type JournalRecord, startDaemon } from '../src/daemon/index.ts';
import { type ManifestTree, parseManifest } from '../src/manifest/index.ts';
import {
  type Actual,
  assess,
  canonicalJson,
  digestText,
  indexTree,
  plan,
  type Snapshot,
} from '../src/reconcile/index.ts';

const iterations = Number(process.argv[2] ?? 30);
const host: HostCapabilities = {
  cpu: 64,
  memory: 256 * 2 ** 30,
  pids: 1 << 20,
  cpuLimits: true,
  memoryLimits: true,
  pidsLimits: true,
  netNamespaces: true,
  mountNamespaces: true,
  env: [],
};

interface Edit {
  cpu?: Set<string>;
  command?: Set<string>;
  drop?: Set<string>;
  add?: number;
  port?: number;
}

function big(edit: Edit = {}): ManifestTree {
  const nodes: string[] = [];
  for (let n = 0; n < 10; n++) {
    const children: string[] = [];
    const port = n === 0 && edit.port ? edit.port : 7000 + n;
    for (let c = 0; c < 100; c++) {
      const name = `p${c}`;
      const path = `/big/n${n}/${name}`;
      if (edit.drop?.has(path)) continue;
      const cpu = edit.cpu?.has(path) ? 0.02 : 0.01;
      const cmd = edit.command?.has(path) ? '2' : '1';
      children.push(
        c === 0
          ? `      - { name: ${name}, command: [srv, '${cmd}'], requires: { cpu: ${cpu}, memory: 16Mi }, provides: { svc${n}: { tcp: 127.0.0.1:${port} } } }`
          : `      - { name: ${name}, command: [app, '${cmd}'], env: { N: '${c}' }, requires: { cpu: ${cpu}, memory: 16Mi, services: [svc${n}] } }`,
      );
    }
    for (let a = 0; a < (n === 9 ? (edit.add ?? 0) : 0); a++)
      children.push(`      - { name: extra${a}, command: [x], requires: { cpu: 0.01, memory: 16Mi } }`);
    nodes.push(
      `  - name: n${n}\n    strategy: rest_for_one\n    requires: { cpu: 2, memory: 4Gi }\n    children:\n${children.join('\n')}`,
    );
  }
  const parsed = parseManifest(
    `name: big\nrequires: { cpu: 32, memory: 64Gi }\nchildren:\n${nodes.join('\n')}\n`,
    '/srv/big/captree.yaml',
    {
      baseDir: '/srv/big',
    },
  );
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors.slice(0, 3)));
  return parsed.tree;
}

function actualOf(tree: ManifestTree): Actual {
  const children: Actual['children'] = {};
  let pid = 1000;
  for (const [path, spec] of indexTree(tree))
    children[path] = {
      kind: spec.kind,
      state: spec.kind === 'node' ? 'ready' : 'running',
      pid: spec.kind === 'node' ? null : pid++,
      held: false,
    };
  return { generation: 1, tree, host, order: {}, reserved: {}, admitted: [], children };
}

function time(fn: () => void): { median: number; p99: number } {
  for (let i = 0; i < 3; i++) fn();
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    fn();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  return {
    median: samples[Math.floor(samples.length / 2)] as number,
    p99: samples[Math.min(samples.length - 1, Math.floor(samples.length * 0.99))] as number,
  };
}

/** The peer: a hash per service of its canonical config, compared between the trees. */
function hashDiff(a: ManifestTree, b: ManifestTree): number {
  const hashes = (t: ManifestTree) => {
    const out = new Map<string, string>();
    for (const [path, spec] of indexTree(t))
      if (spec.kind === 'process') out.set(path, digestText(canonicalJson(spec)));
    return out;
  };
  const x = hashes(a);
  const y = hashes(b);
  let changed = 0;
  for (const [p, h] of y) if (x.get(p) !== h) changed++;
  for (const p of x.keys()) if (!y.has(p)) changed++;
  return changed;
}

const running = big();
const actual = actualOf(running);
const pick = (count: number, step: number) =>
  new Set(Array.from({ length: count }, (_, i) => `/big/n${i % 10}/p${1 + ((i * step) % 99)}`));
const cases: [string, ManifestTree][] = [
  ['no change', big()],
  ['100 cpu edits (live)', big({ cpu: pick(100, 7) })],
  ['10 command edits (restarts)', big({ command: pick(10, 13) })],
  ['10 added, 10 removed', big({ add: 10, drop: pick(10, 17) })],
  ['a provider moves (99 consumers)', big({ port: 7999 })],
];

console.log(
  `planning a tree of ${indexTree(running).size - 1} nodes and children, ${iterations} runs each (ms)`,
);
console.log(
  `${'case'.padEnd(34)} ${'plan median'.padStart(12)} ${'p99'.padStart(8)} ${'restarts'.padStart(9)} ${'hash diff'.padStart(10)} ${'changed'.padStart(8)}`,
);
for (const [name, desired] of cases) {
  let restarts = 0;
  const t = time(() => {
    const p = plan(desired, actual);
    restarts = p.summary.restarted;
  });
  let changed = 0;
  const h = time(() => {
    changed = hashDiff(running, desired);
  });
  console.log(
    `${name.padEnd(34)} ${t.median.toFixed(1).padStart(12)} ${t.p99.toFixed(1).padStart(8)} ${String(restarts).padStart(9)} ${h.median.toFixed(1).padStart(10)} ${String(changed).padStart(8)}`,
  );
}

const snapshot: Snapshot = { version: 1, generation: 1, base: '', actual, observed: {}, applying: null };
const a = time(() => assess(snapshot));
console.log(
  `\nassess a 1,000-child snapshot (drift + recommendations): median ${a.median.toFixed(2)} ms, p99 ${a.p99.toFixed(2)} ms`,
);

// ---- 3. event → recommendation on a real daemon ----------------------------------------------
if (process.getuid?.() !== 0) {
  console.log('\nevent → recommendation: skipped (needs root for a real tree)');
} else {
  const n = 40;
  const dir = mkdtempSync(join(tmpdir(), 'captree-bench-rec-'));
  const name = `benchrec${process.pid}`;
  const children = Array.from(
    { length: n },
    (_, i) =>
      `  - { name: c${i}, command: [sh, -c, 'trap "exit 3" USR1; while :; do sleep 0.05; done'], permanentExitCodes: [3] }`,
  ).join('\n');
  const parsed = parseManifest(
    `name: ${name}\nintensity: 1000\nchildren:\n${children}\n`,
    join(dir, 'captree.yaml'),
    { baseDir: dir },
  );
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const exitedAt = new Map<string, number>();
  const latencies: number[] = [];
  let waiting: (() => void) | null = null;
  const onEvent = (r: JournalRecord) => {
    if (r.type === 'exited') exitedAt.set(r.path, performance.now());
    if (r.type === 'reconcile_required' && exitedAt.has(r.path)) {
      latencies.push(performance.now() - (exitedAt.get(r.path) as number));
      waiting?.();
    }
  };
  const daemon = await startDaemon({ manifest: parsed.tree, stateDir: join(dir, '.captree'), onEvent });
  try {
    await daemon.started;
    // The program's own pid is below the confined child's outer pid: signal the whole group.
    for (let i = 0; i < n; i++) {
      const path = `/${name}/c${i}`;
      const entry = daemon.tree.supervisor.tree().find((e) => e.path === path);
      const done = new Promise<void>((resolve) => {
        waiting = resolve;
      });
      if (entry?.pid) {
        const at = daemon.tree.locate(path);
        void at;
        process.kill(-entry.pid, 'SIGUSR1');
      }
      await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
    }
  } finally {
    await daemon.stop();
    await daemon.finished;
    rmSync(dir, { recursive: true, force: true });
  }
  latencies.sort((x, y) => x - y);
  const q = (f: number) =>
    (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * f))] ?? Number.NaN).toFixed(2);
  console.log(
    `\nevent → recommendation (exited → reconcile_required, real daemon, ${latencies.length}/${n} samples): median ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms`,
  );
}
