/**
 * runsvdir (runit 2.1) with one service, its runsv in a process group of its own (`-P`): the
 * case where a stop that signals only the main process's group never reaches the service. Stop
 * now sends SIGTERM to every process of the child, so the service shuts down cleanly itself.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isAlive } from '../../src/daemon/index.ts';
import { daemonLife, hostPidOf, needPrograms, serviceScript, treeDir, until } from './support.ts';

const RUNSVDIR = '/usr/bin/runsvdir';

test('runsvdir -P and its runsv-supervised service in one child', async (t) => {
  if (!needPrograms(t, [RUNSVDIR, '/usr/bin/runsv'])) return;
  let dirOf = '';
  const td = treeDir(
    t,
    'runit',
    (name, dir) => `name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 128 }
children:
  - name: runsvdir
    command: [${RUNSVDIR}, -P, ${join(dir, 'service')}]
    ready: { log: '^service up$', timeout: 20s }
    requires: { cpu: 0.25, memory: 64Mi, pids: 32 }
`,
    (dir) => {
      dirOf = dir;
      mkdirSync(join(dir, 'service', 'svc'), { recursive: true });
      writeFileSync(join(dir, 'service', 'svc', 'run'), serviceScript(join(dir, 'svc.pid')));
      chmodSync(join(dir, 'service', 'svc', 'run'), 0o755);
    },
  );
  let service = 0;
  const servicePid = () =>
    until('the service’s pid file', async () => {
      const main = (await td.entry('runsvdir')).pid;
      const nspid = Number(readFileSync(join(dirOf, 'svc.pid'), 'utf8'));
      return main && nspid ? hostPidOf(main, nspid, `captree-${td.name}-`) : null;
    });
  await daemonLife(t, td, 'runsvdir', {
    budget: { cpu: 0.25, memory: 64 * 2 ** 20, pids: 32 },
    probe: async () => {
      service = await until('the service of this instance', async () => {
        const pid = await servicePid();
        return isAlive(pid) && pid !== service ? pid : null;
      });
    },
    intact: async () => {
      assert.equal(await servicePid(), service);
      assert.ok(isAlive(service), 'the service survived the daemon’s kill -9');
    },
    cleanLine: /service stopping cleanly/,
  });
});
