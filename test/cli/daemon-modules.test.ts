/**
 * The detached daemon never loads the manifest layer's parser (`yaml`) or schema (`zod`) to
 * start: `up --detach` parses and checks the manifest and hands the daemon the tree as JSON
 * (`--tree-json`). A module hook (`node --import`) makes resolving either package throw; in
 * the daemon the failure would abort start-up, so `up --detach` would fail.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readPid, statePaths } from '../../src/daemon/index.ts';
import { alive, bin, captree, demoCopy, killAll, node, psJson, type Result, repo } from './helpers.ts';

/** Throws on `yaml` or `zod` (in every process, or only where CAPTREE_DAEMON=1); leaves a marker. */
function hookSource(marker: string, onlyInDaemon: boolean): string {
  return `
import { registerHooks } from 'node:module';
import { writeFileSync } from 'node:fs';
const armed = ${onlyInDaemon ? "process.env.CAPTREE_DAEMON === '1'" : 'true'};
if (armed) writeFileSync(${JSON.stringify(marker)}, String(process.pid));
registerHooks({
  resolve(specifier, context, next) {
    if (armed && /^(yaml|zod)(\\/|$)/.test(specifier))
      throw new Error(\`forbidden: \${specifier} resolved from \${context.parentURL}\`);
    return next(specifier, context);
  },
});
`;
}

function run(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolvePromise) => {
    execFile(
      node,
      args,
      { cwd, env: { ...process.env, NO_COLOR: '1', ...env }, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolvePromise({ code, stdout, stderr });
      },
    );
  });
}

describe('the detached daemon does not load yaml or zod', () => {
  let hooks: string;
  before(() => {
    hooks = mkdtempSync(join(tmpdir(), 'captree-hooks-'));
  });
  after(() => rmSync(hooks, { recursive: true, force: true }));

  test("importing the daemon's modules loads neither", async () => {
    const hook = join(hooks, 'everywhere.mjs');
    const marker = join(hooks, 'everywhere.marker');
    writeFileSync(hook, hookSource(marker, false));
    const modules = [
      'src/cli/main.ts',
      'src/cli/commands/up.ts',
      'src/daemon/index.ts',
      'src/daemon/daemon.ts',
      'src/daemon/build-tree.ts',
      'src/daemon/contracts.ts',
      'src/daemon/dynamic-children.ts',
      'src/daemon/check.ts',
    ];
    const script = `${modules.map((m) => `await import(${JSON.stringify(join(repo, m))});`).join('\n')}
console.log('loaded');`;
    const r = await run(['--import', hook, '--input-type=module', '-e', script], repo);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'loaded');
    assert.ok(existsSync(marker), 'the hook ran');
    // The hook does catch them: the manifest layer itself is refused.
    const bad = await run(
      [
        '--import',
        hook,
        '--input-type=module',
        '-e',
        `await import(${JSON.stringify(join(repo, 'src/manifest/index.ts'))});`,
      ],
      repo,
    );
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /forbidden: (yaml|zod)/);
  });

  describe('up --detach', () => {
    let dir: string;
    let daemonPid: number | null = null;

    before(async () => {
      ({ dir } = await demoCopy());
    });
    after(async () => {
      if (daemonPid !== null && alive([daemonPid]).length > 0) {
        const pids = (await psJson(dir).catch(() => [])).map((e) => e.pid);
        await captree(['down'], dir);
        killAll([daemonPid, ...pids]);
      }
      rmSync(dir, { recursive: true, force: true });
    });

    test('starts the tree in a daemon that never resolves yaml or zod', async () => {
      const hook = join(hooks, 'daemon.mjs');
      const marker = join(hooks, 'daemon.marker');
      writeFileSync(hook, hookSource(marker, true));
      // The foreground side parses the manifest (yaml, zod); `--import` passes to the daemon.
      const r = await run(['--import', hook, bin, 'up', '--detach'], dir);
      daemonPid = readPid(statePaths(join(dir, '.captree')));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /is up in the background/);
      assert.ok(daemonPid !== null);
      assert.equal(Number(readFileSync(marker, 'utf8')), daemonPid, 'the hook was armed in the daemon');
      assert.ok(!existsSync(join(dir, '.captree', 'tree.json')), 'the daemon removed tree.json once read');
      const down = await captree(['down'], dir);
      assert.equal(down.code, 0, down.stderr);
    });
  });
});
