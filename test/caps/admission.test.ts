import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  admit,
  createTree,
  grantOf,
  type HostCapabilities,
  release,
  remainingOf,
  renegotiate,
  snapshot,
} from '../../src/caps/index.ts';
import { codes, fullHost, Gi, Mi, rejected, shop } from './fixtures.ts';

describe('quantities', () => {
  test('a grant never exceeds what the parent holds now', () => {
    const t = shop();
    assert.ok(admit(t, '/shop', { name: 'db', requires: { cpu: 0.6 } }).ok);
    assert.ok(admit(t, '/shop', { name: 'worker', requires: { cpu: 0.3 } }).ok);
    const r = rejected(admit(t, '/shop', { name: 'api', requires: { cpu: 0.3 } }));
    assert.deepEqual(codes(r), ['insufficient']);
    assert.ok(admit(t, '/shop', { name: 'api', requires: { cpu: 0.1 } }).ok);
    assert.deepEqual(remainingOf(t, '/shop'), { cpu: 0, memory: Gi, pids: 512 });
  });

  test('the rejection message breaks down who holds what', () => {
    const t = shop();
    admit(t, '/shop', { name: 'db', requires: { cpu: 0.6 } });
    admit(t, '/shop', { name: 'worker', requires: { cpu: 0.3 } });
    const r = rejected(admit(t, '/shop', { name: 'api', requires: { cpu: 0.3 } }));
    const reason = r.reasons[0]!;
    assert.equal(reason.path, '/shop/api');
    assert.equal(
      reason.message,
      '/shop/api requires cpu 0.3, /shop has 0.1 left of 1.0: db holds 0.6, worker 0.3',
    );
    assert.deepEqual(reason.detail, {
      quantity: 'cpu',
      required: 0.3,
      available: 0.1,
      total: 1,
      holder: '/shop',
      holders: [
        { path: '/shop/db', amount: 0.6 },
        { path: '/shop/worker', amount: 0.3 },
      ],
      others: { count: 0, amount: 0 },
    });
  });

  test('the breakdown lists the largest holders and summarises the rest', () => {
    const t = shop();
    for (let i = 0; i < 7; i++) admit(t, '/shop', { name: `w${i}`, requires: { memory: (i + 1) * 32 * Mi } });
    const r = rejected(admit(t, '/shop', { name: 'big', requires: { memory: 512 * Mi } }));
    assert.equal(
      r.reasons[0]!.message,
      '/shop/big requires memory 512Mi, /shop has 128Mi left of 1Gi: w6 holds 224Mi, w5 192Mi, w4 160Mi, w3 128Mi, w2 96Mi, and 2 others 96Mi',
    );
  });

  test('a rejection names every unmet requirement, not just the first', () => {
    const t = shop();
    const r = rejected(
      admit(t, '/shop', {
        name: 'api',
        requires: {
          cpu: 2,
          memory: 2 * Gi,
          pids: 1000,
          secrets: ['NOPE'],
          services: ['db.sql'],
          net: 'mars',
        },
      }),
    );
    assert.deepEqual(codes(r).sort(), [
      'insufficient',
      'insufficient',
      'insufficient',
      'network-not-held',
      'secret-not-held',
      'unroutable-service',
    ]);
    for (const reason of r.reasons) assert.equal(reason.path, '/shop/api');
  });

  test('sums are exact: ten grants of 0.1 core fill 1.0 core', () => {
    const t = shop();
    for (let i = 0; i < 10; i++) assert.ok(admit(t, '/shop', { name: `c${i}`, requires: { cpu: 0.1 } }).ok);
    assert.equal(remainingOf(t, '/shop')!.cpu, 0);
    assert.equal(
      rejected(admit(t, '/shop', { name: 'x', requires: { cpu: 0.001 } })).reasons[0]!.code,
      'insufficient',
    );
  });

  test('cpu finer than a millicore is invalid rather than rounded', () => {
    const r = rejected(admit(shop(), '/shop', { name: 'x', requires: { cpu: 0.0005 } }));
    assert.deepEqual(codes(r), ['invalid-value']);
  });

  test('a child that omits a quantity shares the parent remainder, capped by the parent limit', () => {
    const t = shop();
    const g = admit(t, '/shop', { name: 'web', requires: {} });
    assert.ok(g.ok);
    assert.deepEqual(g.grant.memory, { reserved: 0, limit: Gi });
    assert.deepEqual(remainingOf(t, '/shop'), { cpu: 1, memory: Gi, pids: 512 });
  });

  test('a node that reserves none of a quantity has none to carve for its children', () => {
    const t = shop();
    admit(t, '/shop', { name: 'dev', requires: { cpu: 0.5 } });
    const r = rejected(admit(t, '/shop/dev', { name: 'x', requires: { memory: 128 * Mi } }));
    assert.match(r.reasons[0]!.message, /\/shop\/dev reserves no memory/);
    const g = admit(t, '/shop/dev', { name: 'y', requires: {} });
    assert.ok(g.ok);
    assert.deepEqual(g.grant.memory, { reserved: 0, limit: Gi });
    assert.deepEqual(g.grant.cpu, { reserved: 0, limit: 0.5 });
  });

  test('the root holds what the host allows unless its requires narrows it', () => {
    const r = createTree({ name: 'all' }, fullHost);
    assert.ok(r.ok);
    assert.deepEqual(r.grant.cpu, { reserved: 8, limit: 8 });
    assert.deepEqual(r.grant.secrets, ['PII', 'DB_PASSWORD', 'API_KEY']);
    assert.ok(r.grant.net.includes('host'));
    const over = rejected(createTree({ name: 'big', requires: { cpu: 9 } }, fullHost));
    assert.equal(over.reasons[0]!.message, '/big requires cpu 9.0, the host has 8.0');
  });

  test('release returns the reservation to the parent', () => {
    const t = shop();
    admit(t, '/shop', { name: 'db', requires: { cpu: 0.6, memory: 256 * Mi } });
    const r = release(t, '/shop/db');
    assert.ok(r.ok);
    assert.deepEqual(r.returned, { cpu: 0.6, memory: 256 * Mi, pids: 0 });
    assert.deepEqual(remainingOf(t, '/shop'), { cpu: 1, memory: Gi, pids: 512 });
    assert.equal(grantOf(t, '/shop/db'), undefined);
  });

  test('release removes the whole subtree', () => {
    const t = shop();
    admit(t, '/shop', { name: 'dev', requires: { cpu: 0.5 } });
    admit(t, '/shop/dev', { name: 'a', requires: { cpu: 0.2 } });
    assert.ok(release(t, '/shop/dev').ok);
    assert.equal(grantOf(t, '/shop/dev/a'), undefined);
    assert.ok(admit(t, '/shop', { name: 'dev', requires: { cpu: 1 } }).ok);
  });

  test('the root cannot be released and unknown paths are named', () => {
    const t = shop();
    assert.deepEqual(codes(rejected(release(t, '/shop'))), ['root']);
    assert.deepEqual(codes(rejected(release(t, '/shop/nope'))), ['no-such-node']);
    assert.deepEqual(codes(rejected(admit(t, '/shop/nope', { name: 'x' }))), ['no-such-node']);
  });

  test('renegotiate grows from the parent slack, shrinks, and rejects beyond the slack', () => {
    const t = shop();
    admit(t, '/shop', { name: 'db', requires: { cpu: 0.6 } });
    admit(t, '/shop', { name: 'api', requires: { cpu: 0.2 } });
    assert.ok(renegotiate(t, '/shop/api', { cpu: 0.4 }).ok);
    const r = rejected(renegotiate(t, '/shop/api', { cpu: 0.5 }));
    assert.equal(
      r.reasons[0]!.message,
      '/shop/api requires cpu 0.5 (holds 0.4 now), /shop has 0.0 left of 1.0: db holds 0.6, api 0.4',
    );
    assert.ok(renegotiate(t, '/shop/api', { cpu: 0.1 }).ok);
    assert.equal(remainingOf(t, '/shop')!.cpu, 0.3);
  });

  test('renegotiate never shrinks a node below what its children hold', () => {
    const t = shop();
    admit(t, '/shop', { name: 'dev', requires: { cpu: 0.5 } });
    admit(t, '/shop/dev', { name: 'a', requires: { cpu: 0.3 } });
    const r = rejected(renegotiate(t, '/shop/dev', { cpu: 0.2 }));
    assert.equal(r.reasons[0]!.code, 'children-hold-more');
    assert.equal(r.reasons[0]!.message, '/shop/dev requires cpu 0.2, its children hold 0.3: a holds 0.3');
    assert.equal(rejected(renegotiate(t, '/shop/dev', {})).reasons[0]!.code, 'children-hold-more');
  });

  test('duplicate child names are rejected', () => {
    const t = shop();
    admit(t, '/shop', { name: 'db' });
    assert.deepEqual(codes(rejected(admit(t, '/shop', { name: 'db' }))), ['duplicate-name']);
    assert.deepEqual(codes(rejected(admit(t, '/shop', { name: '../x' }))), ['invalid-value']);
  });
});

