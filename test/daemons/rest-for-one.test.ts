/**
 * A database and an API that connects to it at start, under `rest_for_one`: when the database
 * is killed, the API is stopped at once (not left running against a dead database for the
 * database's backoff delay) and started again after the database is ready; both restarts count,
 * and the API's says why (the journal's `restarting` record names the database).
 */
import assert from 'node:assert/strict';
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { httpGet } from '../support/net.ts';
import { freePort, kill9, needPrograms, treeDir, until, userIds } from './support.ts';

const REDIS = '/usr/bin/redis-server';

const API = `import { connect } from 'node:net';
import { createServer } from 'node:http';
const [dbPort, httpPort] = process.argv.slice(2).map(Number);
// One connection, made at start: without its database this API is of no use.
const db = connect(dbPort, '127.0.0.1');
// Losing it later, it keeps running and answers 503: only its supervisor stops it.
let lost = false;
let connected = false;
db.on('error', (e) => {
  console.error('database: ' + e.message);
  if (!connected) process.exit(1);
});
db.on('close', () => { lost = true; console.error('lost the database'); });
db.once('connect', () => {
  connected = true;
  const waiting = [];
  db.setEncoding('utf8');
  db.on('data', (d) => waiting.shift()?.(d.trim()));
  createServer((req, res) => {
    if (lost) return res.writeHead(503).end('no database\\n');
    waiting.push((answer) => res.end('database says ' + answer + '\\n'));
    db.write('PING\\r\\n');
  }).listen(httpPort, '127.0.0.1', () => console.log('api: connected to the database, listening'));
});
process.on('SIGTERM', () => { console.log('api: stopping'); process.exit(0); });
`;

test('rest_for_one: the API stops with its database and starts after it', async (t) => {
  if (!needPrograms(t, [REDIS])) return;
  const [dbPort, apiPort] = [await freePort(), await freePort()];
  const td = treeDir(
    t,
    'r41',
    (name, dir) => `name: ${name}
strategy: rest_for_one
intensity: 5
period: 30s
requires: { cpu: 1.0, memory: 512Mi, pids: 128 }
children:
  - name: db
    user: redis
    command: [${REDIS}, --port, "${dbPort}", --bind, 127.0.0.1, --dir, ${join(dir, 'data')}, --supervised, systemd, --save, ""]
    ready: { sd_notify: true, timeout: 20s }
    backoff: { initial: 1500ms, max: 1500ms }
    requires: { memory: 128Mi }
  - name: api
    command: [${process.execPath}, api.mjs, "${dbPort}", "${apiPort}"]
    ready: { http: 'http://127.0.0.1:${apiPort}/', timeout: 20s }
    requires: { memory: 128Mi }
`,
    (dir) => {
      mkdirSync(join(dir, 'data'));
      const { uid, gid } = userIds('redis');
      chownSync(join(dir, 'data'), uid, gid);
      writeFileSync(join(dir, 'api.mjs'), API);
    },
  );
  await td.up();
  const db = await td.ready('db');
  const api = await td.ready('api');
  assert.equal(await httpGet(apiPort), 'database says +PONG\n');

  const since = new Date().toISOString();
  await kill9(db.pid as number);
  // Within the database's 1.5 s backoff: the API is already down.
  const during = await until('the API stopped while the database waits out its backoff', async () => {
    const tree = await td.tree();
    const [d, a] = [td.path('db'), td.path('api')].map((p) => tree.find((e) => e.path === p));
    return d?.state === 'restarting' && a?.state === 'stopped' && a.pid === null ? { d, a } : null;
  });
  t.diagnostic(`db ${during.d?.state}, api ${during.a?.state}`);
  const db2 = await td.ready('db', db.pid as number);
  const api2 = await td.ready('api', api.pid as number);
  assert.equal(db2.restarts, 1);
  assert.equal(api2.restarts, 1, 'the API’s restart counts too');
  assert.equal(await httpGet(apiPort), 'database says +PONG\n');

  const events = JSON.parse((await td.run(['events', '--since', since, '--json'])).stdout) as {
    type: string;
    path: string;
    because?: string;
    expected?: boolean;
  }[];
  const restarting = events.filter((e) => e.type === 'restarting');
  assert.deepEqual(
    restarting.map((e) => [e.path, e.because ?? null]),
    [
      [td.path('db'), null],
      [td.path('api'), td.path('db')],
    ],
  );
  const logs = await td.logs('api');
  assert.match(logs, /api: stopping/, 'the API was stopped by its supervisor (SIGTERM)');
  assert.ok(
    !events.some((e) => e.type === 'exited' && e.path === td.path('api') && e.expected === false),
    'the API’s exit was one the engine asked for, not a crash of its own',
  );
  await td.down();
});
