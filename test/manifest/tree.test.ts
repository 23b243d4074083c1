import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NodeSpec, ProcessSpec } from '../../src/manifest/index.ts';
import { treeOf, yaml } from './helpers.ts';

const NO_REQUIRES = {
  cpu: null,
  cpuWeight: null,
  memory: null,
  pids: null,
  net: null,
  services: [],
  listen: {},
  paths: [],
  secrets: [],
  env: [],
  privileges: null,
};

test('a minimal manifest gets every default', () => {
  const tree = treeOf(yaml('name: app', 'children:', '  - name: web', '    command: [node, web.js]'));
  const web: ProcessSpec = {
    kind: 'process',
    name: 'web',
    path: '/app/web',
    command: ['node', 'web.js'],
    env: {},
    inheritEnv: [],
    cwd: '/srv/app',
    user: null,
    group: null,
    restart: 'permanent',
    shutdown: 5000,
    stopSignal: 'SIGTERM',
    killMode: 'control-group',
    pidFile: null,
    significant: false,
    backoff: { initial: 100, max: 30_000, factor: 2, resetAfter: 60_000 },
    permanentExitCodes: [125],
    ready: null,
    liveness: null,
    watchdog: null,
    logs: { maxSize: 10 * 2 ** 20, keep: 3 },
    requires: NO_REQUIRES,
    provides: {},
    supervisor: false,
    priority: 'normal',
  };
  const root: NodeSpec = {
    kind: 'node',
    name: 'app',
    path: '/app',
    strategy: 'one_for_one',
    intensity: 3,
    period: 5000,
    autoShutdown: 'never',
    maxChildren: null,
    restart: 'permanent',
    shutdown: 'infinity',
    significant: false,
    requires: NO_REQUIRES,
    provides: {},
    policy: { never: [], maxDepth: null, allowAdvisory: false },
    admission: null,
    children: [web],
  };
  assert.deepEqual(tree, { file: 'captree.yaml', dir: '/srv/app', root });
});

test('a root without children is an empty node', () => {
  assert.deepEqual(treeOf('name: solo\n').root.children, []);
});

test('nested nodes carry absolute paths', () => {
  const tree = treeOf(
    yaml(
      'name: shop',
      'children:',
      '  - name: backend',
      '    strategy: one_for_all',
      '    children:',
      '      - name: db',
      '        command: [db]',
      '      - name: cache.v2',
      '        command: [cache]',
      '  - name: dev',
      '    strategy: dynamic',
      '    maxChildren: 5',
      '    admission: { maxChildren: 3, maxGrant: { cpu: 0.5 } }',
      '    children: []',
    ),
  );
  const [backend, dev] = tree.root.children;
  assert.ok(backend?.kind === 'node' && dev?.kind === 'node');
  assert.deepEqual(
    backend.children.map((child) => child.path),
    ['/shop/backend/db', '/shop/backend/cache.v2'],
  );
  assert.equal(backend.shutdown, 'infinity');
  assert.deepEqual(
    [dev.path, dev.strategy, dev.maxChildren, dev.admission],
    ['/shop/dev', 'dynamic', 5, { maxChildren: 3, maxGrant: { cpu: 0.5 } }],
  );
});