describe('networks', () => {
  test('a child inherits the parent network unless its requires narrows it', () => {
    const t = shop({ cpu: 1, net: ['lan', 'host'] });
    const g = admit(t, '/shop', { name: 'a' });
    assert.ok(g.ok);
    assert.deepEqual(g.grant.net, ['lan', 'host']);
    const n = admit(t, '/shop', { name: 'b', requires: { net: 'none' } });
    assert.ok(n.ok);
    assert.deepEqual(n.grant.net, []);
  });

  test('net none is always grantable', () => {
    const t = shop({ cpu: 1, net: 'none' });
    assert.ok(admit(t, '/shop', { name: 'a', requires: { net: 'none' } }).ok);
  });

  test('net any is met by the least-authority network the parent can route', () => {
    const t = shop({ cpu: 1, net: ['host', 'lan'] });
    const g = admit(t, '/shop', { name: 'a', requires: { net: 'any' } });
    assert.ok(g.ok);
    assert.deepEqual(g.grant.net, ['lan']);
    const h = shop({ cpu: 1, net: 'host' });
    const gh = admit(h, '/shop', { name: 'a', requires: { net: 'any' } });
    assert.ok(gh.ok);
    assert.deepEqual(gh.grant.net, ['host']);
    const none = shop({ cpu: 1, net: 'none' });
    const r = rejected(admit(none, '/shop', { name: 'a', requires: { net: 'any' } }));
    assert.equal(r.reasons[0]!.message, '/shop/a requires net any, /shop holds no network (net: none)');
  });

  test('a named network must be held by the parent', () => {
    const t = shop({ cpu: 1, net: 'lan' });
    assert.ok(admit(t, '/shop', { name: 'a', requires: { net: 'lan' } }).ok);
    const r = rejected(admit(t, '/shop', { name: 'b', requires: { net: 'host' } }));
    assert.deepEqual(codes(r), ['network-not-held']);
    assert.equal(r.reasons[0]!.message, '/shop/b requires net host, /shop holds lan');
  });
});

