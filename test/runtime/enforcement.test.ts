/**
 * Grants made real by the kernel, end to end: a manifest (YAML text in a temporary directory) is
 * admitted and built with `buildTree`, started, and what its children can and cannot do is
 * observed from outside (cgroup accounting) or reported by the children themselves (fixtures in
 * `fixtures/enforcement/`, which print one JSON line per attempt).
 *
 * Network checks only use loopback, and "no network" is only tested from inside the namespace
 * the launcher created for the child.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { admitManifest, hostCapabilities } from '../../src/daemon/admission.ts';
import { AdmissionError, buildTree } from '../../src/daemon/build-tree.ts';
import { formatErrors, parseManifest } from '../../src/manifest/index.ts';
import { Launcher } from '../../src/runtime/launcher/client.ts';
import { rootOr, uniqueName } from '../support/host.ts';
import { freePort, httpGet } from '../support/net.ts';
import { reachable, reachableNode } from '../support/reachable.ts';
import { cleanupsAfter, cmd, type Running, upTree } from '../support/tree.ts';

const NODE = process.execPath;
const FIXTURES = fileURLToPath(new URL('./fixtures/enforcement/', import.meta.url));
const PROBE = join(FIXTURES, 'probe.mjs');

const cleanups = cleanupsAfter();
const needRoot = rootOr('needs root (cgroups, network and mount namespaces)');

/**
 * Writes the manifest into a fresh 0755 directory (children that run as another user must reach
 * their paths), builds and starts it; see `upTree`.
 */
function up(template: string, prepare?: (dir: string) => void): Promise<Running> {
  return upTree(template, { cleanups, tmpPrefix: 'captree-enf-', name: 'enf', chmod: true, prepare });
}

describe('cpu limits from requires', () => {
  it('caps a 0.2-core child at 0.2 and two siblings under a 0.5-core node at 0.5 together', async (t) => {
    if (!needRoot(t)) return;
    const spin = cmd('/bin/sh', '-c', 'while :; do :; done');
    const r = await up(
      [
        'name: @NAME@',
        'children:',
        '  - name: solo',
        `    command: ${spin}`,
        '    shutdown: brutal',
        '    requires: { cpu: 0.2 }',
        '  - name: pair',
        '    requires: { cpu: 0.5 }',
        '    children:',
        '      - name: a',
        `        command: ${spin}`,
        '        shutdown: brutal',
        '      - name: b',
        `        command: ${spin}`,
        '        shutdown: brutal',
        '',
      ].join('\n'),
    );
    const solo = r.tree.runtime.groupFor(`/${r.root}/solo`);
    const pair = r.tree.runtime.groupFor(`/${r.root}/pair`);
    const a = r.tree.runtime.groupFor(`/${r.root}/pair/a`);
    const b = r.tree.runtime.groupFor(`/${r.root}/pair/b`);
    const sample = () => ({
      at: performance.now(),
      solo: solo.usage().cpuUsec ?? Number.NaN,
      pair: pair.usage().cpuUsec ?? Number.NaN,
      a: a.usage().cpuUsec ?? Number.NaN,
      b: b.usage().cpuUsec ?? Number.NaN,
    });
    const s0 = sample();
    // A measurement window, not a wait for an event: usage over 1.5 s.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const s1 = sample();
    const ms = s1.at - s0.at;
    const cores = (k: 'solo' | 'pair' | 'a' | 'b') => (s1[k] - s0[k]) / 1000 / ms;
    const measured = { solo: cores('solo'), pair: cores('pair'), a: cores('a'), b: cores('b') };
    t.diagnostic(`measured over ${ms.toFixed(0)} ms: ${JSON.stringify(measured)}`);
    assert.ok(measured.solo <= 0.2 * 1.1, `solo used ${measured.solo} cores, granted 0.2`);
    assert.ok(measured.solo >= 0.2 * 0.5, `solo used ${measured.solo} cores: did it spin?`);
    assert.ok(measured.pair <= 0.5 * 1.1, `pair used ${measured.pair} cores, granted 0.5`);
    assert.ok(measured.pair >= 0.5 * 0.5, `pair used ${measured.pair} cores: did they spin?`);
    assert.ok(measured.a > 0.05 && measured.b > 0.05, 'both siblings ran');
  });

  it('rejects a child asking more than its parent holds, before anything starts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'captree-enf-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'captree.yaml');
    const text = [
      `name: ${uniqueName('adm').replace('captree-test-', 'ct-')}`,
      'requires: { cpu: 1.0 }',
      'children:',
      '  - name: team',
      '    requires: { cpu: 0.5 }',
      '    children:',
      '      - name: greedy',
      '        command: [/bin/true]',
      '        requires: { cpu: 0.8 }',
      '',
    ].join('\n');
    writeFileSync(file, text);
    const parsed = parseManifest(text, file, { baseDir: dir });
    if (!parsed.ok) assert.fail(formatErrors(parsed.errors));
    const admitted = admitManifest(parsed.tree, parsed.source, await hostCapabilities());
    assert.equal(admitted.ok, false);
    const errors = admitted.ok ? [] : admitted.errors;
    assert.equal(errors.length, 1, formatErrors(errors));
    assert.match(errors[0]!.path, /\/team\/greedy$/);
    assert.equal(errors[0]!.field, 'requires.cpu');
    assert.equal(errors[0]!.line, 9);
    // buildTree refuses the same manifest with every formatted error, creating nothing.
    await assert.rejects(
      buildTree(parsed.tree, { stateDir: join(dir, '.captree'), source: parsed.source }),
      (err: Error) =>
        err instanceof AdmissionError && err.message.includes(`${file}:9:`) && err.errors.length === 1,
    );
  });
});

