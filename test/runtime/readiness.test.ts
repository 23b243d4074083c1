/**
 * Readiness and liveness against real sockets on 127.0.0.1 and real commands: servers that start
 * late, checks that fail with precise reasons, cancellation, the watchdog.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  LivenessMonitor,
  LogMatcher,
  ReadinessError,
  tcpCheck,
  Watchdog,
  waitExec,
  waitHttp,
  waitTcp,
} from '../../src/runtime/readiness/index.ts';
import { uniqueName } from '../support/host.ts';
import { freePort } from '../support/net.ts';

function listen(server: net.Server, port: number): Promise<void> {
  return new Promise((r) => server.listen(port, '127.0.0.1', r));
}

function close(server: net.Server): Promise<void> {
  return new Promise((r) => {
    if ('closeAllConnections' in server) (server as http.Server).closeAllConnections();
    server.close(() => r());
  });
}

describe('tcp readiness', () => {
  test('resolves once a server that starts late is listening', async (t) => {
    const port = await freePort();
    const server = net.createServer((c) => c.end());
    // Part of the scenario: the service comes up 150 ms after we start probing.
    const late = delay(150).then(() => listen(server, port));
    const { attempts, elapsedMs } = await waitTcp({ port }, { timeoutMs: 3000, intervalMs: 20 });
    t.diagnostic(`ready after ${attempts} attempts, ${elapsedMs.toFixed(0)} ms`);
    assert.ok(attempts > 1);
    await late;
    await close(server);
  });

  test('rejects on timeout naming the target and the last error', async () => {
    const port = await freePort();
    await assert.rejects(waitTcp({ port }, { timeoutMs: 200, intervalMs: 20 }), (e: unknown) => {
      assert.ok(e instanceof ReadinessError);
      assert.equal(e.kind, 'timeout');
      assert.match(
        e.message,
        new RegExp(
          `^tcp 127\\.0\\.0\\.1:${port} not ready after 200 ms \\(\\d+ attempts, last: ECONNREFUSED\\)$`,
        ),
      );
      return true;
    });
  });

  test('an abort rejects with the signal reason', async () => {
    const port = await freePort();
    const ac = new AbortController();
    const p = waitTcp({ port }, { timeoutMs: 5000, intervalMs: 20, signal: ac.signal });
    ac.abort(new Error('child exited with code 1'));
    await assert.rejects(p, /child exited with code 1/);
  });
});

describe('http readiness', () => {
  test('waits through refusals and 503s for a 2xx', async () => {
    const port = await freePort();
    let hits = 0;
    const server = http.createServer((_req, res) => {
      hits++;
      res.statusCode = hits < 3 ? 503 : 204;
      res.end(hits < 3 ? 'warming up' : undefined);
    });
    const late = delay(100).then(() => listen(server, port));
    const { attempts } = await waitHttp(
      { url: `http://127.0.0.1:${port}/health` },
      { timeoutMs: 3000, intervalMs: 20 },
    );
    assert.equal(hits, 3);
    assert.ok(attempts >= 3);
    await late;
    await close(server);
  });

  test('rejects with the last status', async (t) => {
    const port = await freePort();
    const server = http.createServer((_req, res) => {
      res.statusCode = 500;
      res.end('boom');
    });
    await listen(server, port);
    t.after(() => close(server));
    await assert.rejects(
      waitHttp({ url: `http://127.0.0.1:${port}/` }, { timeoutMs: 200, intervalMs: 20 }),
      /not ready after 200 ms \(\d+ attempts, last: HTTP 500 Internal Server Error\)/,
    );
  });

  test('a server that never answers fails the attempt by its timeout', async (t) => {
    const port = await freePort();
    const server = http.createServer(() => {});
    await listen(server, port);
    t.after(() => close(server));
    await assert.rejects(
      waitHttp(
        { url: `http://127.0.0.1:${port}/` },
        { timeoutMs: 300, attemptTimeoutMs: 100, intervalMs: 10 },
      ),
      /last: timed out after 100 ms/,
    );
  });
});

describe('exec readiness', () => {
  test('retries a command until it exits 0', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${uniqueName('exec')}-`));
    const counter = path.join(dir, 'n');
    const { attempts } = await waitExec(
      {
        command: [
          'sh',
          '-c',
          'n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; [ $n -ge 3 ]',
          counter,
        ],
      },
      { timeoutMs: 3000, intervalMs: 10 },
    );
    assert.equal(attempts, 3);
    fs.rmSync(dir, { recursive: true });
  });

  test('rejects with the exit code and the last stderr line', async () => {
    await assert.rejects(
      waitExec(
        { command: ['sh', '-c', 'echo "db: connection refused" >&2; exit 2'] },
        { timeoutMs: 150, intervalMs: 20 },
      ),
      /^ReadinessError: exec sh -c .* not ready after 150 ms \(\d+ attempts, last: exit 2: db: connection refused\)$/,
    );
    await assert.rejects(
      waitExec({ command: ['/nonexistent/probe'] }, { timeoutMs: 50, intervalMs: 20 }),
      /last: cannot run \/nonexistent\/probe: ENOENT/,
    );
  });

  test('a hung command is killed with its process group at the attempt timeout', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${uniqueName('exec')}-`));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const pidFile = path.join(dir, 'pid');
    await assert.rejects(
      waitExec(
        { command: ['sh', '-c', 'sleep 300 & echo $! > "$0"; wait', pidFile] },
        { timeoutMs: 1000, attemptTimeoutMs: 1000 },
      ),
      /\(1 attempt, last: timed out after \d+ ms\)/,
    );
    const grandchild = Number(fs.readFileSync(pidFile, 'utf8'));
    // SIGKILL was sent to the group before the rejection; the sleep is gone or a zombie once
    // the kernel has delivered it (it may still show R for a moment: bounded polling of /proc,
    // as it is not our child; a sleep left out of the group would stay S for 300 s).
    const stateOf = () => {
      try {
        const stat = fs.readFileSync(`/proc/${grandchild}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2)[0]!;
      } catch {
        return 'gone';
      }
    };
    let state = stateOf();
    for (let i = 0; i < 100 && state !== 'gone' && state !== 'Z'; i++) {
      await new Promise((r) => setTimeout(r, 10));
      state = stateOf();
    }
    assert.ok(state === 'gone' || state === 'Z', `grandchild state ${state}`);
  });
});

describe('log readiness', () => {
  test('resolves on the first matching line', async () => {
    const m = new LogMatcher(/listening on port (\d+)/g, { timeoutMs: 1000 });
    assert.equal(m.feed('starting'), false);
    assert.equal(m.feed('listening on port 8080'), true);
    assert.equal(m.feed('listening on port 9090'), false);
    const { match } = await m.ready;
    assert.equal(match[1], '8080');
  });

  test('rejects on timeout with what it saw, and when the output ends first', async () => {
    const m = new LogMatcher('ready', { timeoutMs: 50 });
    m.feed('loading config');
    await assert.rejects(
      m.ready,
      /no log line matched \/ready\/ within 50 ms \(1 lines seen, last: "loading config"\)/,
    );
    const ended = new LogMatcher('ready', { timeoutMs: 5000 });
    ended.feed('fatal: bad config');
    ended.end('child exited with code 78');
    await assert.rejects(
      ended.ready,
      (e: unknown) => e instanceof ReadinessError && e.kind === 'failed' && /code 78/.test(e.message),
    );
  });

  test('abort rejects with the reason', async () => {
    const ac = new AbortController();
    const m = new LogMatcher('ready', { timeoutMs: 5000, signal: ac.signal });
    ac.abort(new Error('stopping'));
    await assert.rejects(m.ready, /stopping/);
  });
});

describe('liveness', () => {
  test('reports unhealthy after N consecutive failures, once, and recovery', async () => {
    const port = await freePort();
    const server = net.createServer((c) => c.end());
    await listen(server, port);
    const failures: number[] = [];
    let unhealthy!: (v: [string, number]) => void;
    const becameUnhealthy = new Promise<[string, number]>((r) => (unhealthy = r));
    let unhealthyCalls = 0;
    let recovered!: () => void;
    const didRecover = new Promise<void>((r) => (recovered = r));
    const ac = new AbortController();
    const mon = new LivenessMonitor({
      check: tcpCheck({ port }, 200),
      intervalMs: 15,
      initialDelayMs: 0,
      failureThreshold: 3,
      onFailure: (_r, n) => failures.push(n),
      onUnhealthy: (reason, n) => {
        unhealthyCalls++;
        unhealthy([reason, n]);
      },
      onRecovered: () => recovered(),
      signal: ac.signal,
    });
    await delay(60); // a few healthy periods
    assert.equal(mon.healthy, true);
    await close(server);
    const [reason, n] = await becameUnhealthy;
    assert.equal(reason, 'ECONNREFUSED');
    assert.equal(n, 3);
    assert.deepEqual(failures.slice(0, 3), [1, 2, 3]);
    const again = net.createServer((c) => c.end());
    await listen(again, port);
    await didRecover;
    assert.equal(unhealthyCalls, 1);
    assert.equal(mon.healthy, true);
    ac.abort();
    await close(again);
  });
});

describe('watchdog', () => {
  test('kicks within the interval keep it quiet; silence reports one miss; a kick re-arms', async () => {
    let missed!: (ms: number) => void;
    let misses = 0;
    let nextMiss = new Promise<number>((r) => (missed = r));
    const wd = new Watchdog({
      intervalMs: 80,
      onMiss: (ms) => {
        misses++;
        missed(ms);
      },
    });
    for (let i = 0; i < 6; i++) {
      await delay(30);
      wd.kick();
    }
    assert.equal(misses, 0);
    const silence = await nextMiss;
    assert.ok(silence >= 79, `silence ${silence}`);
    assert.equal(wd.misses, 1);
    nextMiss = new Promise<number>((r) => (missed = r));
    wd.kick();
    await nextMiss;
    assert.equal(misses, 2);
    wd.stop();
  });
});
