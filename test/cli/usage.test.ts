/** The CLI's surface without a running tree: help, usage errors, exit codes, check, doctor. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { captree, repo } from './helpers.ts';

const commands = [
  'up',
  'down',
  'ps',
  'logs',
  'start',
  'stop',
  'restart',
  'signal',
  'reload',
  'events',
  'check',
  'doctor',
  'unit',
];
const empty = mkdtempSync(join(tmpdir(), 'captree-usage-'));
after(() => rmSync(empty, { recursive: true, force: true }));

describe('help and usage', () => {
  test('captree --help lists every command', async () => {
    const r = await captree(['--help'], empty);
    assert.equal(r.code, 0);
    for (const c of commands) assert.match(r.stdout, new RegExp(`^  ${c} `, 'm'));
  });

  for (const c of commands) {
    test(`captree ${c} --help: usage, what it does, options, an example; exit 0`, async () => {
      const r = await captree([c, '--help'], empty);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^Usage: captree ${c}`));
      assert.match(r.stdout, /\nOptions:\n/);
      assert.match(r.stdout, /Example:\n {2}captree /);
      assert.equal(r.stderr, '');
    });
  }

  test('an unknown command exits 2 with one line on stderr', async () => {
    const r = await captree(['frobnicate'], empty);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^captree: unknown command 'frobnicate' \(see: captree --help\)\n$/);
  });

  test('an unknown flag exits 2', async () => {
    const r = await captree(['ps', '--frob'], empty);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^captree ps: .*--frob.*\(see: captree ps --help\)\n$/);
  });

  test('a missing or extra argument exits 2', async () => {
    assert.equal((await captree(['restart'], empty)).code, 2);
    assert.equal((await captree(['ps', 'one', 'extra'], empty)).code, 2);
    assert.equal((await captree(['signal', 'web'], empty)).code, 2);
    assert.equal((await captree(['events', '--since', 'yesterday'], empty)).code, 2);
  });

  test('without a running tree: exit 1, one actionable line', async () => {
    for (const args of [['ps'], ['events'], ['logs', '/x/y'], ['restart', '/x/y']]) {
      const r = await captree(args, empty);
      assert.equal(r.code, 1, args.join(' '));
      assert.equal(r.stderr, 'captree: no running tree in ./.captree (start one with: captree up)\n');
    }
  });

  test('up without a manifest: exit 1, says what to do', async () => {
    const r = await captree(['up'], empty);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^captree: no manifest at captree.yaml \(create one, or name it: captree up FILE\)\n$/,
    );
  });
});

describe('check', () => {
  test('a valid manifest: one-line summary, exit 0', async () => {
    const r = await captree(['check', join(repo, 'examples/demo/captree.yaml')], empty);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /captree.yaml: OK: tree \/demo, 1 node, 3 processes\n$/);
  });

  test('--json', async () => {
    const r = await captree(['check', '--json', join(repo, 'examples/demo/captree.yaml')], empty);
    assert.equal(r.code, 0);
    const out = JSON.parse(r.stdout);
    assert.deepEqual([out.ok, out.nodes, out.processes, out.errors], [true, 1, 3, []]);
  });

  test('a malformed manifest: every error with file:line:col, exit 1', async () => {
    const file = join(empty, 'bad.yaml');
    writeFileSync(
      file,
      [
        'name: bad',
        'strategy: sideways',
        'children:',
        '  - name: a',
        '    command: [sleep, "100"]',
        '    restart: sometimes',
        '  - name: b',
        '    command: [sleep, "100"]',
        '    shutdown: soon',
        '',
      ].join('\n'),
    );
    const r = await captree(['check', 'bad.yaml'], empty);
    assert.equal(r.code, 1);
    const lines = r.stdout.trim().split('\n');
    assert.ok(lines.length >= 3, r.stdout);
    for (const l of lines) assert.match(l, /^bad\.yaml:\d+:\d+: /);
    assert.match(r.stdout, /^bad\.yaml:2:\d+: .*strategy/m);
    assert.match(r.stdout, /^bad\.yaml:6:\d+: .*restart/m);
    assert.match(r.stdout, /^bad\.yaml:9:\d+: .*shutdown/m);
    const json = JSON.parse((await captree(['check', '--json', 'bad.yaml'], empty)).stdout);
    assert.equal(json.ok, false);
    assert.equal(json.errors.length, lines.length);
  });
});

describe('doctor', () => {
  test('--json reports the host and the launcher', async () => {
    const r = await captree(['doctor', '--json'], empty);
    const out = JSON.parse(r.stdout);
    assert.equal(typeof out.host.kernel, 'string');
    assert.equal(typeof out.host.cgroups.layout, 'string');
    assert.equal(typeof out.launcher.ok, 'boolean');
    assert.equal(r.code, out.launcher.ok ? 0 : 1);
  });

  test('human output', async () => {
    const r = await captree(['doctor'], empty);
    assert.match(r.stdout, /^kernel /);
    assert.match(r.stdout, /\nlauncher: /);
  });
});
