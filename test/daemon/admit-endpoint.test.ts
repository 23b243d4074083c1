/**
 * The admission endpoint against a real tree (launcher, cgroups, processes) in an in-process
 * daemon, through the HTTP API on its socket: concurrency and exact budget sums, idempotency,
 * precise rejections that leave the tree unchanged, tokens and their scope, and revocation
 * returning the budget.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { snapshot as capsSnapshot, childrenOf, grantOf, remainingOf } from '../../src/caps/index.ts';
import type { RunningTree } from '../../src/daemon/build-tree.ts';
import { type Daemon, type JournalRecord, type PsEntry, startDaemon } from '../../src/daemon/index.ts';
import { loadManifest } from '../../src/manifest/index.ts';
import { apiCall } from '../support/daemon.ts';

interface ApiReason {
  path: string;
  field: string;
  message: string;
}

/** The parts of an answer the tests read (201, or an error with its reasons). */
interface Body {
  path: string;
  grant: { cpu: number | null; memory: number | null; pids: number | null };
  returned: { cpu: number; memory: number; pids: number };
  error: { code: string; message: string };
  reasons?: ApiReason[];
}

interface Reply {
  status: number;
  body: Body;
}

describe('admission endpoint (in-process daemon, real processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-admit-'));
  const name = `adm${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  let daemon: Daemon;
  /** The name of one child admitted by the burst. */
  let taken = '';
  const records: JournalRecord[] = [];

  const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    apiCall(daemon.paths.socket, method, path, body, headers) as Promise<Reply>;
  const post = (node: string, requestId: string, spec: unknown, token?: string) =>
    call(
      'POST',
      `/v1/nodes/${name}/${node}/children`,
      { requestId, spec },
      token ? { authorization: `Bearer ${token}` } : {},
    );
  const ps = async (): Promise<PsEntry[]> => (await call('GET', '/v1/tree')).body as unknown as PsEntry[];
  const caps = () => (daemon.tree as unknown as RunningTree).caps;
  /** What ps and caps say, minus what changes by itself (uptime, usage). */
  const state = async () => ({
    ps: (await ps()).map((e) => [e.path, e.state, e.pid, e.grant]),
    caps: JSON.stringify(capsSnapshot(caps())),
  });

  before(async () => {
    writeFileSync(join(dir, 'dev.token'), 'dev-secret-token\n');
    writeFileSync(join(dir, 'prod.token'), 'prod-secret-token\n');
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}
requires: { cpu: 1.5, memory: 512Mi, pids: 1024 }
children:
  - name: pool
    strategy: dynamic
    requires: { cpu: 1.0, memory: 256Mi, pids: 400 }
    admission: {}
    children: []
  - name: site
    requires: { cpu: 0.4, memory: 128Mi, pids: 200, net: none }
    children:
      - name: dev
        requires: { cpu: 0.2, pids: 50 }
        admission:
          maxChildren: 2
          maxGrant: { cpu: 0.1, memory: 16Mi }
          template: { env: { FROM_TEMPLATE: 'yes' } }
          tokens: [{ name: dev, file: dev.token }]
        children: []
      - name: prod
        requires: { cpu: 0.1, pids: 50 }
        admission: { tokens: [{ name: prod, file: prod.token }] }
        children: []
  - name: fixed
    command: [sleep, infinity]
`,
    );
    const m = await loadManifest(join(dir, 'captree.yaml'));
    assert.ok(m.ok, m.ok ? '' : JSON.stringify(m.errors));
    daemon = await startDaemon({
      manifest: m.tree,
      stateDir: join(dir, '.captree'),
      onEvent: (r) => records.push(r),
    });
    await daemon.started;
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
  });

  const sleeper = (n: string, requires: Record<string, unknown> = {}) => ({
    name: n,
    command: ['sleep', 'infinity'],
    requires,
  });

  test('50 concurrent admissions into room for 20: exactly 20 run, 30 get the budget reason, sums exact', async () => {
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) => post('pool', `burst-${i}`, sleeper(`w${i}`, { cpu: 0.05 }))),
    );
    const ok = replies.filter((r) => r.status === 201);
    const no = replies.filter((r) => r.status !== 201);
    assert.equal(ok.length, 20);
    assert.equal(no.length, 30);
    for (const r of no) {
      assert.equal(r.status, 422);
      assert.equal(r.body.error.code, 'rejected');
      const reasons = r.body.reasons ?? [];
      assert.equal(reasons.length, 1);
      assert.equal(reasons[0]?.field, 'requires.cpu');
      assert.match(
        reasons[0]?.message ?? '',
        new RegExp(`requires cpu 0\\.05, /${name}/pool has 0\\.0 left of 1\\.0`),
      );
    }
    for (const r of ok) assert.deepEqual(r.body.grant, { cpu: 0.05, memory: null, pids: null });
    taken = String(ok[0]?.body.path).split('/').at(-1) ?? '';
    // The caps tree: 20 children of 0.05 each, nothing left, exactly.
    assert.equal(childrenOf(caps(), `/${name}/pool`)?.length, 20);
    assert.deepEqual(remainingOf(caps(), `/${name}/pool`), { cpu: 0, memory: 256 * 2 ** 20, pids: 400 });
    const pool = capsSnapshot(caps()).root.children.find((c) => c.path === `/${name}/pool`);
    assert.equal(pool?.childrenSum.cpu, 1000);
    // Every admitted child runs, with its own pid, and ps shows its grant.
    const entries = (await ps()).filter((e) => e.path.startsWith(`/${name}/pool/`));
    assert.equal(entries.length, 20);
    for (const e of entries) {
      assert.equal(e.state, 'running');
      assert.ok(e.pid !== null && e.pid > 0);
      assert.equal(e.grant.cpu, 0.05);
    }
    assert.equal(records.filter((r) => r.type === 'admitted').length, 20);
  });

  test('the same request id twice admits once and answers the same', async () => {
    const before = (await ps()).length;
    const spec = sleeper('once', {});
    const [a, b] = await Promise.all([
      post('site/dev', 'idem-1', spec, 'dev-secret-token'),
      post('site/dev', 'idem-1', spec, 'dev-secret-token'),
    ]);
    const c = await post('site/dev', 'idem-1', spec, 'dev-secret-token');
    assert.equal(a.status, 201);
    assert.deepEqual(b, a);
    assert.deepEqual(c, a);
    assert.equal((await ps()).length, before + 1);
    // The template was merged under the request.
    assert.equal(a.body.path, `/${name}/site/dev/once`);
    // The same id for another request is a conflict, not an admission.
    const d = await post('site/dev', 'idem-1', sleeper('other'), 'dev-secret-token');
    assert.equal(d.status, 409);
    assert.equal(d.body.error.code, 'request_id_reused');
    assert.equal((await ps()).length, before + 1);
  });

  test('bad input gets a precise error and leaves the tree unchanged', async () => {
    const start = await state();
    const cases: [string, Promise<Reply>, number, RegExp][] = [
      [
        'unknown field',
        post('site/dev', 'bad-1', { ...sleeper('b1'), comand: ['x'] }, 'dev-secret-token'),
        422,
        /b1 comand: unknown field; did you mean 'command'\?/,
      ],
      [
        'bad quantity',
        post('site/dev', 'bad-2', sleeper('b2', { memory: '12XB' }), 'dev-secret-token'),
        422,
        /b2 requires\.memory: must be a size/,
      ],
      [
        'over maxGrant',
        post('site/dev', 'bad-3', sleeper('b3', { cpu: 0.15 }), 'dev-secret-token'),
        422,
        /b3 requires\.cpu: requires cpu 0\.15, more than one request may reserve \(.*admission\.maxGrant\.cpu: 0\.1\)/,
      ],
      ['no token', post('site/dev', 'bad-4', sleeper('b4')), 403, /admits only holders of a token/],
      ['forged token', post('site/dev', 'bad-5', sleeper('b5'), 'forged'), 403, /does not admit into/],
      [
        'a dev token at prod',
        post('site/prod', 'bad-6', sleeper('b6'), 'dev-secret-token'),
        403,
        new RegExp(`does not admit into /${name}/site/prod`),
      ],
      [
        'a network the node lacks',
        post('site/dev', 'bad-7', sleeper('b7', { net: 'host' }), 'dev-secret-token'),
        422,
        /b7 requires\.net: requires net host, .*holds no network \(net: none\)/,
      ],
      [
        'a service nobody routes',
        post('site/dev', 'bad-8', sleeper('b8', { services: ['nope.sql'] }), 'dev-secret-token'),
        422,
        /b8 requires\.services\[0\]: .*nope\.sql/,
      ],
      [
        'permanent',
        post('pool', 'bad-9', { ...sleeper('b9'), restart: 'permanent' }),
        422,
        /b9 restart: an admitted child is/,
      ],
      ['closed node', post('site', 'bad-10', sleeper('b10')), 409, /not open to admission/],
      ['a process', post('fixed', 'bad-11', sleeper('b11')), 409, /is a process/],
      ['no such node', post('nowhere', 'bad-12', sleeper('b12')), 404, /no node/],
      ['a name taken', post('pool', 'bad-13', sleeper(taken)), 409, /already exists/],
      [
        'malformed request',
        call('POST', `/v1/nodes/${name}/pool/children`, { spec: sleeper('b14') }),
        400,
        /requestId/,
      ],
    ];
    for (const [what, pending, status, message] of cases) {
      const r = await pending;
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
      const text = r.body.reasons
        ? r.body.reasons.map((x: ApiReason) => `${x.path} ${x.field}: ${x.message}`).join('\n')
        : r.body.error.message;
      assert.match(text, message, what);
    }
    // Every reason at once: over maxGrant, over the node's budget, a network the node lacks.
    const both = await post(
      'site/dev',
      'bad-15',
      sleeper('b15', { cpu: 0.5, net: 'host' }),
      'dev-secret-token',
    );
    assert.equal(both.status, 422);
    assert.deepEqual(
      both.body.reasons?.map((x: ApiReason) => [x.field, x.message.split(',')[0]]),
      [
        ['requires.cpu', 'requires cpu 0.5'],
        ['requires.cpu', 'requires cpu 0.5'],
        ['requires.net', 'requires net host'],
      ],
    );
    assert.match(both.body.reasons?.[1]?.message ?? '', /has 0\.2 left of 0\.2|left/);
    assert.deepEqual(await state(), start);
  });

  test('maxChildren counts admitted children', async () => {
    // /site/dev has `once` from the idempotency test; room for one more.
    const a = await post('site/dev', 'max-1', sleeper('m1'), 'dev-secret-token');
    assert.equal(a.status, 201, JSON.stringify(a.body));
    const b = await post('site/dev', 'max-2', sleeper('m2'), 'dev-secret-token');
    assert.equal(b.status, 409);
    assert.equal(b.body.error.code, 'max_children');
    // A prod token opens prod.
    const c = await post('site/prod', 'prod-1', sleeper('p1', { cpu: 0.1 }), 'prod-secret-token');
    assert.equal(c.status, 201, JSON.stringify(c.body));
  });

  test('revoke stops the child and returns its budget: the next admission that needs it succeeds', async () => {
    const full = await post('pool', 'rev-0', sleeper('late', { cpu: 0.05 }));
    assert.equal(full.status, 422);
    const pid = (await ps()).find((e) => e.path === `/${name}/pool/${taken}`)?.pid;
    assert.ok(pid);
    const r = await call('DELETE', `/v1/children/${name}/pool/${taken}`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.returned, { cpu: 0.05, memory: 0, pids: 0 });
    assert.equal(grantOf(caps(), `/${name}/pool/${taken}`), undefined);
    assert.equal(
      (await ps()).find((e) => e.path === `/${name}/pool/${taken}`),
      undefined,
    );
    assert.throws(() => process.kill(pid, 0));
    const again = await post('pool', 'rev-1', sleeper('late', { cpu: 0.05 }));
    assert.equal(again.status, 201, JSON.stringify(again.body));
    // A manifest child is not revoked; an unknown path is 404.
    assert.equal((await call('DELETE', `/v1/children/${name}/fixed`)).status, 409);
    assert.equal((await call('DELETE', `/v1/children/${name}/pool/nobody`)).status, 404);
    const revoked = records.filter((x) => x.type === 'revoked');
    assert.deepEqual(
      revoked.map((x) => [x.path, (x as { why: string }).why]),
      [[`/${name}/pool/${taken}`, 'revoked']],
    );
  });

  test('a temporary child that exits gives its budget back', async () => {
    const r = await post('pool', 'exit-1', { name: 'brief', command: ['sleep', '0.3'] });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const deadline = Date.now() + 10_000;
    // The exit is an event of the engine; wait for its journal record.
    while (!records.some((x) => x.type === 'revoked' && x.path === `/${name}/pool/brief`)) {
      if (Date.now() > deadline) throw new Error('no revoked record for a temporary child that exited');
      await new Promise<void>((resolve) => {
        const unsubscribe = daemon.journal.subscribe(() => {
          unsubscribe();
          resolve();
        });
        setTimeout(resolve, 200);
      });
    }
    assert.equal(grantOf(caps(), `/${name}/pool/brief`), undefined);
  });
});
