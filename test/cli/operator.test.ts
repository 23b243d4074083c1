/**
 * The operator's habits through the real bin: mistakes forgiven (did you mean, a unique child
 * name as a path, parse errors in our words), a tree found from the directory `up` was run in,
 * `down` with nothing running, and logs of every child, also after the tree stopped.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { captree, demoCopy, killAll, psJson } from './helpers.ts';

const empty = mkdtempSync(join(tmpdir(), 'captree-op-'));
after(() => rmSync(empty, { recursive: true, force: true }));

describe('mistakes get our words and a suggestion', () => {
  test('a mistyped command: did you mean', async () => {
    const r = await captree(['dwon'], empty);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "captree: unknown command 'dwon' (did you mean down?) (see: captree --help)\n");
  });

  test('a mistyped flag: did you mean, no raw parser message', async () => {
    const r = await captree(['ps', '--jsn'], empty);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'captree ps: unknown option --jsn (did you mean --json?) (see: captree ps --help)\n',
    );
  });

  test('a flag without its value, a value for a switch', async () => {
    const missing = await captree(['ps', '--state'], empty);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr, 'captree ps: --state needs a value (see: captree ps --help)\n');
    const extra = await captree(['ps', '--json=yes'], empty);
    assert.equal(extra.code, 2);
    assert.equal(extra.stderr, 'captree ps: --json takes no value (see: captree ps --help)\n');
  });

  test('down with nothing running says so and exits 0', async () => {
    const r = await captree(['down'], empty);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'captree: nothing is running in ./.captree\n');
    const json = await captree(['down', '--json'], empty);
    assert.deepEqual(JSON.parse(json.stdout), { stopped: false, running: false });
  });
});

describe('a running tree, from the directory up was run in', () => {
  let root: string;
  let dir: string;
  let name: string;
  let state: string;
  let daemonPid: number | undefined;
  before(async () => {
    const copy = await demoCopy();
    name = copy.name;
    // The layout of `captree up -d examples/demo/captree.yaml` run from a project root.
    root = mkdtempSync(join(tmpdir(), 'captree-op-root-'));
    mkdirSync(join(root, 'examples'));
    dir = join(root, 'examples', 'demo');
    renameSync(copy.dir, dir);
    state = join(dir, '.captree');
    const r = await captree(['up', '-d', 'examples/demo/captree.yaml'], root);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /see it: captree ps --state \.\/examples\/demo\/\.captree/);
    daemonPid = Number(/daemon pid (\d+)/.exec(r.stdout)?.[1]);
  });
  after(async () => {
    await captree(['down', '--state', state], root);
    killAll([daemonPid]);
    rmSync(root, { recursive: true, force: true });
  });

  test('ps where there is no .captree says where the running tree is', async () => {
    const r = await captree(['ps'], root);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      'captree: no running tree in ./.captree; one is running below: add --state examples/demo/.captree\n',
    );
  });

  test('a unique child name works as a path; a near miss gets did you mean', async () => {
    const r = await captree(['restart', 'worker', '--state', state], root);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^restarted /${name}/worker`));
    const miss = await captree(['logs', 'wrker', '--state', state], root);
    assert.equal(miss.code, 1);
    assert.match(
      miss.stderr,
      new RegExp(`no child /wrker in this tree \\(did you mean /${name}/worker\\?\\)`),
    );
  });

  test('logs without a path: every child, prefixed compose-style, in time order', async () => {
    const r = await captree(['logs', '--state', state], root);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    for (const l of lines) assert.match(l, /^(db|api|worker) +\| \d{4}-\d\d-\d\dT[\d:.]+Z (out|err|sys)\+? /);
    assert.ok(lines.some((l) => l.startsWith('db ')));
    assert.ok(lines.some((l) => l.startsWith('api ')));
    const times = lines.map((l) => Date.parse(l.split('| ')[1]!.slice(0, 24)));
    assert.deepEqual(
      times,
      [...times].sort((a, b) => a - b),
    );
    const one = await captree(['logs', '-n', '1', 'db', '--state', state], root);
    assert.equal(one.stdout.trim().split('\n').length, 1);
    assert.match(one.stdout, /^\d{4}-.*Z (out|err|sys)/);
  });

  test('logs stay readable once the tree has stopped', async () => {
    const before = (await psJson(dir)).length;
    assert.ok(before > 0);
    const down = await captree(['down', '--state', state], root);
    assert.equal(down.code, 0, down.stderr);
    const r = await captree(['logs', '--state', state], root);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /the tree is not running; its logs, from \.\/examples\/demo\/\.captree\/logs/);
    assert.match(r.stdout, /^db +\| .* out db: listening on/m);
    assert.match(r.stdout, /^worker +\| .* sys exited/m);
    const worker = await captree(['logs', 'worker', '-n', '1', '--state', state], root);
    assert.equal(worker.code, 0, worker.stderr);
    assert.equal(worker.stdout.trim().split('\n').length, 1);
    const miss = await captree(['logs', 'wrker', '--state', state], root);
    assert.equal(miss.code, 1);
    assert.match(
      miss.stderr,
      new RegExp(`no log of /wrker in .*\\(did you mean /${name}/worker\\?\\) \\(the tree is not running\\)`),
    );
  });
});

describe('init and completion', () => {
  test('init writes a starter manifest that check accepts, and never overwrites by surprise', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'captree-init-'));
    try {
      const r = await captree(['init'], dir);
      assert.equal(r.code, 0, r.stderr);
      const check = await captree(['check'], dir);
      assert.equal(check.code, 0, check.stdout);
      assert.match(check.stdout, /^captree\.yaml: OK: tree \/app, 1 node, 1 process\n$/);
      const again = await captree(['init'], dir);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /captree\.yaml already exists .*--force/);
      assert.equal((await captree(['init', '--force'], dir)).code, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('completion bash completes commands and a command’s flags in a real bash', async () => {
    const r = await captree(['completion', 'bash'], empty);
    assert.equal(r.code, 0, r.stderr);
    const script = join(empty, 'completion.bash');
    writeFileSync(script, r.stdout);
    const out = execFileSync(
      'bash',
      [
        '-c',
        `source ${script}; COMP_WORDS=(captree res); COMP_CWORD=1; _captree; echo "\${COMPREPLY[*]}"; COMP_WORDS=(captree logs --fo); COMP_CWORD=2; _captree; echo "\${COMPREPLY[*]}"`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(out, 'restart\n--follow\n');
  });

  test('completion zsh names every command; an unknown shell is a usage error', async () => {
    const r = await captree(['completion', 'zsh'], empty);
    assert.match(r.stdout, /^#compdef captree\n/);
    for (const c of ['up', 'down', 'logs', 'init', 'completion'])
      assert.match(r.stdout, new RegExp(`'${c}:`));
    assert.equal((await captree(['completion', 'fish'], empty)).code, 2);
  });
});

describe('a failing child’s own words', () => {
  test('when a node gives up, up prints the exact reason and the child’s last log lines', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'captree-fail-'));
    try {
      const name = `ctfail${process.pid}`;
      writeFileSync(
        join(dir, 'captree.yaml'),
        [
          `name: ${name}`,
          'intensity: 0',
          'children:',
          '  - name: web',
          `    command: [sh, -c, 'echo starting; echo "sh: 1: pyhton3: not found" >&2; exit 127']`,
          '',
        ].join('\n'),
      );
      const r = await captree(['up'], dir);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`^captree: /${name}/web failed: exit code 127\\n`, 'm'));
      assert.match(r.stderr, /its last \d+ log lines \(captree logs web\):\n/);
      assert.match(r.stderr, /^ {4}\S+Z err sh: 1: pyhton3: not found$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ready means this child', () => {
  test('a tcp readiness target another process already serves: an error naming the port and that process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'captree-taken-'));
    const server = createServer((s) => s.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const name = `cttaken${process.pid}`;
      writeFileSync(
        join(dir, 'captree.yaml'),
        [
          `name: ${name}`,
          'intensity: 0',
          'children:',
          '  - name: db',
          '    command: [sleep, "100"]',
          `    ready: { tcp: 127.0.0.1:${port}, timeout: 5s }`,
          '',
        ].join('\n'),
      );
      const r = await captree(['up'], dir);
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        new RegExp(
          `/${name}/db failed: .*its readiness target 127\\.0\\.0\\.1:${port} is already served by pid ${process.pid} \\(`,
        ),
      );
      assert.doesNotMatch(r.stdout, new RegExp(`/${name}/db ready`));
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
