/**
 * `captree ps PATH` through the real bin: one child in detail as `systemctl status` shows a
 * unit, after a real crash (kill -9 of its process): state, pid, restarts by reason, the grant
 * against its cgroup's use, the last exits with reasons and its last log lines; a node with its
 * intensity window and children; --json; a mistyped name gets did you mean.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { captree, demoCopy, eventually, killAll, logText, psJson } from './helpers.ts';

describe('ps PATH', () => {
  let dir: string;
  let name: string;
  let daemonPid: number | undefined;
  let killed: number;
  before(async () => {
    ({ dir, name } = await demoCopy());
    const r = await captree(['up', '-d'], dir);
    assert.equal(r.code, 0, r.stderr);
    daemonPid = Number(/daemon pid (\d+)/.exec(r.stdout)?.[1]);
    const worker = (await psJson(dir)).find((e) => e.path === `/${name}/worker`);
    assert.ok(worker?.pid);
    killed = worker.pid;
    await eventually(
      () => (logText(join(dir, '.captree'), `/${name}/worker`).includes('worker: tick') ? true : undefined),
      'a tick of the worker',
    );
    process.kill(killed, 'SIGKILL');
    await eventually(async () => {
      const w = (await psJson(dir)).find((e) => e.path === `/${name}/worker`);
      return w && w.restarts === 1 && w.pid !== null && w.pid !== killed ? w : undefined;
    }, 'the worker restarted');
  });
  after(async () => {
    await captree(['down'], dir);
    killAll([daemonPid]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a child: state, pid, restarts, grant vs use, last exits, last log lines', async () => {
    const pid = (await psJson(dir)).find((e) => e.path === `/${name}/worker`)?.pid;
    const r = await captree(['ps', 'worker'], dir);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], `/${name}/worker (process)`);
    const field = (label: string) => lines.find((l) => l.trimStart().startsWith(`${label}:`))?.trim();
    assert.match(field('State') ?? '', /^State: running since \S+Z \(\S+ ago\)$/);
    assert.equal(field('PID'), `PID: ${pid}`);
    assert.equal(field('Restarts'), 'Restarts: 1 (signal: 1)');
    assert.equal(field('Last exit'), 'Last exit: killed by SIGKILL');
    assert.match(field('CPU') ?? '', /^CPU: [\d.]+s of cpu time in all; limit 0\.1 cores/);
    assert.match(field('Memory') ?? '', /^Memory: [\d.]+(Ki|Mi) of 128Mi \(\d+%\)$/);
    assert.match(field('PIDs') ?? '', /^PIDs: \d+ of 32 \(\d+%\)$/);
    const exits = lines.indexOf(`Last exits (captree events --path /${name}/worker):`);
    assert.ok(exits > 0, r.stdout);
    assert.match(lines[exits + 1] ?? '', /^ {2}\S+Z killed by SIGKILL$/);
    const logs = lines.findIndex((l) => /^Last \d+ log lines? \(captree logs worker\):$/.test(l));
    assert.ok(logs > exits, r.stdout);
    const logLines = lines.slice(logs + 1).filter((l) => l !== '');
    assert.ok(logLines.length >= 1 && logLines.length <= 10, r.stdout);
    assert.ok(
      logLines.some((l) => / out worker: tick \d+/.test(l)),
      r.stdout,
    );
    assert.ok(
      logLines.some((l) => / sys exited: killed by SIGKILL$/.test(l)),
      r.stdout,
    );
  });

  test('--json: the ps entry plus counters, exits and logs', async () => {
    const r = await captree(['ps', `/${name}/worker`, '--json'], dir);
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout);
    assert.equal(d.path, `/${name}/worker`);
    assert.equal(d.kind, 'process');
    assert.equal(d.restarts, 1);
    assert.deepEqual(d.restartsByReason, { signal: 1 });
    assert.deepEqual(d.grant, { cpu: 0.1, memory: 128 * 2 ** 20, pids: 32 });
    assert.ok(d.counters.memoryBytes > 0 && d.counters.memoryBytes <= d.grant.memory);
    assert.ok(d.counters.pids >= 1 && d.counters.pids <= 32);
    assert.ok(d.counters.cpuSeconds > 0);
    assert.deepEqual(d.exits.at(-1), {
      time: d.exits.at(-1).time,
      type: 'exited',
      expected: false,
      reason: 'killed by SIGKILL',
    });
    assert.ok(d.logs.length >= 1 && d.logs.length <= 10);
    assert.ok(typeof d.since === 'number' && d.since <= Date.now());
  });

  test('a node: its intensity window and its children', async () => {
    const r = await captree(['ps', `/${name}`], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {2}Intensity: 1 of 5 restarts within 30s used$/m);
    assert.match(r.stdout, /^ {3}Children: 3 \(3 up\)$/m);
    assert.match(r.stdout, /^ {4}db process ready$/m);
    assert.doesNotMatch(r.stdout, /log line/);
  });

  test('a mistyped name: did you mean', async () => {
    const r = await captree(['ps', 'wrker'], dir);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `captree: no child /wrker in this tree (did you mean /${name}/worker?) (see: captree ps)\n`,
    );
  });
});