test('process fields are normalised', () => {
  const tree = treeOf(
    yaml(
      'name: app',
      'autoShutdown: any_significant',
      'children:',
      '  - name: p',
      '    command: echo hi && sleep 1',
      '    env: { PORT: 8080, DEBUG: true, NAME: x }',
      '    inheritEnv: true',
      '    cwd: ./work',
      '    user: 1000',
      '    group: staff',
      '    restart: transient',
      '    significant: true',
      '    shutdown: brutal',
      '    stopSignal: INT',
      '    backoff: false',
      '    permanentExitCodes: [125, 78]',
      '    ready: { notify: { fd: 4 }, timeout: 10s }',
      '    liveness: { http: "http://127.0.0.1:8080/health", interval: 5s }',
      '    watchdog: 30s',
      '    logs: { maxSize: 1Mi, keep: 0 }',
      '    requires:',
      '      net: lan',
      '      services: [db.sql, postgres]',
      '      listen: { http: 127.0.0.1:8080, admin: "[::1]:9000", ctl: { unix: /run/app.sock } }',
      '      paths: { /var/data: rw, ./cache: ro }',
      '      secrets: [DB_PASSWORD]',
      '      env: [HOME_DIR]',
      '    provides: { app.http: { tcp: 8080, kind: http }, app.ctl: { unix: ctl.sock } }',
    ),
  );
  const p = tree.root.children[0];
  assert.ok(p?.kind === 'process');
  assert.deepEqual(p.command, ['/bin/sh', '-c', 'echo hi && sleep 1']);
  assert.deepEqual(p.env, { PORT: '8080', DEBUG: 'true', NAME: 'x' });
  assert.equal(p.inheritEnv, true);
  assert.equal(p.cwd, '/srv/app/work');
  assert.deepEqual(
    [p.user, p.group, p.restart, p.significant, p.shutdown],
    [1000, 'staff', 'transient', true, 'brutal'],
  );
  assert.equal(p.stopSignal, 'SIGINT');
  assert.equal(p.backoff, null);
  assert.deepEqual(p.permanentExitCodes, [125, 78]);
  assert.deepEqual(p.ready, { type: 'notify', fd: 4, timeout: 10_000 });
  assert.deepEqual(p.liveness, {
    type: 'http',
    url: 'http://127.0.0.1:8080/health',
    interval: 5000,
    timeout: 5000,
    failures: 3,
  });
  assert.equal(p.watchdog, 30_000);
  assert.deepEqual(p.logs, { maxSize: 2 ** 20, keep: 0 });
  assert.deepEqual(p.requires, {
    ...NO_REQUIRES,
    net: 'lan',
    services: ['db.sql', 'postgres'],
    listen: {
      http: { type: 'tcp', host: '127.0.0.1', port: 8080 },
      admin: { type: 'tcp', host: '::1', port: 9000 },
      ctl: { type: 'unix', path: '/run/app.sock' },
    },
    paths: [
      { path: '/var/data', mode: 'rw' },
      { path: '/srv/app/cache', mode: 'ro' },
    ],
    secrets: ['DB_PASSWORD'],
    env: ['HOME_DIR'],
  });
  assert.deepEqual(p.provides, {
    'app.http': { endpoint: { type: 'tcp', host: '127.0.0.1', port: 8080 }, kind: 'http' },
    'app.ctl': { endpoint: { type: 'unix', path: 'ctl.sock' }, kind: null },
  });
});

test('every ready probe form', () => {
  const readyOf = (ready: string) => {
    const tree = treeOf(
      yaml('name: app', 'children:', '  - name: p', '    command: [x]', `    ready: ${ready}`),
    );
    const child = tree.root.children[0];
    return child?.kind === 'process' ? child.ready : undefined;
  };
  assert.deepEqual(readyOf('{ notify: fd }'), { type: 'notify', fd: 3, timeout: 30_000 });
  assert.deepEqual(readyOf('{ notify: 5 }'), { type: 'notify', fd: 5, timeout: 30_000 });
  assert.deepEqual(readyOf('{ sd_notify: true }'), { type: 'sd_notify', timeout: 30_000 });
  assert.deepEqual(readyOf('{ tcp: 5432 }'), { type: 'tcp', host: '127.0.0.1', port: 5432, timeout: 30_000 });
  assert.deepEqual(readyOf("{ tcp: 'db.local:5432' }"), {
    type: 'tcp',
    host: 'db.local',
    port: 5432,
    timeout: 30_000,
  });
  assert.deepEqual(readyOf("{ http: 'http://127.0.0.1:8080/health', timeout: 2s }"), {
    type: 'http',
    url: 'http://127.0.0.1:8080/health',
    timeout: 2000,
  });
  assert.deepEqual(readyOf('{ exec: [pg_isready, -q] }'), {
    type: 'exec',
    command: ['pg_isready', '-q'],
    timeout: 30_000,
  });
  assert.deepEqual(readyOf("{ log: 'ready to accept' }"), {
    type: 'log',
    pattern: 'ready to accept',
    timeout: 30_000,
  });
});

test('paths as a list, and backoff partly given', () => {
  const tree = treeOf(
    yaml(
      'name: app',
      'children:',
      '  - name: p',
      '    command: [x]',
      '    backoff: { initial: 1s }',
      '    requires: { paths: [/etc/app, { path: data, mode: rw }] }',
    ),
  );
  const p = tree.root.children[0];
  assert.ok(p?.kind === 'process');
  assert.deepEqual(p.backoff, { initial: 1000, max: 30_000, factor: 2, resetAfter: 60_000 });
  assert.deepEqual(p.requires.paths, [
    { path: '/etc/app', mode: 'ro' },
    { path: '/srv/app/data', mode: 'rw' },
  ]);
});

test('YAML anchors and aliases resolve', () => {
  const tree = treeOf(
    yaml(
      'name: app',
      'children:',
      '  - name: a',
      '    command: [x]',
      '    requires: &small { cpu: 0.1, memory: 64Mi }',
      '  - name: b',
      '    command: [y]',
      '    requires: *small',
    ),
  );
  assert.deepEqual(
    tree.root.children.map((child) => child.requires.memory),
    [64 * 2 ** 20, 64 * 2 ** 20],
  );
});
