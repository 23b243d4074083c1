/**
 * PostgreSQL 15 as Debian ships it, under `user: postgres` (it refuses to run as root), its data
 * directory made by initdb on first start in a temporary directory. Readiness is sd_notify
 * (Debian builds postgres with systemd support; it never writes to a notification fd), stop is
 * the upstream unit's: SIGINT (fast shutdown) to the postmaster only (`killMode: mixed`).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { daemonLife, freePort, needPrograms, treeDir, userIds } from './support.ts';

const BIN = '/usr/lib/postgresql/15/bin';
const PSQL = '/usr/bin/psql';

test('postgres under user: postgres, initdb on first start, sd_notify readiness', async (t) => {
  if (!needPrograms(t, [`${BIN}/postgres`, `${BIN}/initdb`, PSQL])) return;
  const port = await freePort();
  const td = treeDir(
    t,
    'pg',
    (name, dir) => `name: ${name}
requires: { cpu: 1.0, memory: 1Gi, pids: 256 }
children:
  - name: db
    user: postgres
    cwd: pg
    command:
      - sh
      - -c
      - >-
        test -s data/PG_VERSION || ${BIN}/initdb -D data -A trust -U postgres --no-sync >initdb.log;
        exec ${BIN}/postgres -D data -p ${port} -k ${join(dir, 'pg')} -c listen_addresses=127.0.0.1
        -c fsync=off -c shared_buffers=16MB -c max_connections=20
    ready: { sd_notify: true, timeout: 60s }
    stopSignal: SIGINT
    killMode: mixed
    shutdown: 30s
    requires: { cpu: 0.5, memory: 256Mi, pids: 64 }
`,
    (dir) => {
      mkdirSync(join(dir, 'pg'), { mode: 0o700 });
      const { uid, gid } = userIds('postgres');
      chownSync(join(dir, 'pg'), uid, gid);
    },
  );
  const sql = (query: string) =>
    execFileSync(PSQL, ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-qtAc', query], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  await daemonLife(t, td, 'db', {
    budget: { cpu: 0.5, memory: 256 * 2 ** 20, pids: 64 },
    probe: async () => {
      sql('CREATE TABLE IF NOT EXISTS kept (v text)');
      sql("INSERT INTO kept VALUES ('before the re-adoption')");
    },
    intact: async () => {
      assert.match(
        sql('SELECT v FROM kept'),
        /before the re-adoption/,
        'its data and its connections still work',
      );
      assert.equal(sql('SELECT current_user'), 'postgres');
    },
    cleanLine: /database system is shut down/,
  });
});