describe('listening sockets', () => {
  test('a parent with the host network hands an address to exactly one holder', () => {
    const t = shop();
    assert.ok(admit(t, '/shop', { name: 'a', requires: { listen: { http: '127.0.0.1:8080' } } }).ok);
    const r = rejected(admit(t, '/shop', { name: 'b', requires: { listen: { web: '127.0.0.1:8080' } } }));
    assert.deepEqual(codes(r), ['listen-taken']);
    assert.match(r.reasons[0]!.message, /\/shop\/a holds 127\.0\.0\.1:8080/);
    const wild = rejected(admit(t, '/shop', { name: 'c', requires: { listen: { web: ':8080' } } }));
    assert.deepEqual(codes(wild), ['listen-taken']);
    assert.ok(admit(t, '/shop', { name: 'd', requires: { listen: { web: '127.0.0.2:8080' } } }).ok);
  });

  test('a held address passes down to one child only; without it or host the request fails', () => {
    const t = shop();
    admit(t, '/shop', { name: 'edge', requires: { net: 'none', listen: { http: '127.0.0.1:8080' } } });
    assert.ok(admit(t, '/shop/edge', { name: 'nginx', requires: { listen: { http: '127.0.0.1:8080' } } }).ok);
    assert.deepEqual(
      codes(
        rejected(admit(t, '/shop/edge', { name: 'other', requires: { listen: { x: '127.0.0.1:8080' } } })),
      ),
      ['listen-taken'],
    );
    assert.deepEqual(
      codes(
        rejected(admit(t, '/shop/edge', { name: 'third', requires: { listen: { x: '127.0.0.1:9090' } } })),
      ),
      ['listen-not-held'],
    );
    assert.ok(release(t, '/shop/edge/nginx').ok);
    assert.ok(admit(t, '/shop/edge', { name: 'other', requires: { listen: { x: '127.0.0.1:8080' } } }).ok);
  });

  test('a released holder frees its address', () => {
    const t = shop();
    admit(t, '/shop', { name: 'a', requires: { listen: { http: ':8080' } } });
    release(t, '/shop/a');
    assert.ok(admit(t, '/shop', { name: 'b', requires: { listen: { http: '127.0.0.1:8080' } } }).ok);
  });
});

