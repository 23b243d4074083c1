/**
 * The planner, pure: each action kind with the fields that cause it, the strategy scope, the
 * re-admission (what does not fit, admitted children squeezed, renegotiated grants kept), the
 * order of steps, and a property: over random trees and random edits, the children the plan
 * restarts are exactly those the engine restarts when its own `restartChild` is called for each
 * changed child.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type ChildSpec, flushMicrotasks, node, Supervisor, VirtualClock } from '../../src/core/index.ts';
import { hasChanges, plan } from '../../src/reconcile/index.ts';
import { changed, manifest, restartSet, running, shop } from './fixtures.ts';

const base = manifest(shop);

describe('plan: action kinds', () => {
  it('the same manifest is a plan with no change and no step', () => {
    const p = plan(manifest(shop), running(base));
    assert.equal(p.fits, true);
    assert.equal(hasChanges(p), false);
    assert.deepEqual(p.steps, []);
    assert.equal(p.base, p.target);
    assert.ok(p.actions.every((a) => a.action === 'noop'));
  });

  it('cpu, memory and pids are updated live: no restart, limits steps only', () => {
    const p = plan(
      manifest(shop.replace('cpu: 0.5, memory: 256Mi', 'cpu: 0.7, memory: 192Mi, pids: 64')),
      running(base),
    );
    assert.deepEqual(changed(p), { '/shop/api': 'update' });
    const api = p.actions.find((a) => a.path === '/shop/api');
    assert.deepEqual(api?.because, ['requires.cpu', 'requires.memory', 'requires.pids']);
    assert.deepEqual(api?.detail, ['cpu 0.5 → 0.7', 'memory 256Mi → 192Mi', 'pids none → 64']);
    assert.deepEqual(restartSet(p), []);
    // Lowered first (frees budget), raised after.
    assert.deepEqual(p.steps, [
      { op: 'limits', path: '/shop/api', limits: { memory: 192 * 2 ** 20, pids: 64 } },
      { op: 'limits', path: '/shop/api', limits: { cpu: 0.7 } },
    ]);
  });

  it('a changed command restarts the child and, under rest_for_one, the children after it', () => {
    const p = plan(manifest(shop.replace('[node, api.js]', '[node, api2.js]')), running(base));
    assert.deepEqual(changed(p), { '/shop/api': 'restart', '/shop/worker': 'restart' });
    const api = p.actions.find((a) => a.path === '/shop/api');
    assert.deepEqual(api?.because, ['command']);
    assert.deepEqual(api?.restarts, ['/shop/api', '/shop/worker']);
    const worker = p.actions.find((a) => a.path === '/shop/worker');
    assert.deepEqual(worker?.because, ['/shop/api.command']);
    assert.equal(worker?.via, 'rest_for_one');
    assert.deepEqual(
      p.steps.map((s) => `${s.op} ${s.path}`),
      ['stop /shop/worker', 'stop /shop/api', 'revise /shop/api', 'start /shop/api', 'start /shop/worker'],
    );
  });

  it('one_for_one restarts the changed child alone; one_for_all restarts every sibling', () => {
    const one = plan(
      manifest(shop.replace('rest_for_one', 'one_for_one').replace('MODE: prod', 'MODE: dev')),
      running(manifest(shop.replace('rest_for_one', 'one_for_one'))),
    );
    assert.deepEqual(restartSet(one), ['/shop/api']);
    const all = manifest(shop.replace('rest_for_one', 'one_for_all'));
    const p = plan(
      manifest(shop.replace('rest_for_one', 'one_for_all').replace('[node, worker.js]', '[node, w.js]')),
      running(all),
    );
    assert.deepEqual(restartSet(p), ['/shop/api', '/shop/db', '/shop/worker']);
    assert.equal(p.actions.find((a) => a.path === '/shop/db')?.via, 'one_for_all');
  });

  it('a changed provides restarts the provider and its consumers (their grant changes)', () => {
    const p = plan(
      manifest(shop.replace('rest_for_one', 'one_for_one').replace('127.0.0.1:5432', '127.0.0.1:5433')),
      running(manifest(shop.replace('rest_for_one', 'one_for_one'))),
    );
    assert.deepEqual(changed(p), { '/shop/db': 'restart', '/shop/api': 'restart' });
    const api = p.actions.find((a) => a.path === '/shop/api');
    assert.deepEqual(api?.because, ['grant.services', '/shop/db.provides']);
    assert.ok(p.capabilities.some((c) => c.path === '/shop/api' && c.kind === 'services'));
  });

  it('restart, shutdown, significant and backoff change in place; node flags too', () => {
    const p = plan(
      manifest(
        shop
          .replace('strategy: rest_for_one', 'strategy: rest_for_one\nintensity: 9\nperiod: 1m')
          .replace('[node, worker.js]', '[node, worker.js]\n    restart: transient\n    shutdown: 1s'),
      ),
      running(base),
    );
    assert.deepEqual(changed(p), { '/shop': 'update', '/shop/worker': 'update' });
    assert.deepEqual(restartSet(p), []);
    assert.deepEqual(
      p.steps.map((s) => `${s.op} ${s.path}`),
      ['revise /shop/worker', 'flags /shop'],
    );
  });

  it('a child that is not running is only given its new spec; a held sibling is not dragged', () => {
    const p = plan(
      manifest(shop.replace('[postgres]', '[postgres, -x]')),
      running(base, {}, { '/shop/api': 'held' }),
    );
    assert.deepEqual(restartSet(p), ['/shop/db', '/shop/worker']);
    const stopped = plan(
      manifest(shop.replace('[postgres]', '[postgres, -x]')),
      running(base, {}, { '/shop/db': 'stopped' }),
    );
    assert.deepEqual(changed(stopped), { '/shop/db': 'update' });
    assert.ok(
      stopped.actions.find((a) => a.path === '/shop/db')?.detail.some((d) => d.includes('next starts')),
    );
  });

  it('adds start in contract order (a provider before its consumer), removes stop consumers first', () => {
    const text = `${shop}  - name: cache\n    command: [redis-server]\n    provides: { cache: { tcp: 127.0.0.1:6379 } }\n`;
    const desired = text
      .replace('services: [db.sql]', 'services: [db.sql, cache]')
      .replace('rest_for_one', 'one_for_one');
    const p = plan(manifest(desired), running(manifest(shop.replace('rest_for_one', 'one_for_one'))));
    assert.deepEqual(changed(p), { '/shop/cache': 'add', '/shop/api': 'restart' });
    const ops = p.steps.map((s) => `${s.op} ${s.path}`);
    assert.ok(ops.indexOf('add /shop/cache') < ops.indexOf('start /shop/api'), ops.join(', '));
    const removed = plan(manifest(shop.replace(/ {2}- name: worker[\s\S]*$/, '')), running(base));
    assert.deepEqual(changed(removed), { '/shop/worker': 'remove' });
    assert.deepEqual(
      removed.steps.map((s) => `${s.op} ${s.path}`),
      ['stop /shop/worker', 'remove /shop/worker'],
    );
    assert.deepEqual(removed.actions.find((a) => a.path === '/shop/worker')?.because, [
      '/shop.children.worker',
    ]);
  });

  it('a nested node restarts only its own children; a child of it drags its own siblings', () => {
    const nested = `
name: site
strategy: one_for_all
children:
  - name: web
    command: [nginx]
  - name: jobs
    strategy: rest_for_one
    children:
      - { name: q, command: [redis-server] }
      - { name: w, command: [worker] }
`;
    const p = plan(
      manifest(nested.replace('[redis-server]', '[redis-server, --port, "1"]')),
      running(manifest(nested)),
    );
    assert.deepEqual(restartSet(p), ['/site/jobs/q', '/site/jobs/w']);
  });

  it('a node switching to or from dynamic restarts with its subtree', () => {
    const nested = `
name: site
children:
  - name: web
    command: [nginx]
  - name: jobs
    children:
      - { name: q, command: [redis-server] }
`;
    const p = plan(
      manifest(nested.replace('  - name: jobs\n', '  - name: jobs\n    strategy: dynamic\n')),
      running(manifest(nested)),
    );
    assert.deepEqual(restartSet(p), ['/site/jobs', '/site/jobs/q']);
    assert.deepEqual(
      p.steps.map((s) => `${s.op} ${s.path}`),
      ['stop /site/jobs', 'revise /site/jobs', 'start /site/jobs'],
    );
  });
});

describe('plan: re-admission', () => {
  it('a tree that does not fit gives every reason, and no step', () => {
    const p = plan(
      manifest(shop.replace('cpu: 0.2, memory: 128Mi', 'cpu: 3, memory: 4Gi').replace('[postgres]', '[pg]')),
      running(base),
    );
    assert.equal(p.fits, false);
    assert.deepEqual(
      p.reasons.map((r) => `${r.path} ${r.field}`),
      ['/shop/worker requires.cpu', '/shop/worker requires.memory'],
    );
    assert.deepEqual(p.steps, []);
  });

  it('a renegotiated reservation is kept where the manifest leaves the quantity alone', () => {
    // api renegotiated to 1.2 cores: worker's +0.5 no longer fits in /shop's 2.0.
    const live = running(base, { reserved: { '/shop/api': { cpu: 1.2, memory: 256 * 2 ** 20, pids: 0 } } });
    const p = plan(manifest(shop.replace('cpu: 0.2, memory: 128Mi', 'cpu: 0.7, memory: 128Mi')), live);
    assert.equal(p.fits, false);
    assert.match(p.reasons[0]?.message ?? '', /api holds 1\.2/);
    // The manifest changing api's cpu replaces the renegotiated value.
    const q = plan(
      manifest(
        shop
          .replace('cpu: 0.5, memory: 256Mi', 'cpu: 0.6, memory: 256Mi')
          .replace('cpu: 0.2, memory: 128Mi', 'cpu: 0.7, memory: 128Mi'),
      ),
      live,
    );
    assert.equal(q.fits, true);
    assert.deepEqual(q.steps, [
      { op: 'limits', path: '/shop/api', limits: { cpu: 0.6 } },
      { op: 'limits', path: '/shop/worker', limits: { cpu: 0.7 } },
    ]);
  });

  it('a node shrunk below what its admitted children hold: "would squeeze admitted child"', () => {
    const dev = `
name: lab
requires: { cpu: 2, memory: 1Gi }
children:
  - name: dev
    strategy: dynamic
    admission: {}
    requires: { cpu: 1, memory: 512Mi }
    children: []
`;
    const admitted = [
      { path: '/lab/dev/alice', node: '/lab/dev', contract: { name: 'alice', requires: { cpu: 0.8 } } },
    ];
    const live = running(manifest(dev), { admitted });
    live.children['/lab/dev/alice'] = { kind: 'process', state: 'running', pid: 900, held: false };
    const p = plan(manifest(dev.replace('cpu: 1, memory: 512Mi', 'cpu: 0.5, memory: 512Mi')), live);
    assert.equal(p.fits, false);
    assert.match(p.reasons[0]?.message ?? '', /^would squeeze admitted child \/lab\/dev\/alice: /);
    const ok = plan(manifest(dev.replace('cpu: 1, memory: 512Mi', 'cpu: 0.9, memory: 512Mi')), live);
    assert.equal(ok.fits, true);
    const alice = ok.actions.find((a) => a.path === '/lab/dev/alice');
    assert.equal(alice?.admitted, true);
    assert.equal(alice?.action, 'noop');
    assert.deepEqual(ok.budget.find((b) => b.path === '/lab/dev')?.after, { reserved: 0.9, children: 0.8 });
  });

  it('the root cannot be renamed or switched to dynamic while it runs', () => {
    const p = plan(manifest(shop.replace('name: shop', 'name: shop2')), running(base));
    assert.equal(p.fits, false);
    assert.match(p.reasons[0]?.message ?? '', /another name is another tree/);
  });

  it('an operator hold refuses a plan that changes anything in the held subtree', () => {
    const holds = [{ path: '/shop/worker', by: 'ada', reason: 'load test', at: 0 }];
    const p = plan(manifest(shop.replace('[node, api.js]', '[node, api2.js]')), running(base, { holds }));
    assert.equal(p.fits, false);
    assert.deepEqual(p.steps, []);
    assert.deepEqual(
      p.reasons.map((r) => r.path),
      ['/shop/api', '/shop/worker'],
      'api restarts worker (rest_for_one): both reach into the hold',
    );
    assert.match(
      p.reasons[0]?.message ?? '',
      /held by ada \(load test\); release it with: captree release \/shop\/worker/,
    );
    const elsewhere = plan(
      manifest(shop.replace('[postgres]', '[postgres, -x]').replace('rest_for_one', 'one_for_one')),
      running(manifest(shop.replace('rest_for_one', 'one_for_one')), { holds }),
    );
    assert.equal(elsewhere.fits, true);
  });

  it('a newly reached network is listed as a capability delta', () => {
    const lan = `
name: net
networks: { lan: {} }
children:
  - { name: a, command: [x], requires: { net: none } }
`;
    const p = plan(manifest(lan.replace('net: none', 'net: lan')), running(manifest(lan)));
    assert.deepEqual(
      p.capabilities.filter((c) => c.kind === 'net'),
      [{ path: '/net/a', kind: 'net', gained: ['lan'], lost: [] }],
    );
    assert.deepEqual(changed(p), { '/net/a': 'restart' });
  });
});

// ---- property: the plan's restart set is the engine's --------------------------------------

interface Leaf {
  name: string;
  restart: 'permanent' | 'transient';
}
interface Shape {
  strategy: 'one_for_one' | 'one_for_all' | 'rest_for_one';
  leaves: Leaf[];
  nested: { strategy: Shape['strategy']; leaves: Leaf[] } | null;
}
interface Edit {
  command: boolean;
  cpu: boolean;
  restart: boolean;
}

const strategyArb = fc.constantFrom('one_for_one' as const, 'one_for_all' as const, 'rest_for_one' as const);
const leavesArb = (prefix: string) =>
  fc
    .array(fc.constantFrom('permanent' as const, 'transient' as const), { minLength: 1, maxLength: 5 })
    .map((types) => types.map((restart, i) => ({ name: `${prefix}${i}`, restart })));
const shapeArb: fc.Arbitrary<Shape> = fc.record({
  strategy: strategyArb,
  leaves: leavesArb('p'),
  nested: fc.option(fc.record({ strategy: strategyArb, leaves: leavesArb('q') }), { nil: null }),
});

function manifestOf(shape: Shape, edits: Map<string, Edit>): string {
  const leaf = (l: Leaf) => {
    const e = edits.get(l.name);
    const restart = e?.restart ? (l.restart === 'permanent' ? 'transient' : 'permanent') : l.restart;
    return {
      name: l.name,
      command: ['run', l.name, ...(e?.command ? ['--new'] : [])],
      restart,
      requires: { cpu: e?.cpu ? 0.02 : 0.01 },
    };
  };
  const children: unknown[] = shape.leaves.map(leaf);
  if (shape.nested)
    children.push({
      name: 'sub',
      strategy: shape.nested.strategy,
      requires: { cpu: 1 },
      children: shape.nested.leaves.map(leaf),
    });
  return JSON.stringify({ name: 'prop', strategy: shape.strategy, requires: { cpu: 4 }, children });
}

/** The paths the real engine restarts when `restartChild` is called for each of `causes`. */
async function engineRestarts(shape: Shape, causes: string[]): Promise<string[]> {
  const starts = new Map<string, number>();
  const task = (path: string): ChildSpec['driver'] => ({
    kind: 'task',
    start: (_ctx, events) => {
      starts.set(path, (starts.get(path) ?? 0) + 1);
      queueMicrotask(() => events.ready(true));
      return {
        pid: null,
        stop: () => queueMicrotask(() => events.exited({ kind: 'shutdown' })),
        kill: () => events.exited({ kind: 'killed' }),
      };
    },
  });
  const leafSpec =
    (prefix: string) =>
    (l: Leaf): ChildSpec => ({ id: l.name, restart: l.restart, driver: task(`${prefix}/${l.name}`) });
  const children: ChildSpec[] = shape.leaves.map(leafSpec('/prop'));
  if (shape.nested)
    children.push({
      id: 'sub',
      driver: node({
        name: 'sub',
        strategy: shape.nested.strategy,
        children: shape.nested.leaves.map(leafSpec('/prop/sub')),
      }),
    });
  const sup = new Supervisor(
    { name: 'prop', strategy: shape.strategy, intensity: 100, children },
    { clock: new VirtualClock() },
  );
  await sup.start();
  const before = new Map(starts);
  for (const path of causes) {
    const at = sup.locate(path);
    assert.ok(at, path);
    await at.supervisor.restartChild(at.id);
    await flushMicrotasks();
  }
  await sup.stop();
  return [...starts]
    .filter(([p, n]) => n > (before.get(p) ?? 0))
    .map(([p]) => p)
    .sort();
}

