/**
 * Manifest mistakes a person can act on, through `captree check`: a broken indentation reported
 * once at its line, no library warning on stderr, and the words of docker compose, PM2 and
 * systemd answered with captree's.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { captree } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'captree-words-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function check(lines: string[]) {
  writeFileSync(join(dir, 'captree.yaml'), `${lines.join('\n')}\n`);
  return captree(['check'], dir);
}

describe('indentation', () => {
  const cases: [string, string[], number, string][] = [
    [
      'a key indented less than its siblings',
      ['name: y', 'children:', '  - name: a', '    command: [sleep, "1"]', '   restart: permanent'],
      5,
      'expected a mapping here; check the indentation of line 5',
    ],
    [
      'a key indented more than its siblings',
      ['name: y', 'children:', '  - name: a', '    command: [sleep, "1"]', '      restart: permanent'],
      5,
      'expected a mapping here; check the indentation of line 5',
    ],
    [
      'a top-level key indented (the parser blames line 1)',
      ['name: y', ' children:', '  - name: a'],
      2,
      'expected a mapping here; check the indentation of line 2',
    ],
    [
      'a list item out of line',
      ['name: y', 'children:', '  - name: a', '    command: [sleep]', ' - [x]: 1'],
      5,
      'expected a mapping here; check the indentation of line 5',
    ],
    ['a tab', ['name: y', 'children:', '\t- name: a'], 3, 'tabs cannot indent; use spaces on line 3'],
  ];
  for (const [what, lines, line, message] of cases) {
    test(`${what}: one error, at line ${line}, nothing from the library on stderr`, async () => {
      const r = await check(lines);
      assert.equal(r.code, 1);
      assert.match(r.stdout, new RegExp(`^captree\\.yaml:${line}:\\d+: YAML: ${message}\\n$`));
      assert.equal(r.stderr, 'captree: 1 error(s) in captree.yaml\n');
    });
  }
});

describe('the words of other tools', () => {
  test('compose: environment, restart: always, depends_on, ports', async () => {
    const r = await check([
      'name: y',
      'children:',
      '  - name: a',
      '    command: [sleep, "1"]',
      '    environment: { A: "1" }',
      '    restart: always',
      '    depends_on: [db]',
      '    ports: ["8080:80"]',
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^captree\.yaml:5:5: \/y\/a environment: unknown field; captree calls it 'env'/m);
    assert.match(
      r.stdout,
      /^captree\.yaml:6:14: \/y\/a restart: .*captree's word for 'always' is 'permanent'$/m,
    );
    assert.match(r.stdout, /^captree\.yaml:7:5: \/y\/a depends_on: .*'requires: \{ services: \[NAME\] \}'$/m);
    assert.match(
      r.stdout,
      /^captree\.yaml:8:5: \/y\/a ports: .*'requires: \{ listen: \{ http: 127\.0\.0\.1:8080 \} \}'$/m,
    );
  });

  test('PM2 and systemd: script, autorestart, ExecStart, restart: on-failure', async () => {
    const r = await check([
      'name: y',
      'children:',
      '  - name: a',
      '    command: [sleep, "1"]',
      '    script: app.js',
      '    autorestart: false',
      '    ExecStart: /usr/bin/app',
      '    restart: on-failure',
    ]);
    assert.match(r.stdout, /script: unknown field; captree calls it 'command'/);
    assert.match(r.stdout, /autorestart: unknown field; captree says 'restart: permanent'/);
    assert.match(r.stdout, /ExecStart: unknown field; captree calls it 'command'/);
    assert.match(r.stdout, /captree's word for 'on-failure' is 'transient'/);
  });
});
