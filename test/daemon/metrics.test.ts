/**
 * `GET /metrics` and `/v1/stats` on a real tree (in-process daemon, real cgroups): the names and
 * units of the issue, a busy child throttled at its quota, a `kill -9` counted as a restart with
 * its reason and in the root's intensity fill, admissions counted, bad input answered 4xx with a
 * reason, and the same routes on TCP behind the admin token, the dashboard's login cookie opening
 * reads only.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Daemon, type JournalRecord, startDaemon } from '../../src/daemon/index.ts';
import type { StatsReply } from '../../src/daemon/metrics.ts';
import { loadManifest } from '../../src/manifest/index.ts';

const ADMIN = 'metrics-admin-token-0123456789';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** One sample's value from a text exposition, or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      return Number(line.split(' ').at(-1));
  }
  return undefined;
}

describe('metrics (in-process daemon on the real runtime)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-metrics-'));
  const name = `met${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const root = `/${name}`;
  let daemon: Daemon;
  let tcp = '';
  const records: JournalRecord[] = [];
  const waiters: [(r: JournalRecord) => boolean, (r: JournalRecord) => void][] = [];
  const next = (match: (r: JournalRecord) => boolean) =>
    new Promise<JournalRecord>((resolve) => waiters.push([match, resolve]));

  const call = (
    method: string,
    path: string,
    opts: { socket?: boolean; headers?: Record<string, string>; body?: unknown } = {},
  ) =>
    new Promise<Reply>((done, reject) => {
      const target = new URL(tcp || 'http://127.0.0.1:1');
      const req = http.request(
        {
          ...(opts.socket
            ? { socketPath: daemon.paths.socket }
            : { host: target.hostname, port: Number(target.port) }),
          path,
          method,
          agent: false,
          headers: { ...(opts.body ? { 'content-type': 'application/json' } : {}), ...opts.headers },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => done({ status: res.statusCode ?? 0, headers: res.headers, text }));
        },
      );
      req.on('error', reject);
      req.end(opts.body === undefined ? undefined : JSON.stringify(opts.body));
    });
  const scrape = async () => {
    const r = await call('GET', '/metrics', { socket: true });
    assert.equal(r.status, 200, r.text);
    return r.text;
  };

  before(async () => {
    writeFileSync(join(dir, 'jobs.token'), 'jobs-node-token\n');
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}
intensity: 4
period: 60s
requires: { cpu: 1.0, memory: 256Mi, pids: 256 }
children:
  - name: spin
    command: [sh, -c, 'while :; do :; done']
    requires: { cpu: 0.1, memory: 32Mi, pids: 8 }
  - name: idle
    command: [sleep, infinity]
    requires: { memory: 16Mi }
  - name: jobs
    strategy: dynamic
    requires: { cpu: 0.1, memory: 32Mi, pids: 16 }
    admission: { tokens: [{ name: jobs, file: jobs.token }], maxGrant: { cpu: 0.05 } }
    children: []
`,
    );
    const m = await loadManifest(join(dir, 'captree.yaml'));
    assert.ok(m.ok, m.ok ? '' : JSON.stringify(m.errors));
    daemon = await startDaemon({
      manifest: m.tree,
      stateDir: join(dir, '.captree'),
      tcp: { host: '127.0.0.1', port: 0, token: ADMIN },
      onEvent: (r) => {
        records.push(r);
        for (const w of waiters.splice(0)) {
          if (w[0](r)) w[1](r);
          else waiters.push(w);
        }
      },
    });
    await daemon.started;
    tcp = daemon.info().tcp ?? '';
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
  });

  test('the families of the issue, in base units, with path labels, in the text format', async () => {
    const r = await call('GET', '/metrics', { socket: true });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const text = r.text;
    for (const family of [
      'captree_up',
      'captree_cpu_grant_cores',
      'captree_cpu_seconds_total',
      'captree_cpu_throttled_seconds_total',
      'captree_memory_grant_bytes',
      'captree_memory_bytes',
      'captree_oom_kills_total',
      'captree_pids_grant',
      'captree_pids',
      'captree_restarts_total',
      'captree_intensity_used_ratio',
      'captree_backoff_seconds',
      'captree_admissions_total',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${family} (counter|gauge)$`, 'm'), family);
    }
    assert.equal(sample(text, 'captree_cpu_grant_cores', { path: `${root}/spin` }), 0.1);
    assert.equal(sample(text, 'captree_memory_grant_bytes', { path: `${root}/spin` }), 32 * 1024 * 1024);
    assert.equal(sample(text, 'captree_pids_grant', { path: `${root}/spin` }), 8);
    // `idle` reserves no cpu: it shares the root's remainder, so there is no grant series.
    assert.equal(sample(text, 'captree_cpu_grant_cores', { path: `${root}/idle` }), undefined);
    assert.equal(sample(text, 'captree_up', { path: `${root}/idle`, state: 'running' }), 1);
    assert.equal(sample(text, 'captree_up', { path: root, kind: 'node', state: 'ready' }), 1);
    assert.equal(sample(text, 'captree_oom_kills_total', { path: `${root}/spin` }), 0);
    assert.ok((sample(text, 'captree_pids', { path: `${root}/idle` }) ?? 0) >= 1);
    assert.ok((sample(text, 'captree_memory_bytes', { path: `${root}/idle` }) ?? 0) > 0);
    assert.equal(sample(text, 'captree_intensity_used_ratio', { path: root }), 0);
    // Every sample line is NAME{labels} VALUE with a number.
    for (const line of text.split('\n').filter((l) => l !== '' && !l.startsWith('#')))
      assert.match(line, /^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+|NaN|\+Inf)$/, line);
  });

  test('a busy child at its 0.1-core quota: throttled time grows, cpu time stays under the quota', async () => {
    const first = await scrape();
    const cpu0 = sample(first, 'captree_cpu_seconds_total', { path: `${root}/spin` }) ?? 0;
    const t0 = performance.now();
    let throttled = 0;
    let text = first;
    // No event says "throttled": scrape until the kernel has counted some (bounded).
    for (let i = 0; i < 50 && throttled === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      text = await scrape();
      throttled = sample(text, 'captree_cpu_throttled_seconds_total', { path: `${root}/spin` }) ?? 0;
    }
    assert.ok(throttled > 0, 'the quota throttled the busy loop');
    const cpu1 = sample(text, 'captree_cpu_seconds_total', { path: `${root}/spin` }) ?? 0;
    const elapsed = (performance.now() - t0) / 1000;
    assert.ok(cpu1 > cpu0, 'cpu time counted');
    // The quota is 10 ms per 100 ms period; one extra period of slack for the edges.
    assert.ok(cpu1 - cpu0 <= 0.1 * elapsed + 0.011, `${cpu1 - cpu0} s of cpu in ${elapsed} s`);
  });

  test('kill -9 of a child: a restart by signal, the root intensity at 1/4, JSON stats agree', async () => {
    const stats = JSON.parse(
      (await call('GET', `/v1/stats?path=${root}/idle`, { socket: true })).text,
    ) as StatsReply;
    assert.equal(stats.paths.length, 1);
    const pid = stats.paths[0]?.pid as number;
    assert.ok(pid > 0);
    const restarted = next((r) => r.type === 'started' && r.path === `${root}/idle`);
    process.kill(pid, 'SIGKILL');
    await restarted;
    const text = await scrape();
    assert.equal(sample(text, 'captree_restarts_total', { path: `${root}/idle`, reason: 'signal' }), 1);
    assert.equal(sample(text, 'captree_intensity_used_ratio', { path: root }), 0.25);
    assert.equal(sample(text, 'captree_backoff_seconds', { path: `${root}/idle` }), 0);
    const after = JSON.parse((await call('GET', '/v1/stats', { socket: true })).text) as StatsReply;
    const idle = after.paths.find((p) => p.path === `${root}/idle`);
    assert.deepEqual(idle?.restartsByReason, { signal: 1 });
    assert.notEqual(idle?.pid, pid);
    assert.deepEqual(after.paths.find((p) => p.path === root)?.intensity, {
      restarts: 1,
      intensity: 4,
      period: 60_000,
      ratio: 0.25,
    });
  });

  test('a window of /v1/stats: counts of the whole scope, rows cut after match and sort', async () => {
    const get = async (query: string) => {
      const r = await call('GET', `/v1/stats?${query}`, { socket: true });
      assert.equal(r.status, 200, r.text);
      return JSON.parse(r.text) as StatsReply;
    };
    const all = await get('');
    const first = await get('limit=2');
    assert.equal(first.total, all.total);
    assert.equal(first.up, all.up);
    assert.deepEqual(
      first.paths.map((p) => p.path),
      all.paths.slice(0, 2).map((p) => p.path),
    );
    assert.ok((first.paths[1]?.counters?.pids ?? 0) > 0, 'the window rows have their counters');
    const idle = await get('match=idle');
    assert.equal(idle.matched, 1);
    assert.deepEqual(
      idle.paths.map((p) => p.path),
      [`${root}/idle`],
    );
    const offset = await get('offset=1&limit=1');
    assert.equal(offset.paths[0]?.path, all.paths[1]?.path);
    // cpu use is measured between two reads; the busy child leads, clamped to its 0.1-core quota.
    // (Reads closer than 100 ms keep the last rate: poll until one is measured.)
    let busy = await get(`sort=cpu&match=${root}/&limit=1`);
    for (const deadline = Date.now() + 10_000; busy.paths[0]?.cores == null && Date.now() < deadline; )
      busy = await get(`sort=cpu&match=${root}/&limit=1`);
    assert.equal(busy.paths[0]?.path, `${root}/spin`);
    const cores = busy.paths[0]?.cores ?? -1;
    assert.ok(cores > 0 && cores <= 0.1, `spin uses ${cores} cores`);
    const ranked = (await get(`sort=cpu&match=${root}/`)).paths.map((p) => p.cores ?? -1);
    assert.deepEqual(
      ranked,
      [...ranked].sort((a, b) => b - a),
    );
    const byMemory = (await get('sort=memory')).paths.map((p) => p.counters?.memoryBytes ?? -1);
    assert.deepEqual(
      byMemory,
      [...byMemory].sort((a, b) => b - a),
    );
  });

  test('admissions are counted by node, result and reason; refusals are kept with their reason', async () => {
    const spec = (cpu: number) => ({
      name: `j${cpu * 100}`,
      command: ['sleep', 'infinity'],
      requires: { cpu },
    });
    const ok = await call('POST', `/v1/nodes/${name}/jobs/children`, {
      socket: true,
      headers: { authorization: 'Bearer jobs-node-token' },
      body: { requestId: 'r1', spec: spec(0.01) },
    });
    assert.equal(ok.status, 201, ok.text);
    const over = await call('POST', `/v1/nodes/${name}/jobs/children`, {
      socket: true,
      headers: { authorization: 'Bearer jobs-node-token' },
      body: { requestId: 'r2', spec: spec(0.5) },
    });
    assert.equal(over.status, 422, over.text);
    const text = await scrape();
    const node = `${root}/jobs`;
    assert.equal(sample(text, 'captree_admissions_total', { node, result: 'admitted', reason: 'ok' }), 1);
    assert.equal(
      sample(text, 'captree_admissions_total', { node, result: 'refused', reason: 'over_max_grant' }),
      1,
    );
    const adm = JSON.parse((await call('GET', '/v1/admissions', { socket: true })).text);
    assert.equal(adm.refusals.length, 1);
    assert.equal(adm.refusals[0].code, 'over_max_grant');
    assert.match(adm.refusals[0].message, /0\.5/);
  });

  test('bad input answers 4xx with a reason and changes nothing', async () => {
    const cases: [string, string, number, string][] = [
      ['GET', '/metrics?format=json', 400, 'bad_param'],
      ['GET', '/metrics?path=/nope/x', 404, 'not_found'],
      ['GET', '/metrics?path=/a/../b', 400, 'bad_path'],
      ['POST', '/metrics', 405, 'method_not_allowed'],
      ['GET', '/metrics?limit=3', 400, 'bad_param'],
      ['GET', '/v1/stats?top=3', 400, 'bad_param'],
      ['GET', '/v1/stats?limit=-1', 400, 'bad_param'],
      ['GET', '/v1/stats?offset=1.5', 400, 'bad_param'],
      ['GET', '/v1/stats?limit=', 400, 'bad_param'],
      ['GET', '/v1/stats?sort=name', 400, 'bad_param'],
      ['GET', '/v1/stats/x', 404, 'unknown_route'],
    ];
    for (const [method, path, status, code] of cases) {
      const r = await call(method, path, { socket: true });
      assert.equal(r.status, status, `${method} ${path}: ${r.text}`);
      assert.equal(JSON.parse(r.text).error.code, code, path);
      assert.ok(JSON.parse(r.text).error.message.length > 10);
    }
    const sub = await call('GET', `/metrics?path=${root}/spin`, { socket: true });
    assert.equal(sub.status, 200);
    assert.equal(sample(sub.text, 'captree_up', { path: `${root}/idle` }), undefined);
    assert.equal(sample(sub.text, 'captree_up', { path: `${root}/spin` }), 1);
  });

  test('on TCP: the admin token, 401 without one, 403 for an admission token or a wrong one', async () => {
    assert.equal((await call('GET', '/metrics')).status, 401);
    assert.equal((await call('GET', '/metrics', { headers: { authorization: 'Bearer nope' } })).status, 403);
    const scoped = await call('GET', '/metrics', { headers: { authorization: 'Bearer jobs-node-token' } });
    assert.equal(scoped.status, 403);
    assert.equal(JSON.parse(scoped.text).error.code, 'admin_only');
    const ok = await call('GET', '/metrics', { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(ok.status, 200);
    assert.ok(sample(ok.text, 'captree_up', { path: root }) === 1);
    // An admission token reads its own subtree's stats only.
    const mine = await call('GET', '/v1/stats', { headers: { authorization: 'Bearer jobs-node-token' } });
    const paths = (JSON.parse(mine.text) as StatsReply).paths.map((p) => p.path);
    assert.ok(paths.length >= 1 && paths.every((p) => p.startsWith(`${root}/jobs`)), paths.join());
  });

  test('dashboard login: ?token= sets a read-only cookie; the static files need no token', async () => {
    const page = await call('GET', '/ui/');
    assert.equal(page.status, 200);
    assert.match(page.text, /<script type="module"/);
    // Dot segments resolve before routing: `/package.json` is an API path, which wants a token.
    assert.equal((await call('GET', '/ui/../../package.json')).status, 401);
    assert.equal((await call('GET', '/ui/..%2f..%2fpackage.json')).status, 404);
    const bad = await call('GET', '/ui/?token=wrong');
    assert.equal(bad.status, 403);
    const login = await call('GET', `/ui/?token=${ADMIN}`);
    assert.equal(login.status, 303);
    assert.equal(login.headers.location, '/ui/');
    const cookie = String(login.headers['set-cookie']).split(';')[0] as string;
    assert.match(String(login.headers['set-cookie']), /HttpOnly; SameSite=Strict/);
    const tree = await call('GET', '/v1/tree', { headers: { cookie } });
    assert.equal(tree.status, 200);
    const down = await call('POST', '/v1/down', { headers: { cookie } });
    assert.equal(down.status, 403);
    assert.equal(JSON.parse(down.text).error.code, 'cookie_read_only');
    assert.equal(daemon.tree.supervisor.state, 'ready');
  });

  test('counter files are held open between scrapes and closed with the tree', async () => {
    await scrape();
    const held = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          const target = readlinkSync(`/proc/self/fd/${fd}`);
          return target.startsWith(`/sys/fs/cgroup/`) || target === '/proc/vmstat';
        } catch {
          return false;
        }
      }).length;
    assert.ok(held() > 0);
    await daemon.stop();
    await daemon.finished;
    assert.equal(held(), 0);
  });
});