describe('services', () => {
  const db = { name: 'db', provides: { 'db.sql': { kind: 'postgres', unix: 'db.sock' } } };

  test('a service is routed from a sibling by name', () => {
    const t = shop();
    assert.ok(admit(t, '/shop', db).ok);
    const g = admit(t, '/shop', { name: 'api', requires: { services: ['db.sql'] } });
    assert.ok(g.ok);
    assert.deepEqual(g.grant.services, [
      { name: 'db.sql', kind: 'postgres', from: '/shop/db', endpoint: { kind: 'postgres', unix: 'db.sock' } },
    ]);
  });

  test('a service kind is met by any provider of that kind, the earliest sibling first', () => {
    const t = shop();
    admit(t, '/shop', db);
    admit(t, '/shop', { name: 'db2', provides: { 'other.sql': { kind: 'postgres' } } });
    const g = admit(t, '/shop', { name: 'api', requires: { services: ['postgres'] } });
    assert.ok(g.ok);
    assert.equal(g.grant.services[0]!.from, '/shop/db');
    const k = admit(t, '/shop', {
      name: 'api2',
      requires: { services: [{ kind: 'postgres', from: 'db2' }] },
    });
    assert.ok(k.ok);
    assert.equal(k.grant.services[0]!.from, '/shop/db2');
    assert.deepEqual(
      codes(rejected(admit(t, '/shop', { name: 'x', requires: { services: [{ service: 'postgres' }] } }))),
      ['unroutable-service'],
    );
  });

  test('an unroutable service is rejected naming the path and where it is provided', () => {
    const t = shop();
    admit(t, '/shop', db);
    admit(t, '/shop', { name: 'dev', requires: { cpu: 0.2 } });
    const r = rejected(admit(t, '/shop/dev', { name: 'api', requires: { services: ['db.sql'] } }));
    assert.equal(r.reasons[0]!.code, 'unroutable-service');
    assert.equal(r.reasons[0]!.path, '/shop/dev/api');
    assert.match(
      r.reasons[0]!.message,
      /^\/shop\/dev\/api requires service db\.sql: no sibling provides it and \/shop\/dev neither provides it nor holds it; provided by \/shop\/db/,
    );
  });

  test('services are never inherited, only routed through each hop', () => {
    const t = shop();
    admit(t, '/shop', db);
    admit(t, '/shop', { name: 'dev', requires: { cpu: 0.2, services: ['db.sql'] } });
    const g = admit(t, '/shop/dev', { name: 'api', requires: { services: ['db.sql'] } });
    assert.ok(g.ok);
    assert.equal(g.grant.services[0]!.from, '/shop/db');
    const none = admit(t, '/shop/dev', { name: 'plain' });
    assert.ok(none.ok);
    assert.deepEqual(none.grant.services, []);
  });

  test('a provider still used by a sibling cannot be released', () => {
    const t = shop();
    admit(t, '/shop', db);
    admit(t, '/shop', { name: 'api', requires: { services: ['db.sql'] } });
    const r = rejected(release(t, '/shop/db'));
    assert.equal(
      r.reasons[0]!.message,
      '/shop/db provides services still used by /shop/api; release those first',
    );
    assert.ok(release(t, '/shop/api').ok);
    assert.ok(release(t, '/shop/db').ok);
  });

  test('two siblings cannot provide the same service name', () => {
    const t = shop();
    admit(t, '/shop', db);
    const r = rejected(admit(t, '/shop', { name: 'db2', provides: { 'db.sql': {} } }));
    assert.deepEqual(codes(r), ['duplicate-provider']);
  });

  test('renegotiating into a dependency cycle is rejected naming the cycle', () => {
    const t = shop();
    admit(t, '/shop', { name: 'worker', provides: { jobs: {} } });
    admit(t, '/shop', { name: 'api', requires: { services: ['jobs'] }, provides: { http: {} } });
    const r = rejected(renegotiate(t, '/shop/worker', { services: ['http'] }));
    assert.equal(r.reasons[0]!.code, 'cycle');
    assert.equal(r.reasons[0]!.message, '/shop: cycle: worker -> api -> worker');
  });
});

