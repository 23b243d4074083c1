/**
 * Named networks made real: the root declares `networks: { lan: {} }`, `buildTree` holds one
 * network namespace for `lan` (only loopback, up) at `<state>/netns/lan`, and every process granted
 * `lan` runs in it, so its members reach each other over that loopback and nothing else does.
 *
 * Every connection here is to 127.0.0.1: from inside namespaces captree created, or from the
 * test process to its own loopback (where nothing listens on the port: the lan listener lives in
 * another namespace).
 */
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { grantOf } from '../../src/caps/index.ts';
import { AdmissionError, buildTree } from '../../src/daemon/build-tree.ts';
import { formatErrors, parseManifest } from '../../src/manifest/index.ts';
import { HostRuntime, netnsDir } from '../../src/runtime/host-runtime.ts';
import { rootOr, uniqueName } from '../support/host.ts';
import { freePort, hostConnect } from '../support/net.ts';
import { cleanupsAfter, cmd, type Running, upTree } from '../support/tree.ts';

const NODE = process.execPath;
const PROBE = fileURLToPath(new URL('./fixtures/enforcement/probe.mjs', import.meta.url));

const cleanups = cleanupsAfter();
const needRoot = rootOr('needs root (network and mount namespaces, cgroups)');

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'captree-net-'));
}

/** Mount points under `dir` in this process's (the host's) mount namespace. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line.split(' ')[4]?.startsWith(dir));
}

function assertNothingLeft(stateDir: string): void {
  assert.deepEqual(mountsUnder(stateDir), [], 'no mount left under the state directory');
  assert.equal(existsSync(netnsDir(stateDir)), false, `${netnsDir(stateDir)} is removed`);
}

/** Builds and starts the manifest; its `down` (also run after the file) checks that nothing is left. */
function up(template: string): Promise<Running> {
  return upTree(template, { cleanups, tmpPrefix: 'captree-net-', name: 'net', check: assertNothingLeft });
}

