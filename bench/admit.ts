/**
 * Admission latency: `POST /v1/nodes/{node}/children` → `201` (the child is running: a trivial
 * `sleep infinity` with no readiness check) for N sequential admissions into a node of an
 * in-process daemon on the real runtime (launcher, cgroups, state.json fsync, journal), each
 * revoked after (not timed). Then the shell case, as `captree shell` does it: admission of
 * `ptyrelay --hide STATE --ro /sys/fs/cgroup SOCKET -- $SHELL -l` → the relay connected back →
 * the shell's first output (its prompt) = shell ready (HOME an empty directory, so that the
 * user's dotfiles are not measured), over SHELLS sequential sessions, each
 * ended by typing `exit` (not timed). Printed beside the spawn-only cost of `sleep` through
 * the launcher, the physical floor, as ratios.
 *
 *   node_modules/.bin/node bench/admit.ts [N=1000] [SHELLS=N]
 *
 * N trivial admissions, N `/bin/sh -l` shells (the floor of a shell), SHELLS login shells.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from '../src/daemon/index.ts';
import { loadManifest } from '../src/manifest/index.ts';
import { Launcher } from '../src/runtime/launcher/client.ts';
import { ptyrelayBinary } from '../src/runtime/pty/build.ts';
import { dataFrames, RelayDecoder, sizeFrame } from '../src/runtime/pty/protocol.ts';
import { RelayListener } from '../src/runtime/pty/session.ts';

const n = Number(process.argv[2] ?? 1000);
const shells = Number(process.argv[3] ?? n);
const dir = mkdtempSync(join(tmpdir(), 'captree-bench-admit-'));
const name = `bench${process.pid}`;
writeFileSync(
  join(dir, 'captree.yaml'),
  `name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 1024 }
children:
  - name: pool
    strategy: dynamic
    requires: { cpu: 0.5, memory: 256Mi, pids: 256 }
    admission: {}
    children: []
`,
);

function call(socket: string, method: string, path: string, body?: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, path, method, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

const parsed = await loadManifest(join(dir, 'captree.yaml'));
if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
const daemon = await startDaemon({ manifest: parsed.tree, stateDir: join(dir, '.captree') });
await daemon.started;
const socket = daemon.paths.socket;
const admitOnce = async (i: number): Promise<number> => {
  const t0 = performance.now();
  const status = await call(socket, 'POST', `/v1/nodes/${name}/pool/children`, {
    requestId: `bench-${i}`,
    spec: { name: `c${i}`, command: ['sleep', 'infinity'], requires: { cpu: 0.01, memory: '1Mi' } },
  });
  const ms = performance.now() - t0;
  if (status !== 201) throw new Error(`admission ${i} answered ${status}`);
  const revoked = await call(socket, 'DELETE', `/v1/children/${name}/pool/c${i}`);
  if (revoked !== 200) throw new Error(`revoke ${i} answered ${revoked}`);
  return ms;
};
for (let i = 0; i < 20; i++) await admitOnce(-1 - i); // warm up
const admitMs: number[] = [];
for (let i = 0; i < n; i++) admitMs.push(await admitOnce(i));

// Shells: what `captree shell` runs (src/cli/commands/shell.ts), minus the user's terminal.
const relay = await ptyrelayBinary();
const loginShell = process.env.SHELL?.startsWith('/') ? process.env.SHELL : '/bin/sh';
const readOnly = existsSync('/sys/fs/cgroup') ? ['--ro', '/sys/fs/cgroup'] : [];
const sessions = join(dir, 's');
mkdirSync(sessions, { mode: 0o700 });
// The user's dotfiles (pyenv, nvm, ...) are not the shell's cost and may block: an empty HOME.
const home = join(dir, 'home');
mkdirSync(home, { mode: 0o755 });
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
interface ShellTimes {
  granted: number;
  connected: number;
  ready: number;
}
const shellOnce = async (i: number, program: string[]): Promise<ShellTimes> => {
  const listener = await RelayListener.listen(join(sessions, `${i < 0 ? `w${-i}` : i}.sock`));
  const t0 = performance.now();
  const status = await call(socket, 'POST', `/v1/nodes/${name}/pool/children`, {
    requestId: `shell-${i}`,
    spec: {
      name: `sh${i < 0 ? `w${-i}` : i}`,
      command: [relay, '--hide', daemon.paths.dir, ...readOnly, listener.path, '--', ...program],
      restart: 'temporary',
      env: { TERM: 'xterm-256color', HOME: home },
      requires: { cpu: 0.5, memory: '64Mi' },
    },
  });
  const granted = performance.now() - t0;
  if (status !== 201) throw new Error(`shell admission ${i} answered ${status}`);
  const conn = await listener.accept(15_000);
  const connected = performance.now() - t0;
  listener.close();
  conn.write(sizeFrame(24, 80));
  const decoder = new RelayDecoder();
  let ready = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`shell ${i}: no output and exit within 15 s`)), 15_000);
    conn.once('close', () => clearTimeout(timer));
    conn.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        if (f.type === 'data' && ready === 0) {
          ready = performance.now() - t0;
          conn.write(dataFrames(Buffer.from('exit\n')));
        } else if (f.type === 'exit') resolve();
        else if (f.type === 'error') reject(new Error(`shell ${i}: ${f.message}`));
      }
    });
    conn.on('close', () => (ready > 0 ? resolve() : reject(new Error(`shell ${i}: lost`))));
    conn.resume();
  });
  conn.destroy();
  // The temporary child ended with its shell: 404 when it already gave its budget back.
  const revoked = await call(socket, 'DELETE', `/v1/children/${name}/pool/sh${i < 0 ? `w${-i}` : i}`);
  if (revoked !== 200 && revoked !== 404) throw new Error(`shell revoke ${i} answered ${revoked}`);
  return { granted, connected, ready };
};
const shellTimes: ShellTimes[] = [];
const shTimes: ShellTimes[] = [];
try {
  const sh = ['/bin/sh', '-l'];
  for (let i = 0; i < 5; i++) await shellOnce(-1 - i, sh); // warm up
  for (let i = 0; i < n; i++) shTimes.push(await shellOnce(n + i, sh));
  for (let i = 0; i < shells; i++) shellTimes.push(await shellOnce(i, [loginShell, '-l']));
} finally {
  // A failed session must not leave the tree (launcher, cgroups) behind.
  await daemon.stop();
}
await daemon.finished;

const launcher = await Launcher.start();
const env = { PATH: '/usr/bin:/bin' };
const spawnOnce = async (): Promise<number> => {
  const t0 = performance.now();
  const child = await launcher.spawn({ argv: ['sleep', 'infinity'], env });
  const ms = performance.now() - t0;
  await launcher.kill(child.pid, 'SIGKILL');
  await child.exited;
  return ms;
};
for (let i = 0; i < 20; i++) await spawnOnce();
const spawnMs: number[] = [];
for (let i = 0; i < n; i++) spawnMs.push(await spawnOnce());
await launcher.close();
rmSync(dir, { recursive: true, force: true });

admitMs.sort((a, b) => a - b);
spawnMs.sort((a, b) => a - b);
const sorted = (xs: ShellTimes[], k: keyof ShellTimes) => xs.map((t) => t[k]).sort((a, b) => a - b);
const shellReady = sorted(shellTimes, 'ready');
const shReady = sorted(shTimes, 'ready');
const row = (label: string, xs: number[]) =>
  `${label.padEnd(50)}${pct(xs, 50).toFixed(2).padStart(9)}${pct(xs, 99).toFixed(2).padStart(9)}`;
const ratio = (a: number[], b: number[]) =>
  `p50 ${(pct(a, 50) / pct(b, 50)).toFixed(1)}x, p99 ${(pct(a, 99) / pct(b, 99)).toFixed(1)}x`;
console.log(
  `node ${process.version}, ${n} sequential admissions of sleep infinity (each revoked after), ` +
    `${n} sequential /bin/sh -l and ${shells} ${loginShell} -l shells under ptyrelay (cpu 0.5 each; ended by typing exit)`,
);
console.log(`${'case'.padEnd(50)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}`);
console.log(row('admission: POST → 201 (child running)', admitMs));
console.log(row('sh: POST → 201 (relay running)', sorted(shTimes, 'granted')));
console.log(row('sh: POST → relay connected back', sorted(shTimes, 'connected')));
console.log(row('sh: POST → first output (shell ready)', shReady));
console.log(row(`${loginShell}: POST → relay connected back`, sorted(shellTimes, 'connected')));
console.log(row(`${loginShell}: POST → first output (shell ready)`, shellReady));
console.log(row('spawn only: launcher spawn → pid', spawnMs));
console.log(`ratio admission/spawn: ${ratio(admitMs, spawnMs)}`);
console.log(
  `ratio sh ready/admission: ${ratio(shReady, admitMs)}; sh ready/spawn: ${ratio(shReady, spawnMs)}`,
);
console.log(
  `ratio ${loginShell} ready/admission: ${ratio(shellReady, admitMs)}; ${loginShell} ready/spawn: ${ratio(shellReady, spawnMs)}`,
);