describe('net: none with a passed listening socket', () => {
  it('serves a host client on its socket while its own egress to host loopback fails', async (t) => {
    if (!needRoot(t)) return;
    // A server on host loopback the child must not reach; any connection is a failure.
    let reached = 0;
    const bait: Server = createServer((s) => {
      reached++;
      s.destroy();
    });
    await new Promise<void>((resolve) => bait.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => bait.close(() => resolve())));
    const baitPort = (bait.address() as { port: number }).port;
    const port = await freePort();
    const r = await up(
      [
        'name: @NAME@',
        'children:',
        '  - name: web',
        // 192.0.2.1 (TEST-NET-1) is tried from inside the child's empty namespace only.
        `    command: ${cmd(NODE, join(FIXTURES, 'http-egress.mjs'), `127.0.0.1:${baitPort}`, '192.0.2.1:80')}`,
        '    ready: { log: serving, timeout: 10s }',
        `    requires: { net: none, listen: { http: 127.0.0.1:${port} } }`,
        '',
      ].join('\n'),
    );
    const body = JSON.parse(await httpGet(port)) as { egress: Record<string, string>; names: string };
    t.diagnostic(`child reports ${JSON.stringify(body)}`);
    assert.equal(body.names, 'http');
    assert.notEqual(body.egress[`127.0.0.1:${baitPort}`], 'connected');
    assert.match(body.egress[`127.0.0.1:${baitPort}`]!, /^(ECONNREFUSED|ENETUNREACH)$/);
    assert.equal(body.egress['192.0.2.1:80'], 'ENETUNREACH');
    assert.equal(reached, 0, 'the host-loopback server saw a connection from the child');
    assert.match(r.out(`/${r.root}/web`), /serving/);
  });
});