describe('named networks', () => {
  it('members of lan reach each other; net: none and the host do not; net: any under a lan node lands in lan', async (t) => {
    if (!needRoot(t)) return;
    const port = await freePort();
    const server = `require('node:net').createServer((s) => s.end('hello from lan')).listen(${port}, '127.0.0.1', () => console.log('listening'))`;
    const probe = cmd(NODE, PROBE, `connect:127.0.0.1:${port}`);
    const r = await up(
      [
        'name: @NAME@',
        'networks:',
        '  lan: {}',
        'children:',
        '  - name: server',
        `    command: ${cmd(NODE, '-e', server)}`,
        '    requires: { net: lan }',
        '    ready: { log: listening, timeout: 10s }',
        '  - name: peer',
        `    command: ${probe}`,
        '    requires: { net: lan }',
        '    restart: temporary',
        '  - name: isolated',
        `    command: ${probe}`,
        '    requires: { net: none }',
        '    restart: temporary',
        '  - name: inner',
        '    requires: { net: lan }',
        '    children:',
        '      - name: anynet',
        `        command: ${probe}`,
        '        requires: { net: any }',
        '        restart: temporary',
      ].join('\n'),
    );
    const p = (rel: string) => `/${r.root}/${rel}`;
    await Promise.all([r.exited(p('peer')), r.exited(p('isolated')), r.exited(p('inner/anynet'))]);

    assert.deepEqual(grantOf(r.tree.caps, p('inner/anynet'))?.net, ['lan'], 'net: any picked lan');
    // The server runs in the namespace held at <state>/netns/lan.
    const held = join(netnsDir(r.stateDir), 'lan');
    const serverPid = r.tree.supervisor.child('server')?.pid;
    assert.ok(serverPid, 'the server runs');
    assert.equal(readlinkSync(`/proc/${serverPid}/ns/net`), `net:[${statSync(held).ino}]`);
    assert.notEqual(readlinkSync('/proc/self/ns/net'), `net:[${statSync(held).ino}]`);

    assert.deepEqual(
      r.probes(p('peer')).map(({ ok, value }) => ({ ok, value })),
      [{ ok: true, value: 'hello from lan' }],
      'a member of lan reaches the lan listener',
    );
    assert.deepEqual(
      r.probes(p('inner/anynet')).map(({ ok, value }) => ({ ok, value })),
      [{ ok: true, value: 'hello from lan' }],
      'net: any under a node holding only lan lands in lan',
    );
    assert.deepEqual(
      r.probes(p('isolated')).map(({ ok, code }) => ({ ok, code })),
      [{ ok: false, code: 'ECONNREFUSED' }],
      'a net: none child does not reach the lan listener',
    );
    assert.equal(
      await hostConnect(port),
      'ECONNREFUSED',
      'the host loopback does not reach the lan listener',
    );

    await r.down();
  });

  it('rejects net: lan under a node that does not hold lan, naming the path, before anything is created', async (t) => {
    if (!needRoot(t)) return;
    const dir = tempDir();
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const root = uniqueName('netrej').replace('captree-test-', 'ct-');
    const stateDir = join(dir, '.captree');
    const file = join(dir, 'captree.yaml');
    const attempt = async (yaml: string): Promise<AdmissionError> => {
      writeFileSync(file, yaml);
      const parsed = parseManifest(yaml, file, { baseDir: dir });
      if (!parsed.ok) assert.fail(formatErrors(parsed.errors));
      const err = await buildTree(parsed.tree, { stateDir, source: parsed.source }).then(
        () => assert.fail('admitted'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof AdmissionError, String(err));
      return err;
    };

    const under = await attempt(
      [
        `name: ${root}`,
        'networks: { lan: {} }',
        'children:',
        '  - name: dmz',
        '    requires: { net: none }',
        '    children:',
        '      - name: app',
        '        command: [/bin/true]',
        '        requires: { net: lan }',
      ].join('\n'),
    );
    assert.equal(under.errors.length, 1, formatErrors(under.errors));
    assert.equal(under.errors[0]?.path, `/${root}/dmz/app`);
    assert.equal(under.errors[0]?.field, 'requires.net');
    assert.match(under.errors[0]?.message ?? '', /requires net lan, \S+\/dmz holds no network/);
    assert.equal(under.errors[0]?.line, 9);

    const undeclared = await attempt(
      [
        `name: ${root}`,
        'children:',
        '  - name: app',
        '    command: [/bin/true]',
        '    requires: { net: lan }',
      ].join('\n'),
    );
    assert.equal(undeclared.errors[0]?.path, `/${root}/app`);
    assert.match(undeclared.errors[0]?.message ?? '', /requires net lan, \S+ holds host/);
    assert.equal(existsSync(stateDir), false, 'nothing was created');
  });

  it('keeps a network across a daemon restart (re-attach), sweeps the unused ones, removes all on close', async (t) => {
    if (!needRoot(t)) return;
    const dir = tempDir();
    const stateDir = join(dir, '.captree');
    const name = uniqueName('netre').replace('captree-test-', 'ct-');
    let second: HostRuntime | undefined;
    cleanups.push(async () => {
      await second?.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const first = await HostRuntime.open({ stateDir, name });
    const lan = await first.network('lan');
    const old = await first.network('old');
    assert.equal(lan, join(stateDir, 'netns', 'lan'));
    const member = await first.launcher.spawn({
      argv: ['sleep', '60'],
      env: { PATH: '/usr/bin:/bin', CAPTREE_PATH: `/${name}/member` },
      netnsPath: lan,
    });
    const ino = statSync(lan).ino;
    await first.detach();

    second = await HostRuntime.open({ stateDir, name });
    assert.equal(second.recovery?.reattached, true);
    assert.equal(await second.network('lan'), lan);
    assert.equal(statSync(lan).ino, ino, 'the same namespace, not a new one');
    assert.equal(readlinkSync(`/proc/${member.pid}/ns/net`), `net:[${ino}]`);
    assert.equal(mountsUnder(old).length, 1, 'the unused network is still held before the sweep');
    const kills = await second.sweep(() => 'absent');
    // Named by its program (what `ps` showed), below the confined child's outer process.
    assert.deepEqual(
      kills.map((k) => k.pid),
      [member.main],
    );
    assert.deepEqual(mountsUnder(old), [], 'the sweep removed the network nothing uses');
    assert.equal(existsSync(old), false);
    assert.equal(mountsUnder(lan).length, 1, 'the sweep kept the network in use');

    await second.close();
    assertNothingLeft(stateDir);
  });

  it('fails a spawn whose network is not there, naming the step', async (t) => {
    if (!needRoot(t)) return;
    const dir = tempDir();
    const stateDir = join(dir, '.captree');
    const runtime = await HostRuntime.open({
      stateDir,
      name: uniqueName('netfail').replace('captree-test-', 'ct-'),
    });
    cleanups.push(async () => {
      await runtime.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const missing = join(netnsDir(stateDir), 'gone');
    await assert.rejects(runtime.launcher.spawn({ argv: ['/bin/true'], env: {}, netnsPath: missing }), {
      message: `spawn /bin/true failed: join network namespace ${missing}: open: No such file or directory`,
    });
    await assert.rejects(runtime.network('../x'), /network \.\.\/x: not a network name/);
  });
});

describe('networks: in the manifest', () => {
  it('is read at the root only, with names that are not none, host or any', () => {
    const parse = (text: string) => parseManifest(text, 'm.yaml', { baseDir: '/tmp' });
    const ok = parse('name: r\nnetworks:\n  lan: {}\n  dmz:\nchildren: []\n');
    assert.ok(ok.ok);
    assert.deepEqual(ok.tree.networks, { lan: {}, dmz: {} });
    const none = parse('name: r\nchildren: []\n');
    assert.ok(none.ok);
    assert.equal(none.tree.networks, undefined);

    const reserved = parse('name: r\nnetworks: { host: {} }\nchildren: []\n');
    assert.ok(!reserved.ok);
    assert.match(formatErrors(reserved.errors), /m\.yaml:2:\d+: .*networks.*not none, host or any/);
    const options = parse('name: r\nnetworks: { lan: { internet: true } }\nchildren: []\n');
    assert.ok(!options.ok);
    assert.match(
      formatErrors(options.errors),
      /m\.yaml:2:20: \/r networks\.lan\.internet: unknown field; it takes none/,
    );
    const nested = parse('name: r\nchildren:\n  - name: n\n    networks: { lan: {} }\n    children: []\n');
    assert.ok(!nested.ok);
    assert.match(
      formatErrors(nested.errors),
      /m\.yaml:4:5: \/r\/n networks: networks are declared at the root only/,
    );
  });
});
