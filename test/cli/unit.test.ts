/**
 * `captree unit` through the real bin: the unit passes `systemd-analyze verify`, says
 * Type=notify, KillMode=mixed, Delegate=yes, with absolute paths to this install; and its
 * ExecStart, run as systemd would with NOTIFY_SOCKET on a datagram socket this test owns, sends
 * READY=1 from the daemon's own pid once every child is up (and not before), keeps the socket
 * from the children, and its ExecStop brings STOPPING=1 and a clean exit.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { accessSync, chmodSync, constants, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { skipOrFail } from '../support/host.ts';
import { captree, eventually, killAll, logText, psJson } from './helpers.ts';

/** Receives datagrams on a unix socket with the sender's credentials, one JSON line each. */
const receiver = `
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"bound": True}), flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
    print(json.dumps({"text": msg.decode(), "pid": pid}), flush=True)
`;

/** The words of a unit's `Key=` line (no quoting is needed for these paths). */
function words(unit: string, key: string): string[] {
  const line = unit.split('\n').find((l) => l.startsWith(`${key}=`));
  assert.ok(line, `no ${key}= in the unit`);
  return line.slice(key.length + 1).split(' ');
}

describe('captree unit', () => {
  let dir: string;
  let name: string;
  let unit: string;
  const started: ChildProcess[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'captree-unit-'));
    chmodSync(dir, 0o755);
    name = `ctunit${process.pid}${Math.random().toString(36).slice(2, 6)}`;
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}
children:
  - name: first
    command: [sh, -c, 'echo "notify=$\${NOTIFY_SOCKET:-none}"; exec sleep 1000']
    inheritEnv: true
    ready: { log: 'notify=' }
  - name: second
    command: [sh, -c, 'sleep 0.3; echo second up; exec sleep 1000']
    ready: { log: 'second up' }
`,
    );
    const r = await captree(['unit'], dir);
    assert.equal(r.code, 0, r.stderr);
    unit = r.stdout;
  });
  after(async () => {
    await captree(['down'], dir);
    killAll(started.map((c) => c.pid));
    rmSync(dir, { recursive: true, force: true });
  });

  test('a valid unit: Type=notify, KillMode=mixed, Delegate=yes, absolute paths to this install', async (t) => {
    assert.match(unit, /^\[Service\]$/m);
    for (const line of [
      'Type=notify',
      'NotifyAccess=main',
      'KillMode=mixed',
      'Delegate=yes',
      'Restart=on-failure',
    ])
      assert.ok(unit.split('\n').includes(line), line);
    const [node, entry, ...start] = words(unit, 'ExecStart');
    accessSync(node!, constants.X_OK);
    assert.match(execFileSync(node!, ['--version'], { encoding: 'utf8' }), /^v(2[4-9]|[3-9]\d)\./);
    assert.ok(entry?.startsWith('/') && existsSync(entry), entry);
    assert.deepEqual(start, ['up', join(dir, 'captree.yaml'), '--state', join(dir, '.captree')]);
    assert.deepEqual(words(unit, 'ExecStop'), [node, entry, 'down', '--state', join(dir, '.captree')]);
    let analyze = '';
    try {
      analyze = execFileSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).trim();
    } catch {
      skipOrFail(t, 'systemd-analyze is not installed (apt-get install systemd)');
      return;
    }
    const file = join(dir, `captree-${name}.service`);
    writeFileSync(file, unit);
    // Exit 0 and nothing said: systemd finds no fault in it.
    const out = execFileSync(analyze, ['verify', file], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    assert.equal(out, '');
  });

  test('its ExecStart tells NOTIFY_SOCKET READY=1 from the daemon’s pid once up; ExecStop: STOPPING=1', async (t) => {
    try {
      execFileSync('python3', ['--version']);
    } catch {
      skipOrFail(t, 'python3 is needed for the test’s datagram socket');
      return;
    }
    const socket = join(dir, 'notify.sock');
    const script = join(dir, 'receiver.py');
    writeFileSync(script, receiver);
    const rx = spawn('python3', [script, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    started.push(rx);
    const messages: { text?: string; pid?: number; bound?: boolean; treeUp?: boolean }[] = [];
    let lines = '';
    rx.stdout.setEncoding('utf8');
    rx.stdout.on('data', (chunk: string) => {
      lines += chunk;
      for (let i = lines.indexOf('\n'); i >= 0; i = lines.indexOf('\n')) {
        const m = JSON.parse(lines.slice(0, i));
        lines = lines.slice(i + 1);
        // What the tree looked like when the message arrived: the last child ready already?
        if (m.text?.includes('READY=1'))
          m.treeUp = logText(join(dir, '.captree'), `/${name}/second`).includes('second up');
        messages.push(m);
      }
    });
    await eventually(() => (messages.some((m) => m.bound) ? true : undefined), 'the receiver to bind');

    const [node, ...args] = words(unit, 'ExecStart');
    const env = { ...process.env, NOTIFY_SOCKET: socket, NO_COLOR: '1' };
    const up = spawn(node!, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(up);
    let output = '';
    up.stdout.on('data', (d) => {
      output += d;
    });
    up.stderr.on('data', (d) => {
      output += d;
    });
    const exited = new Promise<number | null>((resolve) => up.on('exit', (code) => resolve(code)));
    const ready = await eventually(() => messages.find((m) => m.text?.includes('READY=1')), 'READY=1');
    assert.equal(ready.pid, up.pid, 'sent in the name of the unit’s main process');
    assert.match(ready.text ?? '', new RegExp(`STATUS=/${name} is up`));
    assert.equal(ready.treeUp, true, output);
    const entries = await psJson(dir);
    assert.ok(
      entries.filter((e) => e.kind === 'process').every((e) => e.ready),
      JSON.stringify(entries),
    );
    // A child given the whole environment does not get the service manager's socket.
    assert.match(logText(join(dir, '.captree'), `/${name}/first`), /notify=none/);

    const stop = execFileSync(words(unit, 'ExecStop')[0]!, words(unit, 'ExecStop').slice(1), {
      cwd: dir,
      encoding: 'utf8',
    });
    assert.match(stop, new RegExp(`/${name} stopped`));
    assert.equal(await exited, 0, output);
    await eventually(() => messages.find((m) => m.text?.includes('STOPPING=1')), 'STOPPING=1');
    assert.equal(messages.filter((m) => m.text?.includes('READY=1')).length, 1);
    rx.kill();
  });

  test('a broken manifest: its errors, no unit', async () => {
    const broken = join(dir, 'broken.yaml');
    writeFileSync(
      broken,
      'name: x\nchildren:\n  - name: a\n    command: [sleep, "1"]\n    restart: always\n',
    );
    const r = await captree(['unit', 'broken.yaml'], dir);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /^broken\.yaml:5:14: \/x\/a restart: must be one of permanent \| transient \| temporary/,
    );
    assert.match(r.stderr, /no unit printed/);
  });
});