describe('services as unix sockets, routed', () => {
  it('reaches a routed provider by its env var; an unrouted sibling cannot, even at the real path', async (t) => {
    if (!needRoot(t)) return;
    const r = await up(
      [
        'name: @NAME@',
        'children:',
        '  - name: db',
        `    command: ${cmd(NODE, join(FIXTURES, 'unix-provider.mjs'))}`,
        '    ready: { log: listening, timeout: 10s }',
        '    provides: { db.sql: { unix: db.sock } }',
        '  - name: api',
        '    restart: temporary',
        `    command: ${cmd(NODE, PROBE, 'connect:%CAPTREE_SERVICE_DB_SQL%', 'env')}`,
        '    requires: { services: [db.sql] }',
        '  - name: intruder',
        '    restart: temporary',
        // The path is guessed right (the test passes it in), and the services dir is listed.
        `    command: ${cmd(NODE, PROBE, 'connect:@STATE@/services/@NAME@.db/db.sql/db.sock', 'stat:@STATE@/services/@NAME@.db', 'env')}`,
        '',
      ].join('\n'),
    );
    const db = `/${r.root}/db`;
    const socket = join(r.stateDir, 'services', `${r.root}.db`, 'db.sql', 'db.sock');
    // The host (the supervisor's own namespace) sees the provider's socket where it was told to bind.
    assert.match(r.out(db), new RegExp(`listening on ${socket.replaceAll('.', '\\.')}`));
    const hostView = await new Promise<string>((resolve, reject) => {
      const s = connect(socket);
      let data = '';
      s.on('data', (d) => {
        data += d;
      });
      s.on('end', () => resolve(data));
      s.on('error', reject);
    });
    assert.equal(hostView, `hello from ${db}\n`);

    await r.exited(`/${r.root}/api`);
    const [reach, apiEnv] = r.probes(`/${r.root}/api`);
    assert.equal(reach?.target, `unix:${socket}`);
    assert.deepEqual({ ok: reach?.ok, value: reach?.value }, { ok: true, value: `hello from ${db}\n` });
    assert.equal(
      (apiEnv?.value as Record<string, string> | undefined)?.CAPTREE_SERVICE_DB_SQL,
      `unix:${socket}`,
    );

    await r.exited(`/${r.root}/intruder`);
    const [guess, listing, env] = r.probes(`/${r.root}/intruder`);
    assert.equal(guess?.ok, false);
    assert.equal(guess?.code, 'ENOENT');
    assert.equal(listing?.ok, false, 'the provider directory is visible to an unrouted child');
    assert.equal(env?.op, 'env');
    assert.equal((env?.value as Record<string, string> | undefined)?.CAPTREE_SERVICE_DB_SQL, undefined);
  });
});

describe('secrets as credential files', () => {
  it('delivers a granted secret in $CREDENTIALS_DIRECTORY (0400, the child’s) and nowhere else', async (t) => {
    if (!needRoot(t)) return;
    const value = `s3cret-${Math.random().toString(36).slice(2)}\n`;
    const r = await up(
      [
        'name: @NAME@',
        'children:',
        '  - name: db',
        '    restart: temporary',
        '    user: nobody',
        // Reachable by nobody even from a clone under a 0700 home directory.
        `    command: ${cmd(reachableNode(), reachable(PROBE), 'read:%CREDENTIALS_DIRECTORY%/DB_PASSWORD', 'stat:%CREDENTIALS_DIRECTORY%/DB_PASSWORD', 'stat:%CREDENTIALS_DIRECTORY%', 'write:%CREDENTIALS_DIRECTORY%/extra', 'read:@DIR@/secrets/DB_PASSWORD', 'env', 'id')}`,
        '    requires: { secrets: [DB_PASSWORD] }',
        '  - name: sibling',
        '    restart: temporary',
        `    command: ${cmd(NODE, PROBE, 'read:@STATE@/credentials/@NAME@.db/DB_PASSWORD', 'stat:@STATE@/credentials/@NAME@.db', 'read:@DIR@/secrets/DB_PASSWORD', 'env')}`,
        '',
      ].join('\n'),
      (dir) => {
        mkdirSync(join(dir, 'secrets'), { mode: 0o700 });
        writeFileSync(join(dir, 'secrets', 'DB_PASSWORD'), value, { mode: 0o600 });
      },
    );
    const nobody = resolveNobody();
    await r.exited(`/${r.root}/db`);
    const [read, file, dirStat, write, source, env, id] = r.probes(`/${r.root}/db`);
    const me = id?.value as { uid: number; gid: number };
    assert.equal(me.uid, nobody.uid);
    const credDir = join(r.stateDir, 'credentials', `${r.root}.db`);
    assert.equal(read?.target, join(credDir, 'DB_PASSWORD'));
    assert.deepEqual({ ok: read?.ok, value: read?.value }, { ok: true, value });
    assert.deepEqual(file?.value, { mode: 0o400, uid: me.uid, gid: me.gid });
    assert.deepEqual(dirStat?.value, { mode: 0o500, uid: me.uid, gid: me.gid });
    assert.equal(write?.ok, false, 'the credentials directory is writable');
    assert.equal(source?.ok, false, 'the secret’s source file is visible to the child');
    const dbEnv = env?.value as Record<string, string>;
    assert.equal(dbEnv.CREDENTIALS_DIRECTORY, credDir);
    assert.ok(
      !Object.values(dbEnv).some((v) => v.includes(value.trim())),
      'the secret is in the environment',
    );

    await r.exited(`/${r.root}/sibling`);
    const [steal, look, steal2, sibEnv] = r.probes(`/${r.root}/sibling`);
    assert.deepEqual({ ok: steal?.ok, code: steal?.code }, { ok: false, code: 'ENOENT' });
    assert.deepEqual({ ok: look?.ok, code: look?.code }, { ok: false, code: 'ENOENT' });
    assert.deepEqual({ ok: steal2?.ok, code: steal2?.code }, { ok: false, code: 'ENOENT' });
    assert.equal(sibEnv?.op, 'env');
    assert.equal((sibEnv?.value as Record<string, string> | undefined)?.CREDENTIALS_DIRECTORY, undefined);
    // Nothing of the secret reaches the host's view of the state directory either.
    assert.equal(readdirSync(join(r.stateDir, 'credentials')).length, 0);
  });
});

