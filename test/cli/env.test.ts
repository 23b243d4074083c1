// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the manifest syntax under test is ${VAR}
/**
 * `envFile:` and `${VAR}` interpolation with docker compose's semantics, through the real bin:
 * what the child gets in its environment, and an unset `${VAR:?message}` as a check error.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { captree, killAll } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'captree-env-'));
let daemon: number | undefined;
after(async () => {
  await captree(['down'], dir);
  killAll([daemon]);
  rmSync(dir, { recursive: true, force: true });
});

describe('env files and interpolation', () => {
  test('the child gets envFile under env, ${VAR:-default}, ${VAR} from the environment and .env', async () => {
    const name = `ctenv${process.pid}`;
    writeFileSync(
      join(dir, 'app.env'),
      'A=from-file\nB="two words # kept"\n# a comment\nexport C=file # trailing\n',
    );
    writeFileSync(join(dir, '.env'), 'DOT=from-dotenv\n');
    writeFileSync(
      join(dir, 'captree.yaml'),
      [
        `name: ${name}`,
        'children:',
        '  - name: app',
        `    command: [sh, -c, 'echo "A=$$A B=$$B C=$$C PORT=$$PORT WHO=$$WHO DOT=$$DOT"; exec sleep 1000']`,
        '    envFile: app.env',
        '    env:',
        '      C: from-env',
        '      PORT: ${CT_TEST_PORT:-8080}',
        '      WHO: ${CT_TEST_WHO}',
        '      DOT: $DOT',
        '    ready: { log: "^A=" }',
        '',
      ].join('\n'),
    );
    const up = await captree(['up', '-d'], dir, { CT_TEST_WHO: 'operator' });
    assert.equal(up.code, 0, up.stderr);
    daemon = Number(/daemon pid (\d+)/.exec(up.stdout)?.[1]);
    const logs = await captree(['logs', 'app'], dir);
    assert.match(
      logs.stdout,
      /out A=from-file B=two words # kept C=from-env PORT=8080 WHO=operator DOT=from-dotenv\n/,
    );
  });

  test('${VAR:?message} unset and a missing envFile are check errors at their place', async () => {
    const sub = mkdtempSync(join(dir, 'bad-'));
    writeFileSync(
      join(sub, 'captree.yaml'),
      [
        'name: y',
        'children:',
        '  - name: a',
        '    command: [sleep, "${CT_TEST_SECS:?how long to sleep}"]',
        '',
      ].join('\n'),
    );
    const r = await captree(['check'], sub);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, 'captree.yaml:4:22: ${CT_TEST_SECS} is not set: how long to sleep\n');
    writeFileSync(
      join(sub, 'captree.yaml'),
      ['name: y', 'children:', '  - name: a', '    command: [sleep, "1"]', '    envFile: nope.env', ''].join(
        '\n',
      ),
    );
    const missing = await captree(['check'], sub);
    assert.equal(missing.code, 1);
    assert.match(missing.stdout, /^captree\.yaml:5:14: \/y\/a envFile: cannot read .*nope\.env: ENOENT\n$/);
  });
});
