/**
 * runsvdir (runit 2.1) with one service, its runsv in a process group of its own (`-P`): the
 * case where a stop that signals only the main process's group never reaches the service. Stop
 * now sends SIGTERM to every process of the child, so the service shuts down cleanly itself.
 */
import { join } from 'node:path';
import { test } from 'node:test';
import { daemonLife, needPrograms, supervisedService, treeDir, writeService } from './support.ts';

const RUNSVDIR = '/usr/bin/runsvdir';

test('runsvdir -P and its runsv-supervised service in one child', async (t) => {
  if (!needPrograms(t, [RUNSVDIR, '/usr/bin/runsv'])) return;
  let pidFile = '';
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
      pidFile = writeService(join(dir, 'service', 'svc'));
    },
  );
  await daemonLife(t, td, 'runsvdir', {
    budget: { cpu: 0.25, memory: 64 * 2 ** 20, pids: 32 },
    ...supervisedService(td, 'runsvdir', pidFile),
    cleanLine: /service stopping cleanly/,
  });
});
