/**
 * `captree shell` in a real terminal: tmux (on a server of its own) runs the command in a pane,
 * the test types with `send-keys` and reads the screen with `capture-pane`, the terminal's only
 * interface. The tree is a temp copy of examples/dev-shell with room for two shells: a sibling
 * subtree holds a secret, a sibling provides a unix service routed to the shells, and the shells
 * have no network (`net: none`).
 *
 * Every command typed prints a marker computed by the shell (`M-$((40+2))` prints `M-42`), so a
 * match is the shell's output, never the echo of what was typed.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { readPid, statePaths } from '../../src/daemon/index.ts';
import { alive, bin, captree, cgroupsNamed, type Entry, killAll, node, psJson, repo } from './helpers.ts';

const TOKEN = 'not-a-real-token-9f8e7d';

describe('captree shell, driven through tmux', () => {
  let dir: string;
  let name: string;
  let daemonPid: number | null = null;
  const server = `ctsh${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const seen = new Set<number>();
  let hostServer: Server;
  let hostPort = 0;
  let hostConnections = 0;

  const tmux = (...args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile('tmux', ['-L', server, ...args], { timeout: 20_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`tmux ${args[0]}: ${stderr || err.message}`)) : resolve(stdout),
      );
    });

  /** `=NAME:`: exactly the session NAME (a bare `b` may match a window named `bash` elsewhere). */
  const at = (s: string) => `=${s}:`;
  const screen = (s: string) => tmux('capture-pane', '-p', '-J', '-t', at(s));

  /** Polls the screen (bounded) until it matches; returns it. */
  async function waitFor(s: string, pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let text = '';
    while (Date.now() < deadline) {
      text = await screen(s);
      if (pattern.test(text)) return text;
      await delay(40);
    }
    assert.fail(`screen of ${s} never showed ${pattern} within ${timeoutMs} ms; it shows:\n${text}`);
  }

  /** Types a command line and waits for `marker` (which the command must print) on the screen. */
  async function run(s: string, line: string, marker: RegExp, timeoutMs?: number): Promise<string> {
    await tmux('send-keys', '-t', at(s), '-l', line);
    await tmux('send-keys', '-t', at(s), 'Enter');
    return waitFor(s, marker, timeoutMs);
  }

  /** Starts `captree shell` in a new session; its exit code lands in `exit-<s>`, then `done-<s>` is signalled. */
  async function open(s: string): Promise<number> {
    const t0 = performance.now();
    const cmd = `cd ${dir} && ${node} ${bin} shell /${name}/shells; echo EXIT=$? > ${dir}/exit-${s}; tmux -L ${server} wait-for -S done-${s}`;
    await tmux('new-session', '-d', '-s', s, '-x', '120', '-y', '40', cmd);
    await run(s, 'echo READY-$((40+2))', /READY-42/);
    return performance.now() - t0;
  }

  /** Ends a session's shell with `exit CODE`; resolves with `captree shell`'s exit code. */
  async function close(s: string, code: number): Promise<number> {
    const done = tmux('wait-for', `done-${s}`);
    await tmux('send-keys', '-t', at(s), '-l', `exit ${code}`);
    await tmux('send-keys', '-t', at(s), 'Enter');
    await done.catch(async (err: Error) => {
      assert.fail(`${err.message}; the screen of ${s} shows:\n${await screen(s).catch(() => '(gone)')}`);
    });
    const m = /EXIT=(\d+)/.exec(readFileSync(join(dir, `exit-${s}`), 'utf8'));
    return Number(m?.[1]);
  }

  // Root's own files outside the shell's working directory (and outside /tmp, which stays writable).
  const vault = mkdtempSync('/var/lib/captree-test-shell-vault-');
  const vaultFile = join(vault, 'owned-by-root.txt');

  const shellsOf = (entries: Entry[]) => entries.filter((e) => e.path.startsWith(`/${name}/shells/`));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'captree-shell-'));
    chmodSync(vault, 0o700);
    writeFileSync(vaultFile, 'root only\n');
    cpSync(join(repo, 'examples/dev-shell'), dir, {
      recursive: true,
      filter: (src) => !src.includes('/.captree'),
    });
    name = `sh${process.pid}${Math.random().toString(36).slice(2, 6)}`;
    const file = join(dir, 'captree.yaml');
    const text = readFileSync(file, 'utf8')
      .replace(/^name: devbox$/m, `name: ${name}`)
      // Room for two shells of 0.2 cores / 128Mi each (the admission template's).
      .replace(
        'requires: { cpu: 0.8, memory: 768Mi, pids: 256,',
        'requires: { cpu: 0.4, memory: 256Mi, pids: 256,',
      );
    assert.notEqual(text, readFileSync(file, 'utf8'));
    writeFileSync(file, text);
    hostServer = createServer((c) => {
      hostConnections++;
      c.destroy();
    });
    await new Promise<void>((resolve) => hostServer.listen(0, '127.0.0.1', resolve));
    hostPort = (hostServer.address() as { port: number }).port;
    const up = await captree(['up', '--detach'], dir);
    daemonPid = readPid(statePaths(join(dir, '.captree')));
    assert.equal(up.code, 0, up.stderr);
    for (const e of await psJson(dir)) if (e.pid !== null) seen.add(e.pid);
  });

  after(async () => {
    try {
      execFileSync('tmux', ['-L', server, 'kill-server'], { stdio: 'ignore' });
    } catch {
      // no server left
    }
    if (daemonPid !== null && alive([daemonPid]).length > 0) {
      const r = await captree(['down'], dir);
      if (r.code !== 0) killAll([daemonPid, ...seen]);
      else assert.equal(existsSync(join(dir, '.captree/shells')), false, 'down removes every session dir');
    }
    hostServer?.close();
    assert.deepEqual(cgroupsNamed(name), [], 'no cgroup of the tree is left');
    rmSync(dir, { recursive: true, force: true });
    rmSync(vault, { recursive: true, force: true });
  });

  test('a shell sees its limits and the granted service, and nothing else', async (t) => {
    const latency = await open('a');
    t.diagnostic(`tmux start → shell prints its first output: ${latency.toFixed(0)} ms`);
    const entries = await psJson(dir);
    const shells = shellsOf(entries);
    assert.equal(shells.length, 1);
    assert.match(shells[0]!.path, /\/shells\/shell-[\w.-]+-\d+$/);
    assert.deepEqual(shells[0]!.grant, { cpu: 0.2, memory: 128 * 1024 * 1024, pids: 64 });
    for (const e of entries) if (e.pid !== null) seen.add(e.pid);

    // Its own cgroup's CPU limit: 0.2 cores.
    const cpu = await run(
      'a',
      `if [ -d /sys/fs/cgroup/cpu ]; then P=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ {print $3}' /proc/self/cgroup); F=/sys/fs/cgroup/cpu$P/cpu.cfs_quota_us; echo CPU-$((7*7)) $(cat $F) $(cat /sys/fs/cgroup/cpu$P/cpu.cfs_period_us); else P=$(awk -F: '$1 == 0 {print $3}' /proc/self/cgroup); F=/sys/fs/cgroup$P/cpu.max; echo CPU-$((7*7)) $(cat $F); fi`,
      /CPU-49 \d+ \d+/,
    );
    const [, quota, period] = /CPU-49 (\d+) (\d+)/.exec(cpu)!;
    assert.equal(Number(quota) / Number(period), 0.2);
    // ... and cannot raise it (or its node's).
    const raise = await run('a', `(echo -1 > $F) 2>/dev/null; echo RAISE-$((5+5)) $?`, /RAISE-10 \d/);
    assert.match(raise, /RAISE-10 1/);

    // The sibling's secret: not in the manifest's secrets dir, not in the credentials dir, not
    // through the holder's /proc entry (its mount namespace), which root on the host can read.
    const keeper = entries.find((e) => e.path === `/${name}/vault/keeper`)!;
    const creds = join(dir, '.captree/credentials', `${name}.vault.keeper`, 'API_TOKEN');
    assert.equal(readFileSync(`/proc/${keeper.pid}/root${creds}`, 'utf8').trim(), TOKEN);
    const secret = await run(
      'a',
      `cat ${dir}/secrets/API_TOKEN ${creds} /proc/${keeper.pid}/root${creds} /proc/${keeper.pid}/environ; grep -rs ${TOKEN.slice(0, 10)}Z /proc/*/environ; echo SECRET-$((2*3))`,
      /SECRET-6/,
    );
    assert.doesNotMatch(secret, new RegExp(TOKEN));
    // Nor the daemon's control socket (it could ask for anything).
    const ctl = await run(
      'a',
      `test -e ${dir}/.captree/control.sock && echo CTL-$((3*3))=visible || echo CTL-$((3*3))=hidden`,
      /CTL-9=\w+/,
    );
    assert.match(ctl, /CTL-9=hidden/);

    // It is who it says it is: `id` inside is what the host sees in every id of the process.
    const who = await run('a', 'echo ID-$((4*4)) $(id -u) $(id -g) $(id -G)', /ID-16 \d+ \d+/);
    const [, uid, gid] = /ID-16 (\d+) (\d+)/.exec(who)!;
    const pidsRoot = cgroupsNamed(name).find((d) => d.startsWith('/sys/fs/cgroup/pids/'))!;
    const shellGroup = join(pidsRoot, shells[0]!.path.split('/').slice(2).join('/'));
    const statuses = readFileSync(join(shellGroup, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((pid) => readFileSync(`/proc/${pid}/status`, 'utf8'));
    const sh = statuses.find((st) => /^Name:\s+(ba|da)?sh$/m.test(st));
    assert.ok(sh, 'the shell process is in its cgroup');
    assert.match(sh, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'));
    assert.match(sh, new RegExp(`^Gid:\\s+${gid}\\s+${gid}\\s+${gid}\\s+${gid}$`, 'm'));
    assert.match(sh, /^CapEff:\s+0+$/m);
    // Root's files outside its working directory: it cannot change them (the host checks).
    const attack = await run(
      'a',
      `(echo evil >> ${vaultFile}) 2>/dev/null; mkdir ${vault}/planted 2>/dev/null; echo WRITE-$((6*6)) $?`,
      /WRITE-36 \d/,
    );
    assert.match(attack, /WRITE-36 1/);
    assert.equal(readFileSync(vaultFile, 'utf8'), 'root only\n');
    assert.equal(existsSync(join(vault, 'planted')), false);

    // No host network: a TCP server on the host's loopback is out of reach.
    const net = await run(
      'a',
      `(echo hi > /dev/tcp/127.0.0.1/${hostPort}) 2>/dev/null && echo NET-$((8+8))=open || echo NET-$((8+8))=closed`,
      /NET-16=\w+/,
    );
    assert.match(net, /NET-16=closed/);
    assert.equal(hostConnections, 0);

    // The granted service answers.
    const docs = await run(
      'a',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, typed as is
      'curl -s --max-time 5 --unix-socket "${CAPTREE_SERVICE_DOCS_HTTP#unix:}" http://docs/; echo DOCS-$((9+9))',
      /DOCS-18/,
    );
    assert.match(docs, /hello from the docs service/);
  });

  test('resize, Ctrl-C, and the exit code comes back', async () => {
    await tmux('send-keys', '-t', at('a'), 'clear', 'Enter');
    assert.match(await run('a', 'echo SIZE-$((1+1)) $(stty size)', /SIZE-2 \d+ \d+/), /SIZE-2 40 120/);
    await tmux('resize-window', '-t', at('a'), '-x', '100', '-y', '30');
    assert.match(await run('a', 'echo SIZE-$((2+2)) $(stty size)', /SIZE-4 \d+ \d+/), /SIZE-4 30 100/);

    const t0 = Date.now();
    await run('a', 'echo SLEEPING-$((2+3)); sleep 100', /SLEEPING-5/);
    await tmux('send-keys', '-t', at('a'), 'C-c');
    const after = await run('a', 'echo ALIVE-$((3+4)) rc=$?', /ALIVE-7 rc=\d+/);
    assert.match(after, /ALIVE-7 rc=130/);
    assert.ok(Date.now() - t0 < 20_000);

    assert.equal(await close('a', 7), 7);
    // Closing returned the budget: the node holds no shell.
    assert.deepEqual(shellsOf(await psJson(dir)), []);
  });

  test('shells carve from the node: two fit, a third is refused cleanly, a closed one makes room', async () => {
    await Promise.all([open('b'), open('c')]);
    const shells = shellsOf(await psJson(dir));
    assert.equal(shells.length, 2);
    for (const e of shells) if (e.pid !== null) seen.add(e.pid);

    const third = await captree(['shell', `/${name}/shells`], dir);
    assert.equal(third.code, 1);
    assert.equal(third.stdout, '');
    const lines = third.stderr.trimEnd().split('\n');
    assert.match(lines[0]!, new RegExp(`^captree: no shell in /${name}/shells:`));
    assert.match(third.stderr, /requires cpu 0\.2, \/\S+\/shells has 0(\.0)? left of 0\.4/);
    for (const line of lines) assert.match(line, /^captree: /);
    const json = await captree(['shell', `/${name}/shells`, '--json'], dir);
    assert.equal(json.code, 1);
    const body = JSON.parse(json.stdout) as { error: { code: string }; reasons: { field: string }[] };
    assert.equal(body.error.code, 'rejected');
    assert.ok(body.reasons.some((r) => r.field === 'requires.cpu'));

    assert.equal(await close('b', 0), 0);
    // Room for exactly one again: it is admitted.
    await open('d');
    assert.equal(shellsOf(await psJson(dir)).length, 2);
    assert.deepEqual(await Promise.all([close('c', 0), close('d', 3)]), [0, 3]);
    assert.deepEqual(shellsOf(await psJson(dir)), []);
    assert.deepEqual(readdirSync(join(dir, '.captree/shells')), [], 'session dirs are removed');
  });

  test('a client killed with SIGKILL leaves no session dir: the next shell sweeps it', async () => {
    // A session that outlives 'e', so the tmux server does not exit (and race 'f's start) with it.
    await tmux('new-session', '-d', '-s', 'keep', 'sleep 3600');
    await open('e');
    const [left] = readdirSync(join(dir, '.captree/shells'));
    const client = Number(/\.(\d+)\.[0-9a-f]{8}$/.exec(left ?? '')?.[1]);
    assert.ok(client > 0, `the session dir names its client: ${left}`);
    process.kill(client, 'SIGKILL');
    // The pane may already have ended with its client (and the tmux server with it).
    await tmux('kill-session', '-t', at('e')).catch(() => {});
    await open('f');
    const dirs = readdirSync(join(dir, '.captree/shells'));
    assert.equal(dirs.length, 1, `only the live session's dir: ${dirs.join(', ')}`);
    assert.notEqual(dirs[0], left);
    assert.equal(await close('f', 0), 0);
    await tmux('kill-session', '-t', at('keep')).catch(() => {});
  });
});
