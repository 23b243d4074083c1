/**
 * The product end to end, as a user runs it, on real processes and cgroups: `up --detach`, `ps`,
 * `restart` under rest_for_one, a bad manifest against a running tree, `events`, `logs`, `down`,
 * and a foreground `up` stopped by SIGTERM. Every pid seen is checked gone at the end, and no
 * cgroup named after the tree is left.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readPid, statePaths } from '../../src/daemon/index.ts';
import {
  alive,
  bin,
  captree,
  cgroupsNamed,
  demoCopy,
  type Entry,
  killAll,
  node,
  pidsOf,
  psJson,
} from './helpers.ts';

describe('up --detach, ps, restart, events, logs, down', () => {
  let dir: string;
  let name: string;
  let daemonPid: number | null = null;
  const seen = new Set<number>();
  const remember = (entries: Entry[]) => {
    for (const e of entries) if (e.pid !== null) seen.add(e.pid);
  };

  before(async () => {
    ({ dir, name } = await demoCopy());
  });

  after(async () => {
    if (daemonPid !== null && alive([daemonPid]).length > 0) {
      await captree(['down'], dir);
      killAll([daemonPid, ...seen]);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('up --detach returns once the tree is up', async () => {
    const r = await captree(['up', '--detach'], dir);
    daemonPid = readPid(statePaths(join(dir, '.captree')));
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`^captree: /${name} is up in the background \\(daemon pid \\d+, state ./.captree\\)`),
    );
    assert.ok(daemonPid !== null);
  });

  test('ps --json shows every node and child with the documented fields', async () => {
    const entries = await psJson(dir);
    remember(entries);
    assert.deepEqual(
      entries.map((e) => [e.path, e.kind]),
      [
        [`/${name}`, 'node'],
        [`/${name}/db`, 'process'],
        [`/${name}/api`, 'process'],
        [`/${name}/worker`, 'process'],
      ],
    );
    for (const e of entries) {
      assert.ok(['ready', 'running'].includes(e.state), `${e.path} is ${e.state}`);
      assert.equal(e.restarts, 0);
      assert.equal(e.ready, true);
      assert.equal(typeof e.uptimeMs, 'number');
      assert.ok('cpu' in e.grant && 'memory' in e.grant && 'pids' in e.grant);
      assert.ok('cpu' in e.used && 'memory' in e.used);
      if (e.kind === 'process') assert.ok(typeof e.pid === 'number' && alive([e.pid]).length === 1);
    }
    const db = entries[1]!;
    assert.deepEqual(db.grant, { cpu: 0.2, memory: 128 * 1024 * 1024, pids: 32 });
  });

  test('ps: an aligned tree without colour when piped', async () => {
    const r = await captree(['ps'], dir);
    assert.equal(r.code, 0);
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^PATH\s+KIND\s+STATE\s+PID\s+UPTIME\s+RESTARTS\s+READY\s+CPU\s+MEMORY\s+PIDS$/);
    assert.match(lines[1]!, new RegExp(`^/${name}\\s+node\\s+ready`));
    assert.match(lines[2]!, /^├─ db\s+process\s+ready\s+\d+/);
    assert.match(lines[4]!, /^└─ worker\s+process\s+running\s+\d+/);
    assert.ok(!r.stdout.includes('\x1b['), 'no ANSI escapes when piped');
    const col = lines[0]!.indexOf('KIND');
    for (const l of lines.slice(1)) assert.equal(l.slice(col - 2, col), '  ', `aligned: ${l}`);
  });

  test('restart under rest_for_one: the child and those after it get new pids, those before do not', async () => {
    const before = pidsOf(await psJson(dir));
    const r = await captree(['restart', `/${name}/api`], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^restarted /${name}/api \\(ready, pid \\d+\\)\n$`));
    const entries = await psJson(dir);
    remember(entries);
    const afterApi = pidsOf(entries);
    assert.equal(afterApi[`/${name}/db`], before[`/${name}/db`]);
    assert.notEqual(afterApi[`/${name}/api`], before[`/${name}/api`]);
    assert.notEqual(afterApi[`/${name}/worker`], before[`/${name}/worker`]);
    assert.deepEqual(alive([before[`/${name}/api`]!, before[`/${name}/worker`]!]), []);

    const r2 = await captree(['restart', `/${name}/db`], dir);
    assert.equal(r2.code, 0, r2.stderr);
    const entries2 = await psJson(dir);
    remember(entries2);
    const afterDb = pidsOf(entries2);
    for (const child of ['db', 'api', 'worker']) {
      assert.notEqual(afterDb[`/${name}/${child}`], afterApi[`/${name}/${child}`], child);
    }
  });

  test('restart of an unknown path: exit 1, one line', async () => {
    const r = await captree(['restart', `/${name}/nope`], dir);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `captree: no child /${name}/nope in this tree (see: captree ps)\n`);
  });

  test('a malformed manifest: every error with file:line:col, exit 1, the running tree untouched', async () => {
    const before = pidsOf(await psJson(dir));
    const good = readFileSync(join(dir, 'captree.yaml'), 'utf8');
    const bad = good
      .replace('strategy: rest_for_one', 'strategy: rest_for_two')
      .replace('restart: transient', 'restart: often');
    writeFileSync(join(dir, 'broken.yaml'), bad);
    const r = await captree(['up', 'broken.yaml'], dir);
    assert.equal(r.code, 1);
    const errors = r.stderr.split('\n').filter((l) => /^broken\.yaml:\d+:\d+: /.test(l));
    assert.equal(errors.length, 2, r.stderr);
    assert.match(r.stderr, /nothing was started or changed/);
    assert.deepEqual(pidsOf(await psJson(dir)), before);
  });

  test('a second up on the same state dir is refused, the tree untouched', async () => {
    const before = pidsOf(await psJson(dir));
    const r = await captree(['up', '--detach'], dir);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^captree: a tree is already running from \.\/\.captree \(daemon pid \d+\); stop it with: captree down\n$/,
    );
    assert.deepEqual(pidsOf(await psJson(dir)), before);
  });

  test('events --json: the journal, filtered by path', async () => {
    const r = await captree(['events', '--json', '--path', `/${name}/db`], dir);
    assert.equal(r.code, 0, r.stderr);
    const events = JSON.parse(r.stdout) as { type: string; path: string; ts: number; time: string }[];
    assert.ok(events.every((e) => e.path === `/${name}/db`));
    assert.equal(events.filter((e) => e.type === 'started').length, 2, 'started, then restarted once');
    const text = await captree(['events', '--since', '10m'], dir);
    assert.match(text.stdout, new RegExp(`^\\S+Z /${name}/api started pid \\d+$`, 'm'));
  });

  test('logs: the output of a process child', async () => {
    const r = await captree(['logs', `/${name}/db`], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\S+Z out db: listening on 127\.0\.0\.1:\d+$/m);
    const json = await captree(['logs', '--json', '-n', '1', `/${name}/db`], dir);
    const lines = json.stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    assert.equal(JSON.parse(lines[0]!).path, `/${name}/db`);
    const node = await captree(['logs', `/${name}`], dir);
    assert.equal(node.code, 1);
    assert.match(node.stderr, /has no log of its own/);
  });

  test('events -f and logs -f follow live', async () => {
    const since = new Date().toISOString();
    const follow = (args: string[], until: (line: string) => boolean) => {
      const child = spawn(node, [bin, ...args], { cwd: dir, env: { ...process.env, NO_COLOR: '1' } });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const seen = new Promise<string>((resolve, reject) => {
        let buffer = '';
        child.stdout.on('data', (c) => {
          buffer += c;
          const lines = buffer.split('\n');
          buffer = lines.pop() ?? '';
          const hit = lines.find(until);
          if (hit !== undefined) resolve(hit);
        });
        child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code} first`)));
      });
      return { child, exited, seen };
    };
    const events = follow(['events', '-f', '--json', '--since', since, '--path', `/${name}/worker`], (l) => {
      const r = JSON.parse(l) as { type: string; path: string };
      return r.type === 'started';
    });
    const logs = follow(['logs', '-f', '--since', since, `/${name}/worker`], (l) =>
      / out worker: tick \d+/.test(l),
    );
    const r = await captree(['restart', `/${name}/worker`], dir);
    assert.equal(r.code, 0, r.stderr);
    const started = JSON.parse(await events.seen) as { path: string; ts: number };
    assert.equal(started.path, `/${name}/worker`);
    assert.ok(started.ts >= Date.parse(since));
    assert.match(await logs.seen, /^\S+Z out worker: tick \d+/);
    events.child.kill('SIGINT');
    logs.child.kill('SIGINT');
    assert.equal(await events.exited, 0);
    assert.equal(await logs.exited, 0);
    remember(await psJson(dir));
  });

  test('down: every process gone, the daemon gone, no cgroup left', async () => {
    const entries = await psJson(dir);
    remember(entries);
    assert.ok(cgroupsNamed(name).length > 0, 'the tree has cgroups while it runs');
    const r = await captree(['down'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `captree: /${name} stopped (daemon pid ${daemonPid} exited)\n`);
    assert.deepEqual(alive([daemonPid!, ...seen]), []);
    assert.deepEqual(cgroupsNamed(name), []);
    const again = await captree(['ps'], dir);
    assert.equal(again.code, 1);
    const journal = await captree(['events', '--json', '--since', '1h'], dir);
    assert.equal(journal.code, 0, 'events reads the journal after the tree stopped');
    assert.equal(JSON.parse(journal.stdout).at(-1).type, 'stopped');
  });
});

describe('up in the foreground', () => {
  let dir: string;
  let name: string;
  let pid: number | undefined;

  before(async () => {
    ({ dir, name } = await demoCopy());
  });
  after(() => {
    if (pid !== undefined) killAll([pid]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('plain event lines when piped; SIGTERM stops the tree in order and exits 0', async () => {
    const child = spawn(node, [bin, 'up'], { cwd: dir, env: { ...process.env, NO_COLOR: '1' } });
    pid = child.pid;
    let out = '';
    let err = '';
    child.stderr.on('data', (c) => {
      err += c;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (c) => {
        out += c;
        if (out.includes(' is up; control socket')) resolve();
      });
      child.on('exit', () => reject(new Error(`up exited early: ${out}${err}`)));
    });
    const entries = await psJson(dir);
    const pids = entries.flatMap((e) => (e.pid === null ? [] : [e.pid]));
    assert.equal(pids.length, 3);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, err);
    assert.deepEqual(alive(pids), []);
    assert.deepEqual(cgroupsNamed(name), []);
    const lines = out.split('\n');
    assert.ok(
      lines.some((l) => new RegExp(`^\\S+Z /${name}/db started pid \\d+$`).test(l)),
      out,
    );
    const stopping = lines.filter((l) => / stopping$/.test(l)).map((l) => l.split(' ')[1]);
    assert.deepEqual(stopping, [`/${name}`, `/${name}/worker`, `/${name}/api`, `/${name}/db`]);
    assert.match(out, new RegExp(`captree: /${name} stopped\n$`));
  });
});
