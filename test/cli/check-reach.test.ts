/**
 * `check` (and so `up`) finds at validation time what would otherwise fail only at run time: a
 * mistyped command, a directory as a command, and a `user:` child that cannot reach its command,
 * its script or its cwd (a checkout under a 0700 home directory).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { captree } from './helpers.ts';

// mkdtemp makes a 0700 directory: like a clone under /root, nobody may enter it.
const home = mkdtempSync(join(tmpdir(), 'captree-reach-'));
after(() => rmSync(home, { recursive: true, force: true }));

function manifest(dir: string, children: string[]): void {
  writeFileSync(join(dir, 'captree.yaml'), ['name: reach', 'children:', ...children, ''].join('\n'));
}

describe('check sees what would fail at run time', () => {
  test('a mistyped command gets did you mean; a directory is not a program', async () => {
    mkdirSync(join(home, 'cmd'));
    manifest(join(home, 'cmd'), [
      '  - name: a',
      '    command: [slep, "1"]',
      '  - name: b',
      '    command: [/usr/bin]',
      '  - name: c',
      '    command: [sleep, "1"]',
    ]);
    const r = await captree(['check'], join(home, 'cmd'));
    assert.equal(r.code, 1);
    assert.equal(
      r.stdout,
      [
        'captree.yaml:4:14: /reach/a command: command slep not found on PATH (did you mean sleep?)',
        'captree.yaml:6:14: /reach/b command: command /usr/bin is a directory, not a program',
        '',
      ].join('\n'),
    );
    const up = await captree(['up'], join(home, 'cmd'));
    assert.equal(up.code, 1);
    assert.match(up.stderr, /command slep not found on PATH/);
  });

  test('a user: child whose script and cwd sit under a 0700 directory: named at check time', async () => {
    const dir = join(home, 'app');
    mkdirSync(dir);
    writeFileSync(join(dir, 'app.sh'), 'exit 0\n');
    manifest(dir, ['  - name: web', '    user: nobody', '    command: [/bin/sh, app.sh]']);
    const r = await captree(['check'], dir);
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      new RegExp(
        `^captree.yaml:4:11: /reach/web user: nobody cannot read app.sh: ${home} is 0700 owned by uid 0: nobody may not enter it$`,
        'm',
      ),
    );
    assert.match(r.stdout, /nobody cannot enter its cwd/);
    // Opened up (as a checkout outside a home directory would be), the same manifest is fine.
    chmodSync(home, 0o755);
    try {
      const ok = await captree(['check'], dir);
      assert.equal(ok.code, 0, ok.stdout);
    } finally {
      chmodSync(home, 0o700);
    }
  });
});
