/**
 * The daemon in-process with a tree of tasks: state dir ownership, the control API's routes and
 * errors, the journal, live events and logs, and an orderly `down`.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  ApiResponseError,
  ControlClient,
  type Daemon,
  eachEvent,
  eachLine,
  type JournalRecord,
  type PsEntry,
  StateDirBusyError,
  startDaemon,
} from '../../src/daemon/index.ts';
import { type FakeTree, fakeManifest, fakeTree } from './fake-tree.ts';

/** Resolves with the first SSE record that satisfies `pred`, then closes the stream. */
function nextEvent(res: IncomingMessage, pred: (r: JournalRecord) => boolean): Promise<JournalRecord> {
  return new Promise((resolve, reject) => {
    eachEvent(res, (data) => {
      const r = JSON.parse(data) as JournalRecord;
      if (pred(r)) {
        resolve(r);
        res.destroy();
      }
    }).then(() => reject(new Error('stream ended first')), reject);
  });
}

describe('daemon with a tree of tasks', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-daemon-'));
  const name = 't';
  let tree: FakeTree;
  let daemon: Daemon;
  let client: ControlClient;

  before(async () => {
    tree = fakeTree(name, join(dir, 'logs'));
    daemon = await startDaemon({
      manifest: fakeManifest(name, dir),
      stateDir: join(dir, '.captree'),
      build: async () => tree,
    });
    await daemon.started;
    client = new ControlClient(daemon.paths.socket);
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
  });

  test('state dir holds the pid file, socket and journal', () => {
    assert.equal(readFileSync(daemon.paths.pidFile, 'utf8').trim(), String(process.pid));
    assert.ok(existsSync(daemon.paths.socket));
    assert.ok(existsSync(daemon.paths.journal));
  });

  test('a second daemon on the same state dir is refused', async () => {
    await assert.rejects(
      startDaemon({ manifest: fakeManifest(name, dir), stateDir: daemon.paths.dir, build: async () => tree }),
      StateDirBusyError,
    );
  });

  test('GET /v1/daemon and /v1/tree', async () => {
    const info = await client.json<{ pid: number; name: string; state: string }>('/v1/daemon');
    assert.equal(info.pid, process.pid);
    assert.equal(info.name, name);
    assert.equal(info.state, 'ready');
    const entries = await client.json<PsEntry[]>('/v1/tree');
    assert.deepEqual(
      entries.map((e) => [e.path, e.kind, e.depth]),
      [
        ['/t', 'node', 0],
        ['/t/a', 'task', 1],
        ['/t/b', 'task', 1],
        ['/t/c', 'task', 1],
        ['/t/sub', 'node', 1],
        ['/t/sub/x', 'task', 2],
      ],
    );
    const a = entries[1]!;
    assert.equal(a.state, 'running');
    assert.equal(a.ready, true);
    assert.equal(a.pid, null);
    assert.equal(a.restarts, 0);
    assert.equal(typeof a.uptimeMs, 'number');
    assert.deepEqual(a.grant, { cpu: 0.25, memory: 64 * 1024 * 1024, pids: null });
    assert.deepEqual(a.used, { cpu: null, memory: 1024 * 1024 });
  });

  test('restart under rest_for_one restarts the child and those after it, not those before', async () => {
    const since = Date.now();
    const res = await client.json<{ child: PsEntry }>('/v1/children/t/b/restart', { method: 'POST' });
    assert.equal(res.child.path, '/t/b');
    assert.equal(res.child.state, 'running');
    const events = await client.json<JournalRecord[]>(`/v1/events?since=${since}`);
    const stopped = events.filter((e) => e.type === 'stopping').map((e) => e.path);
    const started = events.filter((e) => e.type === 'starting').map((e) => e.path);
    assert.ok(stopped.includes('/t/b') && stopped.includes('/t/c') && stopped.includes('/t/sub'));
    assert.ok(!stopped.includes('/t/a'));
    assert.deepEqual(started.slice(0, 3), ['/t/b', '/t/c', '/t/sub']);
  });

  test('stop holds a child stopped; start brings it back; nested paths work', async () => {
    await client.json('/v1/children/t/sub/x/stop', { method: 'POST' });
    let entries = await client.json<PsEntry[]>('/v1/tree');
    assert.equal(entries.find((e) => e.path === '/t/sub/x')?.state, 'stopped');
    assert.equal(entries.find((e) => e.path === '/t/sub/x')?.uptimeMs, null);
    await client.json('/v1/children/t/sub/x/start', { method: 'POST' });
    entries = await client.json<PsEntry[]>('/v1/tree');
    assert.equal(entries.find((e) => e.path === '/t/sub/x')?.state, 'running');
    await assert.rejects(client.json('/v1/children/t/sub/x/start', { method: 'POST' }), (err: unknown) => {
      assert.ok(err instanceof ApiResponseError);
      assert.equal(err.status, 409);
      assert.equal(err.code, 'running');
      return true;
    });
  });

  test('errors are JSON with the right status', async () => {
    const cases: [string, string, number, string][] = [
      ['POST', '/v1/children/t/nope/restart', 404, 'not_found'],
      ['POST', '/v1/children/t/restart', 409, 'root'],
      ['GET', '/v1/children/t/a/restart', 405, 'method_not_allowed'],
      ['GET', '/v1/events?since=yesterday', 400, 'bad_since'],
      ['GET', '/v1/nothing', 404, 'unknown_route'],
      ['GET', '/v1/logs/t/sub', 409, 'no_logs'],
      ['GET', '/v1/logs/t/zzz', 404, 'not_found'],
      ['GET', '/v1/logs/t/a?limit=x', 400, 'bad_limit'],
    ];
    for (const [method, path, status, code] of cases) {
      await assert.rejects(client.json(path, { method }), (err: unknown) => {
        assert.ok(err instanceof ApiResponseError, `${method} ${path}`);
        assert.equal(err.status, status, `${method} ${path}`);
        assert.equal(err.code, code, `${method} ${path}`);
        return true;
      });
    }
  });

  test('events filter by path prefix, and the journal is JSON lines with wall-clock time', async () => {
    const events = await client.json<JournalRecord[]>('/v1/events?path=/t/sub');
    assert.ok(events.length > 0);
    assert.ok(events.every((e) => e.path === '/t/sub' || e.path.startsWith('/t/sub/')));
    const lines = readFileSync(daemon.paths.journal, 'utf8').trim().split('\n');
    const first = JSON.parse(lines[0]!) as JournalRecord;
    assert.equal(first.path, '/t');
    assert.equal(first.type, 'starting');
    assert.ok(Math.abs(first.ts - Date.now()) < 60_000);
    assert.equal(new Date(first.ts).toISOString(), first.time);
  });

  test('live events over SSE', async () => {
    const res = await client.open('/v1/events?path=/t/c', { headers: { accept: 'text/event-stream' } });
    assert.match(String(res.headers['content-type']), /text\/event-stream/);
    const seen = nextEvent(res, (r) => r.type === 'started' && r.path === '/t/c');
    await client.json('/v1/children/t/c/restart', { method: 'POST' });
    const r = await seen;
    assert.equal(r.path, '/t/c');
  });

  test('logs: history with since and limit, then follow', async () => {
    await tree.log('/t/a', 'one');
    await tree.log('/t/a', 'two');
    await tree.log('/t/a', 'three');
    const text = await client.text('/v1/logs/t/a');
    assert.match(text, /out one\n.*out two\n.*out three\n$/s);
    const last = await client.text('/v1/logs/t/a?limit=1');
    assert.equal(last.trim().split('\n').length, 1);
    assert.match(last, /out three/);
    const future = await client.text(`/v1/logs/t/a?since=${Date.now() + 60_000}`);
    assert.equal(future, '');
    const res = await client.open('/v1/logs/t/a?follow=1', { headers: { accept: 'application/x-ndjson' } });
    const got = new Promise<string>((resolve) => {
      eachLine(res, (line) => {
        const r = JSON.parse(line) as { text: string };
        if (r.text === 'four') {
          resolve(r.text);
          res.destroy();
        }
      });
    });
    await tree.log('/t/a', 'four');
    assert.equal(await got, 'four');
  });

  test('down stops the tree in order, answers, then cleans up the state dir', async () => {
    const res = await client.open('/v1/down', { method: 'POST' });
    assert.equal(res.statusCode, 202);
    const lines: string[] = [];
    await eachLine(res, (l) => lines.push(l));
    assert.deepEqual(
      lines.map((l) => JSON.parse(l).state),
      ['stopping', 'stopped'],
    );
    assert.equal(await daemon.finished, 0);
    assert.ok(tree.closed, 'runtime closed');
    assert.equal(tree.supervisor.state, 'stopped');
    assert.ok(!existsSync(daemon.paths.socket));
    assert.ok(!existsSync(daemon.paths.pidFile));
    const journal = readFileSync(daemon.paths.journal, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const stops = journal.filter((r) => r.type === 'stopping').map((r) => r.path);
    // Reverse start order: the nested node (and its child) first, the first child last.
    assert.deepEqual(stops.slice(-6), ['/t', '/t/sub', '/t/sub/x', '/t/c', '/t/b', '/t/a']);
    assert.equal(journal.at(-1).type, 'stopped');
    assert.equal(journal.at(-1).path, '/t');
  });
});
