/**
 * A narrowed filesystem view, on the real kernel: a child whose grant has `paths` (its own
 * `requires.paths`, or an ancestor node's) sees exactly those paths plus what a program needs to
 * run (the system read-only, a fresh /dev, a private /tmp, /proc, /sys read-only, its program's
 * directory). The children are inline scripts (`node -e`, `/bin/sh -c`): nothing of the
 * repository is in their view. Each prints one JSON line per attempt.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildTree, type RunningTree } from '../../src/daemon/build-tree.ts';
import { formatErrors, parseManifest } from '../../src/manifest/index.ts';
import { Launcher } from '../../src/runtime/launcher/client.ts';
import { isRoot, skipOrFail, uniqueName } from '../support/host.ts';
import { buildManifest, type Probe, Recorder } from '../support/tree.ts';

const NODE = process.execPath;
const REPO = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');

/** `op:target` arguments → one JSON line each: read, write, ls, stat. */
const PROBE = `
const fs = require('node:fs');
for (const arg of process.argv.slice(1)) {
  const i = arg.indexOf(':');
  const op = arg.slice(0, i), target = arg.slice(i + 1);
  try {
    let value;
    if (op === 'read') value = fs.readFileSync(target, 'utf8').length;
    else if (op === 'write') fs.writeFileSync(target, 'x');
    else if (op === 'ls') value = fs.readdirSync(target).sort();
    else if (op === 'stat') value = fs.statSync(target).isDirectory();
    else if (op === 'cwd') value = process.cwd();
    console.log(JSON.stringify({ op, target, ok: true, value }));
  } catch (e) {
    console.log(JSON.stringify({ op, target, ok: false, code: e.code }));
  }
}`;

