import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  admit,
  type CapTree,
  type NodeSnapshot,
  paths,
  type Requires,
  release,
  renegotiate,
  snapshot,
} from '../../src/caps/index.ts';
import { Mi, shop } from './fixtures.ts';

const quantity = (max: number, scale: number) =>
  fc.option(
    fc.integer({ min: 1, max }).map((n) => n * scale),
    { nil: undefined },
  );

const requiresArb: fc.Arbitrary<Requires> = fc
  .record({
    cpu: quantity(600, 0.001),
    memory: quantity(64, 16 * Mi),
    pids: quantity(200, 1),
    net: fc.option(fc.constantFrom('none', 'host', 'lan', 'any'), { nil: undefined }),
    secrets: fc.option(fc.subarray(['PII', 'DB_PASSWORD']), { nil: undefined }),
    services: fc.option(fc.subarray(['s0', 's1', 's2', 'kindA']), { nil: undefined }),
    listen: fc.option(
      fc.integer({ min: 8000, max: 8004 }).map((p) => ({ http: `127.0.0.1:${p}` })),
      { nil: undefined },
    ),
  })
  .map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) as Requires);

type Op =
  | { kind: 'admit'; at: number; name: string; requires: Requires; provides: string | undefined }
  | { kind: 'release'; at: number }
  | { kind: 'renegotiate'; at: number; requires: Requires };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('admit' as const),
      at: fc.nat(),
      name: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'),
      requires: requiresArb,
      provides: fc.option(fc.constantFrom('s0', 's1', 's2'), { nil: undefined }),
    }),
    weight: 5,
  },
  { arbitrary: fc.record({ kind: fc.constant('release' as const), at: fc.nat() }), weight: 2 },
  {
    arbitrary: fc.record({ kind: fc.constant('renegotiate' as const), at: fc.nat(), requires: requiresArb }),
    weight: 2,
  },
);

function apply(t: CapTree, op: Op): boolean {
  const all = paths(t);
  const path = all[op.at % all.length]!;
  if (op.kind === 'admit') {
    const provides = op.provides === undefined ? undefined : { [op.provides]: { kind: 'kindA' } };
    return admit(t, path, { name: op.name, requires: op.requires, ...(provides ? { provides } : {}) }).ok;
  }
  if (op.kind === 'release') return release(t, path).ok;
  return renegotiate(t, path, op.requires).ok;
}

const qs = ['cpu', 'memory', 'pids'] as const;

function checkInvariants(n: NodeSnapshot): void {
  for (const q of qs) {
    const sum = n.children.reduce((s, c) => s + c.reserved[q], 0);
    // Conservation: parent remaining + sum of children = parent grant, with the cache right.
    assert.equal(n.childrenSum[q], sum, `${n.path} cached ${q} sum`);
    assert.ok(sum <= n.reserved[q], `${n.path} children hold more ${q} than it reserved`);
    for (const c of n.children) {
      assert.ok(c.grant[q].limit <= n.grant[q].limit, `${c.path} ${q} limit exceeds ${n.path}`);
      if (c.reserved[q] > 0)
        assert.ok(n.reserved[q] > 0, `${c.path} carved ${q} from non-reserving ${n.path}`);
    }
  }
  for (const c of n.children) {
    for (const x of c.grant.net)
      assert.ok(n.grant.net.includes(x), `${c.path} net ${x} not held by ${n.path}`);
    for (const s of c.grant.secrets) assert.ok(n.grant.secrets.includes(s), `${c.path} secret ${s}`);
    for (const addr of Object.values(c.grant.listen)) {
      assert.ok(
        Object.values(n.grant.listen).includes(addr) || n.grant.net.includes('host'),
        `${c.path} listen ${addr} not held by ${n.path}`,
      );
    }
    checkInvariants(c);
  }
}

function holders(t: CapTree): string[] {
  const out: string[] = [];
  const walk = (n: NodeSnapshot) => {
    for (const a of Object.values(n.grant.listen)) out.push(a);
    n.children.forEach(walk);
  };
  walk(snapshot(t).root);
  return out;
}

test('for random trees and operations, no node holds more than its parent granted and quantities are conserved', () => {
  fc.assert(
    fc.property(fc.integer({ min: 100, max: 4000 }), fc.array(opArb, { maxLength: 60 }), (rootMilli, ops) => {
      const t = shop({
        cpu: rootMilli / 1000,
        memory: 1024 * Mi,
        pids: 1000,
        secrets: ['PII', 'DB_PASSWORD'],
      });
      for (const op of ops) {
        apply(t, op);
        checkInvariants(snapshot(t).root);
      }
    }),
    { numRuns: 300 },
  );
});

test('a rejected operation changes nothing', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
      const t = shop({ cpu: 1, memory: 512 * Mi, pids: 300, secrets: ['PII'] });
      for (const op of ops) {
        const before = snapshot(t);
        if (!apply(t, op)) assert.deepEqual(snapshot(t), before);
      }
    }),
    { numRuns: 300 },
  );
});

test('a listening address has exactly one holder per chain', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
      const t = shop({ cpu: 1, memory: 512 * Mi, pids: 300 });
      for (const op of ops) {
        apply(t, op);
        // An address may appear on a holder and on the descendants it was passed down to, but
        // never on two nodes that are not on one line from the root.
        const s = snapshot(t);
        const owners = new Map<string, string[]>();
        const walk = (n: NodeSnapshot) => {
          for (const a of Object.values(n.grant.listen)) owners.set(a, [...(owners.get(a) ?? []), n.path]);
          n.children.forEach(walk);
        };
        walk(s.root);
        for (const [addr, ps] of owners) {
          const sorted = [...ps].sort((a, b) => a.length - b.length);
          for (let i = 1; i < sorted.length; i++) {
            assert.ok(sorted[i]!.startsWith(`${sorted[i - 1]}/`), `${addr} held by ${sorted.join(', ')}`);
          }
        }
        assert.ok(holders(t).length >= owners.size);
      }
    }),
    { numRuns: 200 },
  );
});