describe('paths, secrets, env', () => {
  test('a child gets a path at or below a granted one, rw only below rw', () => {
    const t = shop({ cpu: 1, paths: { '/srv': 'rw', '/etc': 'ro' } });
    assert.ok(
      admit(t, '/shop', { name: 'a', requires: { paths: { '/srv/data': 'rw', '/etc/ssl': 'ro' } } }).ok,
    );
    const r = rejected(
      admit(t, '/shop', { name: 'b', requires: { paths: { '/etc/ssl': 'rw', '/home': 'ro' } } }),
    );
    assert.deepEqual(codes(r), ['path-not-held', 'path-not-held']);
    assert.equal(r.reasons[0]!.message, '/shop/b requires rw /etc/ssl, /shop holds it read-only (/etc ro)');
    assert.deepEqual(
      codes(rejected(admit(t, '/shop', { name: 'c', requires: { paths: { 'srv/../etc': 'ro' } } }))),
      ['invalid-value'],
    );
  });

  test('a child inherits the parent filesystem view unless it narrows it', () => {
    const t = shop({ cpu: 1, paths: { '/srv': 'rw' } });
    const g = admit(t, '/shop', { name: 'a' });
    assert.ok(g.ok);
    assert.deepEqual(g.grant.paths, { '/srv': 'rw' });
  });

  test('secrets are not inherited: a child holds only the secrets it required', () => {
    const t = shop({ cpu: 1, secrets: ['DB_PASSWORD'] });
    const plain = admit(t, '/shop', { name: 'a' });
    assert.ok(plain.ok);
    assert.deepEqual(plain.grant.secrets, []);
    const db = admit(t, '/shop', { name: 'db', requires: { secrets: ['DB_PASSWORD'] } });
    assert.ok(db.ok);
    assert.deepEqual(db.grant.secrets, ['DB_PASSWORD']);
    const r = rejected(admit(t, '/shop', { name: 'b', requires: { secrets: ['API_KEY'] } }));
    assert.equal(r.reasons[0]!.message, '/shop/b requires secret API_KEY, /shop does not hold it');
    admit(t, '/shop', { name: 'dev', requires: { cpu: 0.1 } });
    assert.deepEqual(
      codes(rejected(admit(t, '/shop/dev', { name: 'x', requires: { secrets: ['DB_PASSWORD'] } }))),
      ['secret-not-held'],
    );
  });

  test('environment variables are routed by name like secrets', () => {
    const t = shop({ cpu: 1, env: ['HOME'] });
    assert.ok(admit(t, '/shop', { name: 'a', requires: { env: ['HOME'] } }).ok);
    assert.deepEqual(codes(rejected(admit(t, '/shop', { name: 'b', requires: { env: ['LANG'] } }))), [
      'env-not-held',
    ]);
  });

  test('renegotiate cannot take away a quality a child holds', () => {
    const t = shop({ cpu: 1, secrets: ['PII'], paths: { '/srv': 'rw' } });
    admit(t, '/shop', { name: 'dev', requires: { cpu: 0.5, secrets: ['PII'] } });
    admit(t, '/shop/dev', { name: 'a', requires: { secrets: ['PII'], paths: { '/srv/x': 'rw' } } });
    const r = rejected(renegotiate(t, '/shop/dev', { cpu: 0.5, paths: { '/srv': 'ro' } }));
    assert.deepEqual(codes(r), ['children-hold-quality', 'children-hold-quality']);
    assert.equal(r.reasons[0]!.message, '/shop/dev would no longer hold rw /srv/x, which /shop/dev/a holds');
  });
});

