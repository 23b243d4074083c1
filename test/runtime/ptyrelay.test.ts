/**
 * ptyrelay on its own, without a daemon: the client end (`relaySession`) against the real relay
 * binary, a terminal made of streams. The terminal as a person sees it is tested through tmux in
 * test/cli/shell.test.ts.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { ptyrelayBinary } from '../../src/runtime/pty/build.ts';
import { dataFrames, RelayDecoder, sizeFrame } from '../../src/runtime/pty/protocol.ts';
import { RelayListener, relaySession } from '../../src/runtime/pty/session.ts';

const dirs: string[] = [];
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function terminal(rows = 24, columns = 80) {
  const input = new PassThrough();
  let text = '';
  const output = Object.assign(
    new Writable({
      write(chunk, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    }),
    { rows, columns },
  );
  return { input, output, text: () => text };
}

async function start(args: string[], program: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'captree-pty-'));
  dirs.push(dir);
  const listener = await RelayListener.listen(join(dir, 's', 'relay.sock'));
  const relay = spawn(await ptyrelayBinary(), [...args, listener.path, '--', ...program], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(relay);
  let stderr = '';
  relay.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => relay.on('exit', (code) => resolve(code)));
  const socket = await listener.accept(10_000);
  listener.close();
  return { dir, socket, relay, exited, stderr: () => stderr };
}

describe('ptyrelay', () => {
  test('starts the program on a terminal of the size asked, relays both ways, reports the exit code', async () => {
    const { socket, exited } = await start(['--no-isolate'], ['/bin/sh']);
    const term = terminal(33, 101);
    let pid = 0;
    const ended = relaySession(socket, term, (p) => {
      pid = p;
    });
    term.input.write('tty >/dev/null && echo TTY-$((1+1)) $(stty size); exit 3\n');
    const end = await ended;
    socket.end();
    assert.deepEqual(end, { kind: 'exit', code: 3, signal: null, exitCode: 3 });
    assert.match(term.text(), /TTY-2 33 101/);
    assert.ok(pid > 0);
    assert.equal(await exited, 0);
  });

  test('a signal that kills the program is reported as 128 + N', async () => {
    const { socket } = await start(['--no-isolate'], ['/bin/sh', '-c', 'kill -TERM $$']);
    const end = await relaySession(socket, terminal());
    socket.end();
    assert.deepEqual(end, { kind: 'exit', code: null, signal: 15, exitCode: 143 });
  });

  test('the client going away hangs the terminal up: the program and the relay end', async () => {
    const { socket, exited } = await start(['--no-isolate'], ['/bin/sh']);
    const decoder = new RelayDecoder();
    let out = '';
    const started = new Promise<void>((resolve) =>
      socket.on('data', (c: Buffer) => {
        for (const f of decoder.push(c)) if (f.type === 'data') out += f.data.toString();
        if (out.includes('SLEEP-7')) resolve();
      }),
    );
    socket.resume();
    socket.write(sizeFrame(24, 80));
    socket.write(dataFrames(Buffer.from('echo SLEEP-$((3+4)); exec sleep 100\n')));
    await started;
    const t0 = Date.now();
    socket.destroy();
    assert.equal(await exited, 0);
    assert.ok(Date.now() - t0 < 5000, 'ended within the hangup grace period');
  });

  test('isolated: PID 1 of its own /proc, hidden directories, services kept, cgroups read-only', {
    skip: process.getuid?.() !== 0 && 'needs root (as captree runs children)',
  }, async () => {
    const base = mkdtempSync(join(tmpdir(), 'captree-pty-hide-'));
    dirs.push(base);
    writeFileSync(join(base, 'secret'), 'hidden-value');
    mkdirSync(join(base, 'services', 'x'), { recursive: true });
    writeFileSync(join(base, 'services', 'x', 'sock'), 'kept');
    const env = { ...process.env, CAPTREE_SERVICE_X: `unix:${join(base, 'services', 'x', 'sock')}` };
    const dir = mkdtempSync(join(tmpdir(), 'captree-pty-'));
    dirs.push(dir);
    const listener = await RelayListener.listen(join(dir, 'relay.sock'));
    const relay = spawn(
      await ptyrelayBinary(),
      ['--hide', base, '--ro', '/sys/fs/cgroup', listener.path, '--', '/bin/sh'],
      { stdio: 'ignore', env },
    );
    children.push(relay);
    const socket = await listener.accept(10_000);
    listener.close();
    const term = terminal();
    const ended = relaySession(socket, term);
    term.input.write(
      [
        'H=hid; R=read',
        'echo PID-$$',
        `echo PROCS-$(ls /proc | grep -c '^[0-9]')`,
        `cat ${base}/secret 2>/dev/null || echo SECRET-\${H}den`,
        `cat ${base}/services/x/sock`,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion
        '(touch /sys/fs/cgroup/cpu/x) 2>/dev/null && echo CG-writable || echo CG-${R}only',
        'exit 0',
        '',
      ].join('\n'),
    );
    const end = await ended;
    socket.end();
    const text = term.text();
    assert.equal(end.kind, 'exit', text);
    assert.match(text, /PID-1\b/);
    assert.match(text, /PROCS-[1-4]\b/);
    assert.match(text, /SECRET-hidden/);
    assert.doesNotMatch(text, /hidden-value/);
    assert.match(text, /kept/);
    assert.match(text, /CG-readonly/);
  });
});