describe('plan: property', () => {
  it('over random trees and edits, the planned restart set is what the engine restarts', async () => {
    await fc.assert(
      fc.asyncProperty(
        shapeArb,
        fc.array(fc.record({ command: fc.boolean(), cpu: fc.boolean(), restart: fc.boolean() }), {
          minLength: 8,
          maxLength: 8,
        }),
        async (shape, editList) => {
          const names = [...shape.leaves, ...(shape.nested?.leaves ?? [])].map((l) => l.name);
          const edits = new Map(names.map((n, i) => [n, editList[i % editList.length] as Edit]));
          const before = manifest(manifestOf(shape, new Map()));
          const after = manifest(manifestOf(shape, edits));
          const p = plan(after, running(before));
          assert.equal(p.fits, true);
          const pathOf = (n: string) => (n.startsWith('q') ? `/prop/sub/${n}` : `/prop/${n}`);
          const causes = names.filter((n) => edits.get(n)?.command).map(pathOf);
          // The engine's counter sees tasks; the plan also names a restarted node itself.
          const leaves = restartSet(p).filter((x) => x !== '/prop/sub');
          assert.deepEqual(leaves, await engineRestarts(shape, causes));
          // Only commands restart: cpu and restart-type edits alone plan no restart.
          if (causes.length === 0) assert.deepEqual(restartSet(p), []);
        },
      ),
      { numRuns: 300 },
    );
  });
});
