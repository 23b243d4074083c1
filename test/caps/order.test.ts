import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type ChildOrder, type Contract, checkTree, orderChildren } from '../../src/caps/index.ts';
import { codes, fullHost, rejected } from './fixtures.ts';

function ordered(children: Contract[]): ChildOrder {
  const o = orderChildren(children, { parentPath: '/shop' });
  assert.ok(o.ok, o.ok ? '' : JSON.stringify(o.reasons));
  return o;
}

const db: Contract = { name: 'db', provides: { 'db.sql': { kind: 'postgres' } } };
const cache: Contract = { name: 'cache', provides: { kv: {} } };
const api: Contract = { name: 'api', requires: { services: ['db.sql', 'kv'] }, provides: { http: {} } };
const web: Contract = { name: 'web', requires: { services: ['http'] } };
const cron: Contract = { name: 'cron' };

describe('order from the contract graph', () => {
  test('providers start before consumers; list order breaks ties', () => {
    const o = ordered([web, api, cron, db, cache]);
    assert.deepEqual(o.start, ['cron', 'db', 'cache', 'api', 'web']);
    assert.deepEqual(o.dependsOn.get('api'), ['db', 'cache']);
  });

  test('list order is kept when there are no edges (stable sort)', () => {
    assert.deepEqual(ordered([cron, db, cache]).start, ['cron', 'db', 'cache']);
  });

  test('consumers stop before providers: stop order is reverse start order', () => {
    const o = ordered([web, api, db, cache]);
    assert.deepEqual(o.stop, [...o.start].reverse());
    assert.ok(o.stop.indexOf('web') < o.stop.indexOf('api'));
    assert.ok(o.stop.indexOf('api') < o.stop.indexOf('db'));
  });

  test('rest_for_one scope is the failed child and everything after it in start order, dependents included', () => {
    const o = ordered([db, cron, cache, api, web]);
    assert.deepEqual(o.start, ['db', 'cron', 'cache', 'api', 'web']);
    assert.deepEqual(o.restForOne('cache'), ['cache', 'api', 'web']);
    assert.deepEqual(o.dependents('db'), ['api', 'web']);
    for (const name of o.start) {
      const scope = new Set(o.restForOne(name));
      for (const d of o.dependents(name)) assert.ok(scope.has(d), `${d} depends on ${name}`);
    }
  });

  test('a kind requirement orders after the first provider of that kind', () => {
    const o = ordered([{ name: 'app', requires: { services: ['postgres'] } }, db]);
    assert.deepEqual(o.start, ['db', 'app']);
  });

  test('a service the parent offers adds no edge', () => {
    const o = orderChildren(
      [
        { name: 'app', requires: { services: [{ service: 'x', from: 'parent' }] } },
        { name: 'p', provides: { x: {} } },
      ],
      {
        parentOffers: [{ name: 'x' }],
      },
    );
    assert.ok(o.ok);
    assert.deepEqual(o.start, ['app', 'p']);
  });

  test('a cycle is rejected, naming it', () => {
    const r = rejected(
      orderChildren(
        [
          { name: 'api', requires: { services: ['jobs'] }, provides: { http: {} } },
          { name: 'worker', requires: { services: ['http'] }, provides: { jobs: {} } },
          cron,
        ],
        { parentPath: '/shop' },
      ),
    );
    assert.deepEqual(codes(r), ['cycle']);
    assert.equal(r.reasons[0]!.message, '/shop: cycle: api -> worker -> api');
    assert.deepEqual(r.reasons[0]!.detail, { cycle: ['api', 'worker', 'api'] });
  });

  test('every independent cycle is named', () => {
    const pair = (a: string, b: string): Contract[] => [
      { name: a, requires: { services: [`${b}.s`] }, provides: { [`${a}.s`]: {} } },
      { name: b, requires: { services: [`${a}.s`] }, provides: { [`${b}.s`]: {} } },
    ];
    const r = rejected(orderChildren([...pair('a', 'b'), ...pair('c', 'd')], { parentPath: '/x' }));
    assert.deepEqual(
      r.reasons.map((x) => x.message),
      ['/x: cycle: a -> b -> a', '/x: cycle: c -> d -> c'],
    );
  });
});

describe('whole-tree check', () => {
  test('a declared tree is admitted top-down in start order', () => {
    const r = checkTree(
      {
        name: 'shop',
        requires: { cpu: 1, memory: 1024 ** 3, secrets: ['DB_PASSWORD'] },
        children: [
          {
            name: 'api',
            requires: { cpu: 0.2, services: ['db.sql'], net: 'none', listen: { http: '127.0.0.1:8080' } },
          },
          {
            name: 'db',
            requires: { cpu: 0.3, net: 'none', secrets: ['DB_PASSWORD'] },
            provides: { 'db.sql': { unix: 'db.sock' } },
          },
          {
            name: 'dev',
            requires: { cpu: 0.4, net: 'none' },
            children: [{ name: 'sh', requires: { cpu: 0.1 } }],
          },
        ],
      },
      fullHost,
    );
    assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.reasons));
    assert.deepEqual(r.startOrder.get('/shop'), ['db', 'api', 'dev']);
    assert.deepEqual([...r.grants.keys()], ['/shop', '/shop/api', '/shop/db', '/shop/dev', '/shop/dev/sh']);
    assert.equal(r.grants.get('/shop/api')!.services[0]!.from, '/shop/db');
  });

  test('check collects every error in the tree, cycles included', () => {
    const r = rejected(
      checkTree(
        {
          name: 'shop',
          requires: { cpu: 1 },
          children: [
            { name: 'a', requires: { cpu: 0.6 } },
            { name: 'b', requires: { cpu: 0.6 } },
            { name: 'api', requires: { services: ['jobs'] }, provides: { http: {} } },
            { name: 'worker', requires: { services: ['http'] }, provides: { jobs: {} } },
            {
              name: 'n',
              requires: { cpu: 0.1 },
              children: [{ name: 'deep', requires: { secrets: ['NOPE'], gpu: 1 } as never }],
            },
          ],
        },
        fullHost,
      ),
    );
    assert.deepEqual(
      r.reasons.map((x) => `${x.code} ${x.path}`),
      [
        'cycle /shop/api',
        'insufficient /shop/b',
        'unknown-capability /shop/n/deep',
        'secret-not-held /shop/n/deep',
      ],
    );
  });
});
