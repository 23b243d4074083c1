/**
 * The control API on TCP (`captree up --listen`): an in-process daemon on the real runtime,
 * listening on 127.0.0.1 only, reached by raw HTTP and by the `captree` bin with `--url`.
 * The admin token may do anything; a node's admission token admits, revokes and reads under its
 * node only; no token is a 401, any other token a 403; the unix socket is unchanged.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Daemon, type JournalRecord, type PsEntry, startDaemon } from '../../src/daemon/index.ts';
import { loadManifest } from '../../src/manifest/index.ts';

const repo = resolve(import.meta.dirname, '../..');
const node = join(repo, 'node_modules/.bin/node');
const bin = join(repo, 'src/cli/main.ts');

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  // biome-ignore lint/suspicious/noExplicitAny: test bodies are read loosely
  body: any;
}

const ADMIN = 'admin-token-0123456789abcdef';
const DEV = 'dev-secret-token';
const PROD = 'prod-secret-token';

describe('control API on TCP with tokens (in-process daemon, 127.0.0.1)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-tcp-'));
  const name = `tcp${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  let daemon: Daemon;
  let url = '';

  const call = (
    method: string,
    path: string,
    opts: { token?: string; authorization?: string; body?: unknown; socket?: boolean } = {},
  ) =>
    new Promise<Reply>((done, reject) => {
      const target = new URL(url);
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        accept: 'application/json',
      };
      if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
      if (opts.authorization !== undefined) headers.authorization = opts.authorization;
      const req = http.request(
        {
          ...(opts.socket
            ? { socketPath: daemon.paths.socket }
            : { host: target.hostname, port: Number(target.port) }),
          path,
          method,
          agent: false,
          headers,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => {
            let body: unknown = text;
            try {
              body = JSON.parse(text);
            } catch {
              // ndjson or text
            }
            done({ status: res.statusCode ?? 0, headers: res.headers, body });
          });
        },
      );
      req.on('error', reject);
      req.end(opts.body === undefined ? undefined : JSON.stringify(opts.body));
    });
  const sleeper = (n: string) => ({ name: n, command: ['sleep', 'infinity'] });
  const admitInto = (nodePath: string, id: string, child: string, token?: string) =>
    call('POST', `/v1/nodes/${name}/${nodePath}/children`, {
      token,
      body: { requestId: id, spec: sleeper(child) },
    });
  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
      execFile(
        node,
        [bin, ...args],
        { cwd: dir, env: { ...process.env, NO_COLOR: '1' }, timeout: 60_000 },
        (err, stdout, stderr) =>
          done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
    });

  before(async () => {
    writeFileSync(join(dir, 'admin.token'), `${ADMIN}\n`);
    writeFileSync(join(dir, 'dev.token'), `${DEV}\n`);
    writeFileSync(join(dir, 'prod.token'), `${PROD}\n`);
    writeFileSync(join(dir, 'wrong.token'), 'not-a-token-of-this-tree\n');
    writeFileSync(join(dir, 'job.yaml'), 'name: clijob\ncommand: [sleep, infinity]\n');
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 1024 }
children:
  - name: web
    command: [sleep, infinity]
  - name: site
    requires: { cpu: 0.4, memory: 128Mi, pids: 200 }
    children:
      - name: dev
        requires: { cpu: 0.2, pids: 50 }
        admission: { tokens: [{ name: dev, file: dev.token }] }
        children: []
      - name: prod
        requires: { cpu: 0.1, pids: 50 }
        admission: { tokens: [{ name: prod, file: prod.token }] }
        children: []
`,
    );
    const m = await loadManifest(join(dir, 'captree.yaml'));
    assert.ok(m.ok, m.ok ? '' : JSON.stringify(m.errors));
    daemon = await startDaemon({
      manifest: m.tree,
      stateDir: join(dir, '.captree'),
      tcp: { host: '127.0.0.1', port: 0, token: ADMIN },
    });
    await daemon.started;
    url = daemon.info().tcp ?? '';
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
  });

  test('the admin token: ps and restart over TCP', async () => {
    const tree = await call('GET', '/v1/tree', { token: ADMIN });
    assert.equal(tree.status, 200);
    const paths = (tree.body as PsEntry[]).map((e) => e.path);
    assert.ok(paths.includes(`/${name}/web`) && paths.includes(`/${name}/site/prod`));
    const before = (tree.body as PsEntry[]).find((e) => e.path === `/${name}/web`)?.pid;
    const restarted = await call('POST', `/v1/children/${name}/web/restart`, { token: ADMIN });
    assert.equal(restarted.status, 200, JSON.stringify(restarted.body));
    assert.equal(restarted.body.action, 'restart');
    assert.notEqual(restarted.body.child.pid, before);
    assert.equal((await call('GET', '/v1/daemon', { token: ADMIN })).body.tcp, url);
  });

  test('no token: 401 with a challenge; a malformed header: 401; a wrong token: 403', async () => {
    const none = await call('GET', '/v1/tree');
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'token_required');
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="captree"');
    assert.match(none.body.error.message, /Authorization: Bearer TOKEN/);
    const basic = await call('GET', '/v1/tree', { authorization: 'Basic YWRtaW46YWRtaW4=' });
    assert.equal(basic.status, 401);
    assert.equal(basic.body.error.code, 'bad_authorization');
    for (const [method, path] of [
      ['GET', '/v1/tree'],
      ['POST', `/v1/children/${name}/web/restart`],
      ['POST', '/v1/down'],
    ] as const) {
      const wrong = await call(method, path, { token: 'not-a-token-of-this-tree' });
      assert.equal(wrong.status, 403, `${method} ${path}`);
      assert.equal(wrong.body.error.code, 'token_rejected');
      assert.match(wrong.body.error.message, /neither this daemon's admin token nor the admission token/);
    }
    // Nothing happened: the tree is still up.
    assert.equal(daemon.info().state, 'ready');
  });

  test('a /site/dev admission token admits under /site/dev and is useless elsewhere', async () => {
    const ok = await admitInto('site/dev', 'dev-1', 'job1', DEV);
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal(ok.body.path, `/${name}/site/dev/job1`);

    const prod = await admitInto('site/prod', 'prod-1', 'job1', DEV);
    assert.equal(prod.status, 403);
    assert.equal(prod.body.error.code, 'out_of_scope');
    assert.equal(
      prod.body.error.message,
      `the token presented is an admission token for /${name}/site/dev: it opens that subtree only, not /${name}/site/prod`,
    );
    const parent = await admitInto('site', 'site-1', 'job1', DEV);
    assert.equal(parent.status, 403);
    assert.equal(parent.body.error.code, 'out_of_scope');

    const restart = await call('POST', `/v1/children/${name}/site/dev/job1/restart`, { token: DEV });
    assert.equal(restart.status, 403);
    assert.equal(restart.body.error.code, 'admin_only');
    assert.match(
      restart.body.error.message,
      new RegExp(
        `^POST /v1/children/${name}/site/dev/job1/restart needs the admin token; .*only admit, revoke and read`,
      ),
    );
    const down = await call('POST', '/v1/down', { token: DEV });
    assert.equal(down.status, 403);
    assert.equal(down.body.error.code, 'admin_only');
    assert.equal((await call('GET', '/v1/daemon', { token: DEV })).status, 403);
    assert.equal(daemon.info().state, 'ready');

    // Reads are filtered to the subtree; other subtrees' logs are out of scope.
    const tree = await call('GET', '/v1/tree', { token: DEV });
    assert.equal(tree.status, 200);
    const paths = (tree.body as PsEntry[]).map((e) => e.path);
    assert.deepEqual(paths, [`/${name}/site/dev`, `/${name}/site/dev/job1`]);
    const events = await call('GET', '/v1/events?since=1h', { token: DEV });
    assert.equal(events.status, 200);
    const records = events.body as JournalRecord[];
    assert.ok(records.length > 0);
    for (const r of records) assert.ok(r.path.startsWith(`/${name}/site/dev`), r.path);
    assert.equal((await call('GET', `/v1/events?path=/${name}/web`, { token: DEV })).status, 403);
    assert.equal((await call('GET', `/v1/logs/${name}/web`, { token: DEV })).status, 403);
    assert.equal((await call('GET', `/v1/logs/${name}/site/dev/job1`, { token: DEV })).status, 200);

    // Revocation: in scope only.
    const foreign = await call('DELETE', `/v1/children/${name}/web`, { token: DEV });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.body.error.code, 'out_of_scope');
    const revoked = await call('DELETE', `/v1/children/${name}/site/dev/job1`, { token: DEV });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));

    // The prod token, symmetrically, opens prod only.
    const prodOk = await admitInto('site/prod', 'prod-2', 'job2', PROD);
    assert.equal(prodOk.status, 201, JSON.stringify(prodOk.body));
    assert.equal((await call('DELETE', `/v1/children/${name}/site/prod/job2`, { token: DEV })).status, 403);
    assert.equal((await call('DELETE', `/v1/children/${name}/site/prod/job2`, { token: PROD })).status, 200);
  });

  test('the admin token admits anywhere, without the node token', async () => {
    const ok = await admitInto('site/prod', 'admin-1', 'byadmin', ADMIN);
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal(
      (await call('DELETE', `/v1/children/${name}/site/prod/byadmin`, { token: ADMIN })).status,
      200,
    );
  });

  test('the unix socket is unaffected: no token needed, node tokens still required for admission', async () => {
    const tree = await call('GET', '/v1/tree', { socket: true });
    assert.equal(tree.status, 200);
    assert.ok((tree.body as PsEntry[]).some((e) => e.path === `/${name}/web`));
    const restarted = await call('POST', `/v1/children/${name}/web/restart`, { socket: true });
    assert.equal(restarted.status, 200);
    // A bearer token on the socket is the admission token it always was; the admin token is not one.
    const noToken = await call('POST', `/v1/nodes/${name}/site/dev/children`, {
      socket: true,
      body: { requestId: 'sock-2', spec: sleeper('x') },
    });
    assert.equal(noToken.status, 403);
    assert.equal(noToken.body.error.code, 'token_required');
    const withDev = await call('POST', `/v1/nodes/${name}/site/dev/children`, {
      socket: true,
      token: DEV,
      body: { requestId: 'sock-3', spec: sleeper('x') },
    });
    assert.equal(withDev.status, 201);
    assert.equal((await call('DELETE', `/v1/children/${name}/site/dev/x`, { socket: true })).status, 200);
  });

  test('the CLI over --url: ps, admit, events, revoke; scope and missing token errors', async () => {
    const ps = await cli(['ps', '--json', '--url', url, '--token-file', 'admin.token']);
    assert.equal(ps.code, 0, ps.stderr);
    assert.ok((JSON.parse(ps.stdout) as PsEntry[]).some((e) => e.path === `/${name}/web`));

    const admitted = await cli([
      'admit',
      `/${name}/site/dev`,
      'job.yaml',
      '--url',
      url,
      '--token-file',
      'dev.token',
      '--id',
      'cli-1',
    ]);
    assert.equal(admitted.code, 0, admitted.stderr);
    assert.match(admitted.stdout, new RegExp(`^admitted /${name}/site/dev/clijob `));

    const scopedPs = await cli(['ps', '--json', '--url', url, '--token-file', 'dev.token']);
    assert.equal(scopedPs.code, 0, scopedPs.stderr);
    assert.deepEqual(
      (JSON.parse(scopedPs.stdout) as PsEntry[]).map((e) => e.path),
      [`/${name}/site/dev`, `/${name}/site/dev/clijob`],
    );
    const table = await cli(['ps', '--url', url, '--token-file', 'dev.token']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /clijob/);
    assert.doesNotMatch(table.stdout, /\bweb\b|prod/);
    const events = await cli([
      'events',
      '--json',
      '--since',
      '1h',
      '--url',
      url,
      '--token-file',
      'dev.token',
    ]);
    assert.equal(events.code, 0, events.stderr);
    const records = JSON.parse(events.stdout) as JournalRecord[];
    assert.ok(
      records.some((r) => r.type === 'admitted' && r.path === `/${name}/site/dev/clijob`),
      JSON.stringify(records.map((r) => [r.type, r.path])),
    );
    assert.ok(records.every((r) => r.path.startsWith(`/${name}/site/dev`)));

    const outside = await cli([
      'admit',
      `/${name}/site/prod`,
      'job.yaml',
      '--url',
      url,
      '--token-file',
      'dev.token',
    ]);
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /^captree: the token presented is an admission token for .*\/site\/dev: /);
    const restart = await cli(['restart', `/${name}/web`, '--url', url, '--token-file', 'dev.token']);
    assert.equal(restart.code, 1);
    assert.match(restart.stderr, /needs the admin token/);

    const revoked = await cli([
      'revoke',
      `/${name}/site/dev/clijob`,
      '--url',
      url,
      '--token-file',
      'dev.token',
    ]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, /^revoked /);

    const noToken = await cli(['ps', '--url', url]);
    assert.equal(noToken.code, 1);
    assert.match(noToken.stderr, /asks for a token: --token-file FILE/);
    const wrong = await cli(['ps', '--url', url, '--token-file', 'wrong.token']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /neither this daemon's admin token/);
  });
});

describe('captree up --detach --listen (the real bin, 127.0.0.1)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-tcp-bin-'));
  const name = `tcpb${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  let daemonPid: number | null = null;
  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
      execFile(
        node,
        [bin, ...args],
        { cwd: dir, env: { ...process.env, NO_COLOR: '1' }, timeout: 60_000 },
        (err, stdout, stderr) =>
          done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
    });

  after(() => {
    if (daemonPid !== null) {
      try {
        process.kill(daemonPid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('usage: --listen needs --token-file, and a HOST:PORT', async () => {
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}\nchildren:\n  - name: web\n    command: [sleep, infinity]\n`,
    );
    const noToken = await cli(['up', '--listen', '127.0.0.1:0']);
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /--listen needs --token-file FILE/);
    writeFileSync(join(dir, 'admin.token'), `${ADMIN}\n`);
    const bad = await cli(['up', '--listen', 'localhost', '--token-file', 'admin.token']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /expected HOST:PORT/);
  });

  test('up --detach --listen serves ps and down on TCP; the socket still works', async () => {
    const port = await new Promise<number>((done) => {
      const s = http.createServer().listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => done(typeof a === 'object' && a ? a.port : 0));
      });
    });
    const up = await cli(['up', '--detach', '--listen', `127.0.0.1:${port}`, '--token-file', 'admin.token']);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, new RegExp(`control API also on http://127\\.0\\.0\\.1:${port}`));
    const info = JSON.parse((await cli(['ps', '--json'])).stdout) as PsEntry[];
    assert.ok(info.some((e) => e.path === `/${name}/web`));
    const url = `http://127.0.0.1:${port}`;
    const ps = await cli(['ps', '--json', '--url', url, '--token-file', 'admin.token']);
    assert.equal(ps.code, 0, ps.stderr);
    const web = (JSON.parse(ps.stdout) as PsEntry[]).find((e) => e.path === `/${name}/web`);
    assert.ok(web?.pid);
    const restart = await cli(['restart', `/${name}/web`, '--url', url, '--token-file', 'admin.token']);
    assert.equal(restart.code, 0, restart.stderr);
    const pidFile = join(dir, '.captree', 'daemon.pid');
    daemonPid = Number(await import('node:fs').then((fs) => fs.readFileSync(pidFile, 'utf8').trim()));
    const down = await cli(['down']);
    assert.equal(down.code, 0, down.stderr);
    const gone = await cli(['ps', '--url', url, '--token-file', 'admin.token']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /nothing answers at http:\/\/127\.0\.0\.1:/);
    daemonPid = null;
  });
});
