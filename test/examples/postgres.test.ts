/**
 * examples/postgres run as its README says (from a temporary copy with free ports and a unique
 * tree name): the data directory made for `postgres`, `captree up --detach`, initdb on the first
 * start, notes written through the API; kill -9 of postgres → the API stopped and both back, the
 * notes still there; a clean stop of the database ("database system is shut down"); `down`
 * leaves nothing.
 */
import assert from 'node:assert/strict';
import { chownSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repo } from '../cli/helpers.ts';
import { freePort, kill9, needPrograms, treeDir, userIds } from '../daemons/support.ts';
import { httpGet } from '../support/net.ts';

const example = join(repo, 'examples/postgres');

function post(port: number, body: string): Promise<string> {
  return fetch(`http://127.0.0.1:${port}/notes`, { method: 'POST', body }).then((r) => r.text());
}

test('examples/postgres: PostgreSQL under user: postgres and an API, rest_for_one', async (t) => {
  const server = existsSync('/usr/lib/postgresql')
    ? readdirSync('/usr/lib/postgresql').sort().at(-1)
    : undefined;
  if (!needPrograms(t, ['/usr/bin/psql', `/usr/lib/postgresql/${server ?? '15'}/bin/postgres`])) return;
  const [dbPort, apiPort] = [await freePort(), await freePort()];
  const td = treeDir(
    t,
    'pgex',
    (name) =>
      readFileSync(join(example, 'captree.yaml'), 'utf8')
        .replace(/^name: pgnotes$/m, `name: ${name}`)
        .replaceAll('25432', String(dbPort))
        .replaceAll('18090', String(apiPort)),
    (dir) => {
      cpSync(example, dir, { recursive: true, filter: (src) => !/\/(data|\.captree)(\/|$)/.test(src) });
      // The README's set-up step: install -d -o postgres -g postgres -m 700 data
      mkdirSync(join(dir, 'data'), { mode: 0o700 });
      const { uid, gid } = userIds('postgres');
      chownSync(join(dir, 'data'), uid, gid);
    },
  );
  await td.up();
  const db = await td.ready('db');
  await td.ready('api');
  assert.match(await td.logs('db'), /db\.sh: no cluster in \.\/data yet: initdb/);
  assert.equal(await post(apiPort, 'first'), 'note 1\n');
  assert.equal(await post(apiPort, 'second'), 'note 2\n');

  await kill9(db.pid as number);
  await td.ready('db', db.pid as number);
  const api = await td.ready('api');
  assert.equal(api.restarts, 1, 'the API was restarted with its database');
  const notes = JSON.parse(await httpGet(apiPort, { path: '/notes' })) as { text: string }[];
  assert.deepEqual(
    notes.map((n) => n.text),
    ['first', 'second'],
    'committed notes survive a kill -9 of the database',
  );
  const log = await td.logs('db');
  assert.equal(log.match(/no cluster/g)?.length, 1, 'initdb ran on the first start only');

  await td.run(['stop', td.path('db')]);
  await td.waitFor('db', (e) => e.state === 'stopped', 'the database stopped');
  assert.match(await td.logs('db'), /database system is shut down/);
  await td.down();
});