describe('paths: a narrowed filesystem view', () => {
  let tree: RunningTree | null = null;
  let dir = '';
  let root = '';
  const tmpName = uniqueName('private');
  const rec = new Recorder();
  const { output, exits } = rec;
  const probes = (path: string): Probe[] => rec.probes(`/${root}/${path}`);
  const find = (path: string, op: string, target: string): Probe => {
    const p = probes(path).find((x) => x.op === op && x.target === target);
    assert.ok(p, `${path}: no ${op}:${target} in ${output.get(`/${root}/${path}#out`)}`);
    return p;
  };
  const code = (p: Probe) => (p.ok ? 'ok' : p.code);

  before(async () => {
    if (!isRoot) return;
    dir = mkdtempSync(join(tmpdir(), 'captree-paths-'));
    chmodSync(dir, 0o755);
    root = uniqueName('paths').replace('captree-test-', 'ct-');
    for (const d of ['data', 'ro', 'secret-dir', 'data/sub']) mkdirSync(join(dir, d));
    writeFileSync(join(dir, 'ro', 'conf'), 'port=1\n');
    writeFileSync(join(dir, 'secret-dir', 'key'), 'k\n');
    writeFileSync(join(dir, 'data', 'host-file'), 'h\n');
    const file = join(dir, 'captree.yaml');
    const probe = (...ops: string[]) => JSON.stringify([NODE, '-e', PROBE, ...ops]);
    const hostChecks = [
      `ls:${dir}/secret-dir`,
      'ls:/root',
      'ls:/home',
      `stat:${REPO}/package.json`,
      `ls:${REPO}/src`,
      'read:/etc/passwd',
      'write:/dev/null',
    ];
    const yaml = [
      `name: ${root}`,
      'children:',
      '  - name: narrow',
      '    restart: temporary',
      '    cwd: ./data',
      `    command: ${probe('cwd:', 'write:out', `write:${dir}/data/abs`, `read:${dir}/ro/conf`, `write:${dir}/ro/conf`, `write:${dir}/ro/new`, ...hostChecks, `write:/tmp/${tmpName}`, `read:/tmp/${tmpName}`, 'ls:/')}`,
      `    requires: { paths: { ./data: rw, ./ro: ro } }`,
      '  - name: shell',
      '    restart: temporary',
      '    cwd: ./data',
      `    command: ${JSON.stringify(['/bin/sh', '-c', 'echo from-sh > sh.out && cat /etc/hostname >/dev/null 2>&1; ls /root >/dev/null 2>&1 || echo no-root >> sh.out'])}`,
      `    requires: { paths: { ./data: rw } }`,
      '  - name: wide',
      '    restart: temporary',
      `    command: ${probe(`ls:${dir}/secret-dir`, `stat:${REPO}/package.json`, `write:${dir}/ro/wide`)}`,
      '  - name: grp',
      '    requires: { paths: { ./data: rw } }',
      '    children:',
      '      - name: inner',
      '        restart: temporary',
      '        cwd: ./data',
      `        command: ${probe(`write:${dir}/data/inner`, `ls:${dir}/secret-dir`, `ls:${dir}/ro`)}`,
      '      - name: narrower',
      '        restart: temporary',
      '        cwd: ./data/sub',
      `        command: ${probe(`write:${dir}/data/sub/x`, `stat:${dir}/data/host-file`, `write:${dir}/data/y`)}`,
      `        requires: { paths: { ./data/sub: ro } }`,
      '',
    ].join('\n');
    writeFileSync(file, yaml);
    tree = await buildManifest(dir, yaml, join(dir, '.captree'));
    rec.attach(tree);
    await tree.supervisor.start();
    const all = ['narrow', 'shell', 'wide', 'grp/inner', 'grp/narrower'].map((p) => `/${root}/${p}`);
    const end = Date.now() + 20_000;
    while (!all.every((p) => exits.has(p))) {
      if (Date.now() > end) throw new Error(`timed out; exited: ${[...exits.keys()].join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  after(async () => {
    if (tree) {
      await tree.supervisor.stop().catch(() => {});
      await tree.runtime.close();
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    rmSync(join('/tmp', tmpName), { force: true });
  });

  it('a child granted data (rw) and ro (ro) writes in data, gets EROFS in ro', (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (mount namespaces)');
    assert.equal(exits.get(`/${root}/narrow`)?.type, 'exited');
    assert.equal(find('narrow', 'cwd', '').value, join(dir, 'data'));
    assert.equal(code(find('narrow', 'write', 'out')), 'ok');
    assert.equal(code(find('narrow', 'write', `${dir}/data/abs`)), 'ok');
    assert.equal(readFileSync(join(dir, 'data', 'out'), 'utf8'), 'x');
    assert.equal(readFileSync(join(dir, 'data', 'abs'), 'utf8'), 'x');
    assert.equal(find('narrow', 'read', `${dir}/ro/conf`).value, 7);
    assert.equal(code(find('narrow', 'write', `${dir}/ro/conf`)), 'EROFS');
    assert.equal(code(find('narrow', 'write', `${dir}/ro/new`)), 'EROFS');
    assert.equal(readFileSync(join(dir, 'ro', 'conf'), 'utf8'), 'port=1\n');
  });

  it('sees nothing else: not a sibling directory, /root, /home nor the repository', (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (mount namespaces)');
    assert.equal(code(find('narrow', 'ls', `${dir}/secret-dir`)), 'ENOENT');
    // A clone under /root (a home directory) puts node itself there: the view then holds the
    // path to node and nothing else of /root.
    const nodeUnderRoot = NODE.startsWith('/root/') ? NODE.split('/')[2] : undefined;
    const rootView = find('narrow', 'ls', '/root');
    if (nodeUnderRoot === undefined) assert.equal(code(rootView), 'ENOENT');
    else assert.deepEqual(rootView.value, [nodeUnderRoot]);
    assert.equal(code(find('narrow', 'ls', '/home')), 'ENOENT');
    assert.equal(code(find('narrow', 'stat', `${REPO}/package.json`)), 'ENOENT');
    assert.equal(code(find('narrow', 'ls', `${REPO}/src`)), 'ENOENT');
    const top = find('narrow', 'ls', '/').value as string[];
    for (const name of ['root', 'home', 'var', 'run', 'opt', 'srv', 'mnt'].filter(
      (n) => nodeUnderRoot === undefined || n !== 'root',
    ))
      assert.ok(!top.includes(name), `/${name} in ${top}`);
  });

  it('can still run: node and /bin/sh, /etc/passwd, /dev/null, a private /tmp', (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (mount namespaces)');
    assert.ok(find('narrow', 'read', '/etc/passwd').ok);
    assert.equal(code(find('narrow', 'write', '/dev/null')), 'ok');
    assert.equal(code(find('narrow', 'write', `/tmp/${tmpName}`)), 'ok');
    assert.equal(find('narrow', 'read', `/tmp/${tmpName}`).value, 1);
    assert.equal(existsSync(join('/tmp', tmpName)), false, 'the child’s /tmp is its own');
    const shell = exits.get(`/${root}/shell`);
    assert.deepEqual(shell?.type === 'exited' ? shell.reason : shell, { kind: 'normal' });
    assert.equal(readFileSync(join(dir, 'data', 'sh.out'), 'utf8'), 'from-sh\nno-root\n');
  });

  it('a child without paths keeps the host view', (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (mount namespaces)');
    assert.deepEqual(find('wide', 'ls', `${dir}/secret-dir`).value, ['key']);
    assert.equal(code(find('wide', 'stat', `${REPO}/package.json`)), 'ok');
    assert.equal(code(find('wide', 'write', `${dir}/ro/wide`)), 'ok');
  });

  it("a node's paths narrow the view of the children below it", (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (mount namespaces)');
    assert.equal(code(find('grp/inner', 'write', `${dir}/data/inner`)), 'ok');
    assert.equal(code(find('grp/inner', 'ls', `${dir}/secret-dir`)), 'ENOENT');
    assert.equal(code(find('grp/inner', 'ls', `${dir}/ro`)), 'ENOENT');
    assert.equal(code(find('grp/narrower', 'write', `${dir}/data/sub/x`)), 'EROFS');
    assert.equal(code(find('grp/narrower', 'stat', `${dir}/data/host-file`)), 'ENOENT');
    // The directories leading to a granted path are the view's own (here in its private /tmp):
    // what is written there never reaches the host.
    find('grp/narrower', 'write', `${dir}/data/y`);
    assert.equal(existsSync(join(dir, 'data', 'y')), false);
  });
});

describe('paths: the working directory must be in the view', () => {
  it('refuses to build a child whose cwd is outside its granted paths', async (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (mount namespaces)');
    const dir = mkdtempSync(join(tmpdir(), 'captree-paths-cwd-'));
    try {
      mkdirSync(join(dir, 'data'));
      const file = join(dir, 'captree.yaml');
      const yaml = [
        `name: ${uniqueName('pcwd').replace('captree-test-', 'ct-')}`,
        'children:',
        '  - name: app',
        '    command: [/bin/true]',
        '    requires: { paths: { ./data: rw } }',
        '',
      ].join('\n');
      writeFileSync(file, yaml);
      const parsed = parseManifest(yaml, file, { baseDir: dir });
      if (!parsed.ok) assert.fail(formatErrors(parsed.errors));
      await assert.rejects(
        buildTree(parsed.tree, { stateDir: join(dir, '.captree'), source: parsed.source }),
        (err: Error) => err.message.includes(`cwd ${dir} is not in its filesystem view (paths: ${dir}/data)`),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('paths: the launcher fails closed', () => {
  it('fails the spawn naming the step when a granted path is missing', async (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (mount namespaces)');
    const launcher = await Launcher.start();
    try {
      const missing = join(tmpdir(), uniqueName('missing'));
      await assert.rejects(
        launcher.spawn({ argv: ['/bin/true'], env: {}, mounts: { view: { rw: [missing] } } }),
        (err: Error) => err.message.includes(`view: ${missing}: open: No such file or directory`),
      );
      // A working directory outside the view: the launcher refuses it too.
      await assert.rejects(
        launcher.spawn({ argv: ['/bin/true'], env: {}, cwd: REPO, mounts: { view: { rw: [] } } }),
        (err: Error) => err.message.includes(`chdir ${REPO} (not in the child's filesystem view)`),
      );
      const ok = await launcher.spawn({
        argv: ['/bin/true'],
        env: {},
        cwd: '/',
        mounts: { view: { rw: [] } },
      });
      assert.equal((await ok.exited).code, 0);
    } finally {
      await launcher.close();
    }
  });
});
