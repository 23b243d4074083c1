/**
 * Getting a `captree` command: the plain-JS bin shim on any Node (the system Node here is older
 * than 24), `node dist/cli/main.js` on that Node, and `npm install -g` of the `npm pack`
 * tarball, which puts `captree` on PATH.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { node, type Result, repo } from './helpers.ts';

/** The first `node` on PATH that is not the repository's own: the machine's Node. */
const systemNode = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => existsSync(p)) ?? node;
const systemMajor = Number(
  execFileSync(systemNode, ['-p', 'process.versions.node.split(".")[0]']).toString(),
);

function run(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { env: { ...process.env, NO_COLOR: '1', ...env }, timeout: 120_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

describe('the bin on any Node', () => {
  test(`bin/captree.cjs on the system Node (v${systemMajor}) runs the CLI`, async () => {
    const r = await run(systemNode, [join(repo, 'bin/captree.cjs'), '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: captree COMMAND/m);
  });

  test('node dist/cli/main.js --help on the system Node works like the bin', async () => {
    execFileSync(node, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(repo, 'tsconfig.json')]);
    const r = await run(systemNode, [join(repo, 'dist/cli/main.js'), '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: captree COMMAND/m);
  });
});

describe('npm install -g from the npm pack tarball', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-install-'));
  const npm = join(repo, 'node_modules/node/bin/npm');
  const npmCli = existsSync(npm) ? npm : 'npm';
  const prefix = join(dir, 'prefix');
  before(() => {
    const env = { ...process.env, PATH: `${join(repo, 'node_modules/node/bin')}:${process.env.PATH}` };
    execFileSync(npmCli, ['pack', '--silent', '--pack-destination', dir], { cwd: repo, env, stdio: 'pipe' });
    execFileSync(npmCli, ['install', '-g', '--silent', '--prefix', prefix, join(dir, 'captree-0.1.0.tgz')], {
      cwd: dir,
      env,
      stdio: 'pipe',
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('puts captree on PATH; with Node 24 first on PATH it runs', async () => {
    assert.ok(existsSync(join(prefix, 'bin/captree')));
    const r = await run('captree', ['--version'], {
      PATH: `${join(prefix, 'bin')}:${join(repo, 'node_modules/node/bin')}:${process.env.PATH}`,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'captree 0.1.0\n');
    const check = await run('captree', ['check', join(repo, 'examples/demo/captree.yaml')], {
      PATH: `${join(prefix, 'bin')}:${join(repo, 'node_modules/node/bin')}:${process.env.PATH}`,
    });
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /OK: tree \/demo/);
  });

  test('with only an older Node on PATH it says what it needs and exits 1', async () => {
    const r = await run(systemNode, [join(prefix, 'bin/captree'), '--version']);
    if (systemMajor >= 24) {
      assert.equal(r.code, 0, r.stderr);
      return;
    }
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^captree: needs Node\.js 24 or later; this is Node\.js v\d+/);
  });
});
