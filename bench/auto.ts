/**
 * `mode: auto` figures (docs/reconcile.md, modes): the pure decision and what the daemon adds
 * to each assessment.
 *
 * 1. `decide` for one recommendation: no windows; a weekly 7-day deny window (the longest scan:
 *    10,080 minutes, to the Sunday it opened); a closed allow window (scan back, then forward to the next opening); a
 *    rate limit with 1,000 actions on record.
 * 2. `policyFor` for every process of a 1,000-child tree (10 nodes × 100, `reconcile:` on the
 *    root and on each node), what the daemon computes once per manifest.
 *
 * Run: node_modules/.bin/node bench/auto.ts [iterations=2000]
 */
import { parseManifest } from '../src/manifest/index.ts';
import {
  type AutoAction,
  type AutoPolicy,
  DEFAULT_POLICY,
  decide,
  indexTree,
  policyFor,
  type Recommendation,
} from '../src/reconcile/index.ts';

const iterations = Number(process.argv[2] ?? 2000);
const MIN = 60_000;
const now = Date.parse('2026-12-02T12:00:00Z');
const rec: Recommendation = {
  type: 'reconcile_required',
  path: '/t/n0/p0',
  drift: 'limit',
  action: 'rewrite limit',
  command: 'captree apply captree.yaml',
  blastRadius: [],
  reason: 'bench',
};
const base: AutoPolicy = { ...DEFAULT_POLICY, mode: 'auto', scope: '/t' };

function timeIt(label: string, f: () => unknown, n = iterations): void {
  for (let i = 0; i < Math.min(n, 50); i++) f();
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    f();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const q = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] as number;
  console.log(
    `${label}: median ${(q(0.5) * 1000).toFixed(1)} µs, p99 ${(q(0.99) * 1000).toFixed(1)} µs (${n} runs)`,
  );
}

const none = { actions: [], holds: [] };
timeIt('decide, no windows', () => decide(rec, base, none, now));
const deny = [{ cron: '0 3 * * 0', duration: 7 * 24 * 60 * MIN }];
timeIt('decide, inside a weekly 7d deny window (scans back up to 10,080 min)', () =>
  decide(rec, { ...base, deny }, none, now - 3 * 60 * MIN - 1),
);
const allow = [{ cron: '0 2 * * *', duration: 60 * MIN }];
timeIt('decide, outside an allow window (next opening found)', () =>
  decide(rec, { ...base, allow }, none, now),
);
const actions: AutoAction[] = Array.from({ length: 1000 }, (_, i) => ({
  scope: i % 2 ? '/t' : '/t/n1',
  path: '/t/n0/p0',
  at: now - i * 1000,
}));
timeIt('decide, rate limit over 1,000 recorded actions', () =>
  decide(rec, base, { actions, holds: [] }, now),
);

const lines = ['name: t', 'reconcile: { mode: auto }', 'children:'];
for (let n = 0; n < 10; n++) {
  lines.push(`  - name: n${n}`, '    reconcile: { maxActions: 5 }', '    children:');
  for (let p = 0; p < 100; p++) lines.push(`      - name: p${p}`, '        command: [sleep, infinity]');
}
const parsed = parseManifest(lines.join('\n'), 'bench.yaml');
if (!parsed.ok) throw new Error('bench manifest does not parse');
const tree = parsed.tree;
const paths = [...indexTree(tree).keys()];
timeIt(
  `policyFor, every path of a ${paths.length}-path tree`,
  () => {
    for (const p of paths) policyFor(tree, p);
  },
  Math.max(20, Math.floor(iterations / 20)),
);
