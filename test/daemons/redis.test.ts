/**
 * redis-server 7 as Debian ships it, under `user: redis`, `--supervised systemd` (sd_notify
 * readiness through a socket the redis user can reach). It rewrites its process title, so its
 * re-adoption after a daemon kill -9 rests on the launcher's record, not its environment: the same
 * pid, and the key set before is still there after.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { daemonLife, freePort, needPrograms, treeDir, userIds } from './support.ts';

const REDIS = '/usr/bin/redis-server';
const CLI = '/usr/bin/redis-cli';

test('redis-server under user: redis with --supervised systemd', async (t) => {
  if (!needPrograms(t, [REDIS, CLI])) return;
  const port = await freePort();
  const td = treeDir(
    t,
    'redis',
    (name, dir) => `name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 128 }
children:
  - name: cache
    user: redis
    command: [${REDIS}, --port, "${port}", --bind, 127.0.0.1, --dir, ${join(dir, 'data')}, --supervised, systemd, --save, "", --appendonly, "no", --loglevel, notice]
    ready: { sd_notify: true, timeout: 20s }
    requires: { cpu: 0.5, memory: 128Mi, pids: 32 }
`,
    (dir) => {
      mkdirSync(join(dir, 'data'));
      const { uid, gid } = userIds('redis');
      chownSync(join(dir, 'data'), uid, gid);
    },
  );
  const redis = (...args: string[]) =>
    execFileSync(CLI, ['-p', String(port), ...args], { encoding: 'utf8' }).trim();
  await daemonLife(t, td, 'cache', {
    budget: { cpu: 0.5, memory: 128 * 2 ** 20, pids: 32 },
    probe: async () => {
      assert.equal(redis('PING'), 'PONG');
      assert.equal(redis('SET', 'greeting', 'kept across the re-adoption'), 'OK');
    },
    intact: async () => {
      assert.equal(redis('GET', 'greeting'), 'kept across the re-adoption', 'its in-memory data survived');
    },
    cleanLine: /Redis is now ready to exit, bye bye/,
  });
});