describe('validation', () => {
  test('unknown capability kinds are rejected naming the path', () => {
    const t = shop();
    const r = rejected(
      admit(t, '/shop', { name: 'gpu', requires: { gpu: 1, cpu: { cores: 0.1, burst: 2 } } as never }),
    );
    assert.deepEqual(codes(r), ['unknown-capability', 'unknown-capability']);
    assert.equal(r.reasons[0]!.path, '/shop/gpu');
    assert.match(
      r.reasons[0]!.message,
      /^\/shop\/gpu requires unknown capability 'gpu' \(known: cpu, memory/,
    );
    const p = rejected(
      admit(t, '/shop', { name: 'p', policy: { never: [['gpu:any', 'net:host']], maxDepht: 1 } as never }),
    );
    assert.deepEqual(codes(p), ['unknown-capability', 'unknown-capability']);
  });

  test('cpu weight is validated and not carved', () => {
    const t = shop();
    const g = admit(t, '/shop', { name: 'a', requires: { cpu: { weight: 500 } } });
    assert.ok(g.ok);
    assert.equal(g.grant.cpuWeight, 500);
    assert.equal(remainingOf(t, '/shop')!.cpu, 1);
    assert.deepEqual(codes(rejected(admit(t, '/shop', { name: 'b', requires: { cpu: { weight: 0 } } }))), [
      'invalid-value',
    ]);
  });
});

describe('policy', () => {
  test('never: a net host child is rejected in a subtree holding PII', () => {
    const t = shop({ cpu: 1, secrets: ['PII'] }, { policy: { never: [['secret:PII', 'net:internet']] } });
    const r = rejected(admit(t, '/shop', { name: 'billing', requires: { secrets: ['PII'], net: 'host' } }));
    assert.deepEqual(codes(r), ['invariant-never']);
    assert.equal(
      r.reasons[0]!.message,
      '/shop/billing would hold secret:PII and net:internet, which /shop forbids in its subtree (never: [secret:PII, net:internet])',
    );
    assert.ok(admit(t, '/shop', { name: 'web', requires: { net: 'host' } }).ok);
    assert.ok(admit(t, '/shop', { name: 'billing', requires: { secrets: ['PII'], net: 'none' } }).ok);
  });

  test('never: an inherited host network counts, and the message says how to narrow it', () => {
    const t = shop({ cpu: 1, secrets: ['PII'] }, { policy: { never: [['secret:PII', 'net:internet']] } });
    const r = rejected(admit(t, '/shop', { name: 'billing', requires: { secrets: ['PII'] } }));
    assert.match(r.reasons[0]!.message, /net is inherited from \/shop, narrow it \(net: none\)$/);
  });

  test('never binds the whole subtree, deeper nodes included', () => {
    const t = shop({ cpu: 1, secrets: ['PII'] }, { policy: { never: [['secret:PII', 'net:internet']] } });
    admit(t, '/shop', { name: 'zone', requires: { cpu: 0.5, secrets: ['PII'], net: 'lan' } });
    assert.ok(admit(t, '/shop/zone', { name: 'a', requires: { secrets: ['PII'] } }).ok);
    const tw = shop(
      { cpu: 1, secrets: ['PII'], net: ['wan', 'host'] },
      { policy: { never: [['secret:*', 'net:internet']] } },
    );
    admit(tw, '/shop', { name: 'zone', requires: { cpu: 0.5, secrets: ['PII'], net: 'wan' } });
    assert.ok(true);
    const r = rejected(admit(tw, '/shop', { name: 'zone2', requires: { secrets: ['PII'], net: 'wan' } }));
    assert.deepEqual(codes(r), ['invariant-never']);
  });

  test('maxDepth bounds how deep the subtree may grow', () => {
    const t = shop({ cpu: 1 }, { policy: { maxDepth: 2 } });
    assert.ok(admit(t, '/shop', { name: 'a', requires: { cpu: 0.5 } }).ok);
    assert.ok(admit(t, '/shop/a', { name: 'b' }).ok);
    const r = rejected(admit(t, '/shop/a/b', { name: 'c' }));
    assert.deepEqual(codes(r), ['max-depth']);
    assert.equal(
      r.reasons[0]!.message,
      '/shop/a/b/c is 3 levels below /shop, whose policy allows maxDepth 2',
    );
  });

  const weakHost: HostCapabilities = { ...fullHost, memoryLimits: false, netNamespaces: false };

  test('a requirement the host cannot enforce is rejected, naming what is missing', () => {
    const root = createTree({ name: 'shop', requires: { cpu: 1 } }, weakHost);
    assert.ok(root.ok);
    const r = rejected(
      admit(root.tree, '/shop', { name: 'db', requires: { memory: 256 * Mi, net: 'none' } }),
    );
    assert.deepEqual(codes(r), ['host-cannot-enforce', 'host-cannot-enforce']);
    assert.deepEqual(
      r.reasons.map((x) => x.detail),
      [{ missing: 'memoryLimits' }, { missing: 'netNamespaces' }],
    );
    assert.match(
      r.reasons[0]!.message,
      /^\/shop\/db requires a memory limit, but this host cannot enforce it \(missing: memoryLimits\)/,
    );
    assert.ok(admit(root.tree, '/shop', { name: 'ok', requires: { cpu: 0.1 } }).ok);
  });

  test('allowAdvisory admits unenforceable requirements and marks them advisory', () => {
    const root = createTree(
      { name: 'shop', requires: { cpu: 1, memory: Gi }, policy: { allowAdvisory: true } },
      weakHost,
    );
    assert.ok(root.ok);
    assert.deepEqual(root.grant.advisory, ['memoryLimits']);
    const g = admit(root.tree, '/shop', { name: 'db', requires: { memory: 256 * Mi, net: 'none' } });
    assert.ok(g.ok);
    assert.deepEqual(g.grant.advisory, ['memoryLimits', 'netNamespaces']);
  });

  test('a child cannot loosen an ancestor that forbids advisory mode', () => {
    const root = createTree(
      { name: 'shop', requires: { cpu: 1 }, policy: { allowAdvisory: false } },
      weakHost,
    );
    assert.ok(root.ok);
    const r = rejected(
      admit(root.tree, '/shop', { name: 'db', requires: { net: 'none' }, policy: { allowAdvisory: true } }),
    );
    assert.deepEqual(codes(r), ['host-cannot-enforce']);
  });

  test('a rejected admission changes nothing', () => {
    const t = shop({ cpu: 1, secrets: ['PII'] }, { policy: { never: [['secret:PII', 'net:internet']] } });
    admit(t, '/shop', {
      name: 'db',
      requires: { cpu: 0.5, listen: { x: ':5432' } },
      provides: { 'db.sql': {} },
    });
    const before = snapshot(t);
    rejected(
      admit(t, '/shop', {
        name: 'api',
        requires: { cpu: 0.6, secrets: ['PII'], services: ['db.sql'], listen: { h: ':8080' } },
        provides: { http: {} },
      }),
    );
    assert.deepEqual(snapshot(t), before);
  });
});

describe('indexes', () => {
  test('a name released and admitted again many times keeps the tree consistent', () => {
    const t = shop();
    for (let i = 0; i < 200; i++) admit(t, '/shop', { name: `c${i}` });
    for (let i = 0; i < 500; i++) {
      assert.ok(admit(t, '/shop', { name: 'again', requires: { cpu: 0.5 } }).ok);
      assert.ok(release(t, '/shop/again').ok);
      if (i % 50 === 0) assert.ok(release(t, `/shop/c${i / 50}`).ok);
    }
    assert.equal(remainingOf(t, '/shop')!.cpu, 1);
    assert.equal(snapshot(t).root.children.length, 190);
    assert.equal(grantOf(t, '/shop/again'), undefined);
  });
});
