/**
 * Admission decision time at 10,000 children per node and at depth 10, against the 1 µs target.
 * Run: node_modules/.bin/node bench/admission.ts
 *
 * Each scenario first builds the tree, then times batches of admissions of fresh children
 * (each decision admitted, i.e. the full check plus the commit) and, separately, the releases
 * that undo them, so the measured node keeps its width. A rejection is timed too: it builds the
 * who-holds-what breakdown, which walks the parent's children, so it is O(width) by design.
 */
import {
  admit,
  type CapTree,
  type Contract,
  createTree,
  type HostCapabilities,
  release,
  renegotiate,
} from '../src/caps/index.ts';

const host: HostCapabilities = {
  cpu: 100_000,
  memory: 2 ** 50,
  pids: 10_000_000,
  cpuLimits: true,
  memoryLimits: true,
  pidsLimits: true,
  netNamespaces: true,
  mountNamespaces: true,
  networks: { lan: {} },
  secrets: ['PII', 'DB_PASSWORD'],
};

const target = 1000;
const width = 10_000;
const batch = 1000;
const rounds = 20;

function tree(): CapTree {
  const r = createTree(
    {
      name: 'root',
      requires: { cpu: 50_000 },
      policy: { never: [['secret:PII', 'net:internet']], maxDepth: 20 },
    },
    host,
  );
  if (!r.ok) throw new Error(JSON.stringify(r.reasons));
  return r.tree;
}

function must(ok: boolean, what: string): void {
  if (!ok) throw new Error(`bench setup failed: ${what}`);
}

const simple = (name: string): Contract => ({ name, requires: { cpu: 0.001, memory: 1 << 20, pids: 1 } });
const full = (name: string): Contract => ({
  name,
  requires: {
    cpu: 0.001,
    memory: 1 << 20,
    pids: 1,
    net: 'none',
    services: ['db.sql'],
    secrets: ['DB_PASSWORD'],
    paths: { '/srv/app': 'ro' },
  },
});

/** Times admissions of fresh children under `parent`, which already has its width. */
function time(
  t: CapTree,
  parent: string,
  make: (name: string) => Contract,
): { admit: number; release: number } {
  let admitNs = 0n;
  let releaseNs = 0n;
  for (let r = 0; r < rounds; r++) {
    const contracts = Array.from({ length: batch }, (_, i) => make(`x${r}-${i}`));
    const t0 = process.hrtime.bigint();
    for (const c of contracts) if (!admit(t, parent, c).ok) throw new Error(`rejected ${c.name}`);
    const t1 = process.hrtime.bigint();
    for (const c of contracts) release(t, `${parent}/${c.name}`);
    const t2 = process.hrtime.bigint();
    if (r >= 2) {
      admitNs += t1 - t0;
      releaseNs += t2 - t1;
    }
  }
  const n = BigInt(batch * (rounds - 2));
  return { admit: Number(admitNs / n), release: Number(releaseNs / n) };
}

function fill(t: CapTree, parent: string, make: (name: string) => Contract): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < width; i++) must(admit(t, parent, make(`c${i}`)).ok, `child ${i}`);
  return Number((process.hrtime.bigint() - t0) / BigInt(width));
}

function rejection(t: CapTree, parent: string): number {
  const n = 200;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++)
    must(!admit(t, parent, { name: `big${i}`, requires: { cpu: 90_000 } }).ok, 'reject');
  return Number((process.hrtime.bigint() - t0) / BigInt(n));
}

/** The same name revoked and admitted again: the pattern that defeats V8's Map (see registry.ts). */
function churn(t: CapTree, parent: string): number {
  const n = 20_000;
  const c = simple('again');
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    must(admit(t, parent, c).ok, 'again');
    release(t, `${parent}/again`);
  }
  return Number((process.hrtime.bigint() - t0) / BigInt(n));
}

const rows: [string, number][] = [];

// Breadth: 10,000 children under one node.
{
  const t = tree();
  must(admit(t, '/root', { name: 'db', provides: { 'db.sql': {} } }).ok, 'db');
  must(
    admit(t, '/root', {
      name: 'wide',
      requires: {
        cpu: 20_000,
        memory: 2 ** 44,
        pids: 1_000_000,
        paths: { '/srv': 'rw' },
        secrets: ['DB_PASSWORD'],
        services: ['db.sql'],
      },
    }).ok,
    'wide',
  );
  rows.push(['fill 0 -> 10,000 children (simple contract)', fill(t, '/root/wide', simple)]);
  const s = time(t, '/root/wide', simple);
  rows.push(['admit at 10,000 children (cpu+memory+pids)', s.admit]);
  rows.push(['release at 10,000 children', s.release]);
  const f = time(t, '/root/wide', full);
  rows.push(['admit at 10,000 children (full contract)', f.admit]);
  rows.push(['reject at 10,000 children (with breakdown)', rejection(t, '/root/wide')]);
  rows.push(['re-admit one name at 10,000 children (admit+release)', churn(t, '/root/wide')]);
}

// Depth: a chain of nodes, admitting at depth 10.
{
  const t = tree();
  must(admit(t, '/root', { name: 'db', provides: { 'db.sql': {} } }).ok, 'db');
  let path = '/root';
  for (let d = 1; d <= 9; d++) {
    const services = d === 1 ? ['db.sql'] : [];
    must(
      admit(t, path, {
        name: `n${d}`,
        requires: {
          cpu: 1000 - d,
          memory: 2 ** 40,
          pids: 100_000,
          secrets: ['DB_PASSWORD'],
          services,
          paths: { '/srv': 'rw' },
        },
      }).ok,
      `level ${d}`,
    );
    // Routed explicitly through every hop, as services are never inherited.
    if (d > 1)
      must(
        renegotiate(t, `${path}/n${d}`, {
          cpu: 1000 - d,
          memory: 2 ** 40,
          pids: 100_000,
          secrets: ['DB_PASSWORD'],
          services: ['db.sql'],
          paths: { '/srv': 'rw' },
        }).ok,
        `route ${d}`,
      );
    path = `${path}/n${d}`;
  }
  const s = time(t, path, simple);
  rows.push(['admit at depth 10 (cpu+memory+pids)', s.admit]);
  const f = time(t, path, full);
  rows.push(['admit at depth 10 (full contract)', f.admit]);
}

const pad = Math.max(...rows.map(([n]) => n.length));
console.log(`${'scenario'.padEnd(pad)}  ns/decision  target ns  ratio`);
for (const [name, ns] of rows) {
  console.log(
    `${name.padEnd(pad)}  ${String(ns).padStart(11)}  ${String(target).padStart(9)}  ${(ns / target).toFixed(2)}x`,
  );
}
console.log(
  `node ${process.version}, ${batch * (rounds - 2)} timed decisions per row after 2 warm-up batches`,
);
