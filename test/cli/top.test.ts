/**
 * `captree top` in a real terminal: tmux (its own server socket) runs the bin against an
 * in-process daemon on the real runtime; the test reads the screen with capture-pane, sends keys
 * with send-keys, sees a busy child's use clamped to its grant, a kill -9 as a restart, the
 * sort and filter keys, and `q` ending the process (tmux wait-for, no polling for the exit).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Daemon, type JournalRecord, startDaemon } from '../../src/daemon/index.ts';
import { loadManifest } from '../../src/manifest/index.ts';
import { skipOrFail } from '../support/host.ts';
import { bin, captree, node } from './helpers.ts';

function tmux(socket: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('tmux', ['-L', socket, ...args], (err, stdout, stderr) =>
      err ? reject(new Error(`tmux ${args[0]}: ${stderr || err.message}`)) : resolve(stdout),
    ),
  );
}

describe('captree top (tmux)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-top-'));
  const name = `top${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const socket = `captree-test-top-${process.pid}`;
  const done = `${socket}-done`;
  let daemon: Daemon;
  const waiters: [(r: JournalRecord) => boolean, () => void][] = [];
  const hasTmux = existsSync('/usr/bin/tmux');

  /** The screen now. */
  const screen = () => tmux(socket, 'capture-pane', '-p', '-t', 'top');
  /** Reads the screen until `match` holds; a terminal gives no event, so this is bounded polling. */
  const until = async (match: (text: string) => boolean, what: string): Promise<string> => {
    let text = '';
    for (let i = 0; i < 100; i++) {
      text = await screen();
      if (match(text)) return text;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`${what} never appeared on the screen:\n${text}`);
  };

  before(async () => {
    writeFileSync(join(dir, 'admin.token'), 'top-admin-token-0123456789\n');
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}
intensity: 3
period: 60s
requires: { cpu: 1.0, memory: 256Mi, pids: 128 }
children:
  - name: spin
    command: [sh, -c, 'while :; do :; done']
    requires: { cpu: 0.1, memory: 32Mi, pids: 8 }
  - name: idle
    command: [sleep, infinity]
    requires: { cpu: 0.05, memory: 16Mi, pids: 4 }
`,
    );
    const m = await loadManifest(join(dir, 'captree.yaml'));
    assert.ok(m.ok);
    daemon = await startDaemon({
      manifest: m.tree,
      stateDir: join(dir, '.captree'),
      tcp: { host: '127.0.0.1', port: 0, token: 'top-admin-token-0123456789' },
      onEvent: (r) => {
        for (const w of waiters.splice(0))
          if (w[0](r)) w[1]();
          else waiters.push(w);
      },
    });
    await daemon.started;
  });

  after(async () => {
    if (hasTmux) await tmux(socket, 'kill-server').catch(() => {});
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
  });

  test('live view: bars clamped to the grant, a kill -9 seen as a restart, keys, q quits', async (t) => {
    if (!hasTmux) return skipOrFail(t, 'no tmux (apt-get install -y tmux)');
    const command = `cd ${dir} && NO_COLOR=1 ${node} ${bin} top -d 0.2; tmux wait-for -S ${done}`;
    await tmux(socket, 'new-session', '-d', '-s', 'top', '-x', '180', '-y', '30', command);
    const first = await until((s) => /spin +running/.test(s) && /0\.10\/0\.10/.test(s), 'spin at its quota');
    assert.match(first, new RegExp(`captree top /${name}`));
    assert.match(first, /idle +running/);
    // The busy loop can use no more than its 0.10 core: the bar is full, the figure clamped.
    const spin = first.split('\n').find((l) => /spin +running/.test(l)) ?? '';
    assert.match(spin, /\[##########\] 0\.10\/0\.10/);
    assert.doesNotMatch(first, /0\.1[1-9]\/0\.10/);

    const pid = daemon.tree.supervisor.tree().find((e) => e.path === `/${name}/idle`)?.pid as number;
    const restarted = new Promise<void>((resolve) =>
      waiters.push([(r) => r.type === 'started' && r.path === `/${name}/idle`, resolve]),
    );
    process.kill(pid, 'SIGKILL');
    await restarted;
    const after = await until(
      (s) => /idle +running +\d+ .* 1 *$/m.test(s) && s.includes('1/3'),
      'idle restarted once, the root intensity at 1/3',
    );
    assert.match(after, /\[### {7}\] 1\/3/);

    await tmux(socket, 'send-keys', '-t', 'top', 'r');
    await until((s) => s.includes('sort: restarts'), 'sort by restarts');
    await tmux(socket, 'send-keys', '-t', 'top', '/', 'i', 'd', 'l', 'e', 'Enter');
    const filtered = await until((s) => s.includes('filter: idle') && !/spin/.test(s), 'filter idle');
    assert.match(filtered, /idle/);

    const exited = tmux(socket, 'wait-for', done);
    await tmux(socket, 'send-keys', '-t', 'top', 'q');
    await exited;
  });

  test('a short terminal: the rows it has room for, and how many more there are', async (t) => {
    if (!hasTmux) return skipOrFail(t, 'no tmux (apt-get install -y tmux)');
    // 7 lines: 4 of header, the last kept free, so 2 rows: the root and a line saying 2 more.
    const command = `cd ${dir} && NO_COLOR=1 ${node} ${bin} top; tmux wait-for -S ${done}-short`;
    await tmux(socket, 'new-session', '-d', '-s', 'short', '-x', '180', '-y', '7', command);
    const text = await (async () => {
      for (let i = 0; i < 100; i++) {
        const s = await tmux(socket, 'capture-pane', '-p', '-t', 'short');
        if (/more/.test(s)) return s;
        await new Promise((r) => setTimeout(r, 100));
      }
      return tmux(socket, 'capture-pane', '-p', '-t', 'short');
    })();
    assert.match(text, new RegExp(`^/${name} +ready`, 'm'));
    assert.match(text, /… 2 more/);
    assert.doesNotMatch(text, /spin|idle/);
    assert.match(text, /3\/3 up/);
    const exited = tmux(socket, 'wait-for', `${done}-short`);
    await tmux(socket, 'send-keys', '-t', 'short', 'q');
    await exited;
  });

  test('over --url with the admin token: the subtree at PATH', async (t) => {
    if (!hasTmux) return skipOrFail(t, 'no tmux (apt-get install -y tmux)');
    const url = daemon.info().tcp as string;
    const command = `cd /tmp && NO_COLOR=1 ${node} ${bin} top /${name}/spin --url ${url} --token-file ${dir}/admin.token; tmux wait-for -S ${done}-url`;
    await tmux(socket, 'new-session', '-d', '-s', 'remote', '-x', '180', '-y', '30', command);
    const text = await (async () => {
      for (let i = 0; i < 100; i++) {
        const s = await tmux(socket, 'capture-pane', '-p', '-t', 'remote');
        if (/spin +running/.test(s)) return s;
        await new Promise((r) => setTimeout(r, 100));
      }
      return tmux(socket, 'capture-pane', '-p', '-t', 'remote');
    })();
    assert.match(text, /spin +running/);
    assert.doesNotMatch(text, /idle/);
    const exited = tmux(socket, 'wait-for', `${done}-url`);
    await tmux(socket, 'send-keys', '-t', 'remote', 'q');
    await exited;
  });

  test('bad input: an unknown PATH, a bad -d, no terminal', async () => {
    const unknown = await captree(['top', `/${name}/nope`], dir);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no node or child .*nope/);
    const bad = await captree(['top', '-d', '0'], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /-d 0: expected seconds/);
    const noTty = await captree(['top'], dir);
    assert.equal(noTty.code, 1);
    assert.match(noTty.stderr, /needs a terminal/);
  });
});
