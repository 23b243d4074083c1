/**
 * Drift and recommendations, pure: each drift kind gives its recommendation with the exact
 * command and blast radius, statuses roll up the tree, and the same snapshot gives the same
 * report byte for byte (property over random observations).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { assess, canonicalJson, plan, type Snapshot } from '../../src/reconcile/index.ts';
import { manifest, running, shop } from './fixtures.ts';

const tree = manifest(shop);

function snapshotOf(states: Record<string, string> = {}, observed: Snapshot['observed'] = {}): Snapshot {
  return {
    version: 1,
    generation: 3,
    base: 'x',
    actual: running(tree, {}, states),
    observed,
    applying: null,
  };
}

const none = { restarts: 0, lastExit: null, oomKills: 0, livenessFailures: 0 };

describe('drift', () => {
  it('a clean tree is nominal, with no drift and no recommendation', () => {
    const r = assess(snapshotOf());
    assert.equal(r.summary, 'nominal');
    assert.deepEqual(r.drift, []);
    assert.deepEqual(r.recommendations, []);
    assert.deepEqual(r.nodes, [{ path: '/shop', status: 'nominal', drift: 0 }]);
  });

  it('missing: a child that should run is stopped → restart it (captree start)', () => {
    const r = assess(
      snapshotOf({ '/shop/api': 'stopped' }, { '/shop/api': { ...none, lastExit: 'exit code 1' } }),
    );
    assert.equal(r.summary, 'degraded');
    assert.deepEqual(r.drift, [
      { path: '/shop/api', kind: 'missing', message: 'should run, is stopped (exit code 1)' },
    ]);
    assert.deepEqual(
      r.recommendations.map((x) => [x.type, x.action, x.command, x.blastRadius]),
      [['reconcile_required', 'restart', 'captree start /shop/api', ['/shop/api']]],
    );
  });

  it('held by an operator is no drift', () => {
    assert.deepEqual(assess(snapshotOf({ '/shop/api': 'held' })).drift, []);
  });

  it('failed: restart once; after repeated failures, blocked: diagnostics', () => {
    const once = assess(
      snapshotOf(
        { '/shop/db': 'failed' },
        { '/shop/db': { ...none, restarts: 1, lastExit: 'permanent failure' } },
      ),
    );
    assert.equal(once.summary, 'unstable');
    assert.equal(once.recommendations[0]?.type, 'reconcile_required');
    const often = assess(
      snapshotOf({ '/shop/db': 'failed' }, { '/shop/db': { ...none, restarts: 4, lastExit: 'x' } }),
    );
    assert.deepEqual(
      often.recommendations.map((x) => [x.type, x.action, x.command]),
      [['reconcile_blocked', 'diagnostics', 'captree logs /shop/db']],
    );
  });

  it('unhealthy: restart with its strategy scope as blast radius', () => {
    const r = assess(snapshotOf({}, { '/shop/api': { ...none, livenessFailures: 2 } }));
    assert.deepEqual(
      r.recommendations.map((x) => [x.command, x.blastRadius]),
      [['captree restart /shop/api', ['/shop/api', '/shop/worker']]],
    );
  });

  it('limit drift: rewrite the limit (apply), nothing restarts', () => {
    const r = assess(
      snapshotOf(
        {},
        {
          '/shop/db': {
            ...none,
            limitDrift: [{ quantity: 'memory', granted: 512 * 2 ** 20, enforced: 2 ** 30 }],
          },
        },
      ),
    );
    assert.deepEqual(
      r.recommendations.map((x) => [x.type, x.action, x.command, x.blastRadius]),
      [['reconcile_required', 'rewrite limit', 'captree apply captree.yaml', []]],
    );
  });

  it('incidents: repeated OOM kills → raise memory; restarts inside the window → diagnostics', () => {
    const r = assess(
      snapshotOf(
        {},
        {
          '/shop/db': { ...none, oomKills: 2 },
          '/shop': { ...none, window: { restarts: 1, intensity: 3, period: 5000 } },
        },
      ),
    );
    assert.deepEqual(
      r.recommendations.map((x) => [x.path, x.type, x.action]),
      [
        ['/shop', 'reconcile_recommended', 'diagnostics'],
        ['/shop/db', 'reconcile_recommended', 'raise memory'],
      ],
    );
    assert.equal(r.recommendations[0]?.command, 'captree events --path /shop --since 5s');
  });

  it('a node that gave up is blocked, rolled up to the root as unstable', () => {
    const nested = manifest(`
name: site
children:
  - name: jobs
    children: [{ name: q, command: [q] }]
  - name: web
    command: [nginx]
`);
    const s: Snapshot = {
      version: 1,
      generation: 1,
      base: 'x',
      actual: running(nested),
      observed: { '/site/jobs': { ...none, escalated: true } },
      applying: null,
    };
    const r = assess(s);
    assert.deepEqual(r.nodes, [
      { path: '/site', status: 'unstable', drift: 1 },
      { path: '/site/jobs', status: 'unstable', drift: 1 },
    ]);
    assert.deepEqual(assess(s, { under: '/site/jobs' }).recommendations.length, 1);
  });

  it('pending: the manifest differs → apply, with the plan restarts as blast radius; reconciling while applying', () => {
    const desired = manifest(shop.replace('[node, api.js]', '[node, api2.js]'));
    const snap = snapshotOf();
    const r = assess(snap, { plan: plan(desired, snap.actual) });
    assert.deepEqual(
      r.drift.map((d) => [d.path, d.kind]),
      [
        ['/shop/api', 'pending'],
        ['/shop/worker', 'pending'],
      ],
    );
    assert.deepEqual(r.recommendations[0]?.blastRadius, ['/shop/api', '/shop/worker']);
    assert.equal(r.recommendations[0]?.command, 'captree apply captree.yaml');
    const applying = assess({ ...snap, applying: { generation: 4, paths: ['/shop/api'] } });
    assert.equal(applying.summary, 'reconciling');
  });

  it('inside a held subtree a recommendation is blocked: wait for release', () => {
    const snap = snapshotOf(
      { '/shop/api': 'stopped' },
      { '/shop/api': { ...none, lastExit: 'exit code 1' } },
    );
    snap.actual.holds = [{ path: '/shop/api', by: 'ada', reason: 'debugging', at: 0 }];
    const r = assess(snap);
    assert.deepEqual(
      r.recommendations.map((x) => [x.type, x.action, x.command]),
      [['reconcile_blocked', 'wait for release', 'captree release /shop/api']],
    );
    assert.equal(r.summary, 'unstable');
  });

  it('a manifest that does not fit is blocked', () => {
    const snap = snapshotOf();
    const r = assess(snap, { plan: plan(manifest(shop.replace('cpu: 0.2,', 'cpu: 9,')), snap.actual) });
    assert.equal(r.summary, 'unstable');
    assert.equal(r.recommendations[0]?.command, 'captree plan captree.yaml');
  });

  it('the same snapshot gives the same report, byte for byte, whatever the key order', () => {
    const paths = ['/shop', '/shop/db', '/shop/api', '/shop/worker'];
    const observedArb = fc.dictionary(
      fc.constantFrom(...paths),
      fc.record({
        restarts: fc.nat(5),
        lastExit: fc.constantFrom(null, 'exit code 1', 'exited normally'),
        oomKills: fc.nat(3),
        livenessFailures: fc.nat(2),
      }),
    );
    const statesArb = fc.dictionary(
      fc.constantFrom(...paths.slice(1)),
      fc.constantFrom('running', 'stopped', 'failed', 'held', 'starting'),
    );
    fc.assert(
      fc.property(statesArb, observedArb, (states, observed) => {
        const snap = snapshotOf(states, observed);
        const a = JSON.stringify(assess(snap));
        const shuffled = JSON.parse(canonicalJson(snap)) as Snapshot;
        assert.equal(JSON.stringify(assess(shuffled)), a);
        assert.equal(JSON.stringify(assess(snap)), a);
      }),
      { numRuns: 200 },
    );
  });
});