describe('paths', () => {
  it('makes a read-only path read-only and leaves a read-write one writable', async (t) => {
    if (!needRoot(t)) return;
    const r = await up(
      [
        'name: @NAME@',
        'children:',
        '  - name: app',
        '    restart: temporary',
        `    command: ${cmd(NODE, PROBE, 'read:@DIR@/conf/app.conf', 'write:@DIR@/conf/app.conf', 'write:@DIR@/conf/new', 'write:@DIR@/data/out')}`,
        // A narrowed view: the probe and the working directory must be in it.
        '    cwd: ./data',
        `    requires: { paths: { ./conf: ro, ./data: rw, ${FIXTURES.replace(/\/$/, '')}: ro } }`,
        '',
      ].join('\n'),
      (dir) => {
        mkdirSync(join(dir, 'conf'));
        mkdirSync(join(dir, 'data'));
        writeFileSync(join(dir, 'conf', 'app.conf'), 'port=1\n');
      },
    );
    await r.exited(`/${r.root}/app`);
    const [read, overwrite, create, data] = r.probes(`/${r.root}/app`);
    assert.deepEqual({ ok: read?.ok, value: read?.value }, { ok: true, value: 'port=1\n' });
    assert.deepEqual({ ok: overwrite?.ok, code: overwrite?.code }, { ok: false, code: 'EROFS' });
    assert.deepEqual({ ok: create?.ok, code: create?.code }, { ok: false, code: 'EROFS' });
    assert.equal(data?.ok, true);
    assert.equal(readFileSync(join(r.dir, 'data', 'out'), 'utf8'), 'x');
    assert.equal(readFileSync(join(r.dir, 'conf', 'app.conf'), 'utf8'), 'port=1\n');
  });
});

function resolveNobody(): { uid: number } {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === 'nobody') return { uid: Number(f[2]) };
  }
  throw new Error('no user nobody');
}

describe('mount confinement failures', () => {
  it('fails the spawn naming the step when a granted path cannot be mounted', async (t) => {
    if (!needRoot(t)) return;
    const launcher = await Launcher.start();
    cleanups.push(() => launcher.close());
    const missing = join(tmpdir(), uniqueName('missing'));
    await assert.rejects(
      launcher.spawn({ argv: ['/bin/true'], env: {}, mounts: { bind: [missing] } }),
      (err: Error) => err.message.includes(`bind ${missing}: open: No such file or directory`),
    );
    // The launcher is unharmed: the next confined spawn runs.
    const ok = await launcher.spawn({ argv: ['/bin/true'], env: {}, mounts: { hide: [tmpdir()] } });
    assert.equal((await ok.exited).code, 0);
  });
});
