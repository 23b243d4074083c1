/**
 * `captree signal` and `captree reload` through the real bin, on a real tree: the signal reaches
 * the child's main process and nothing it forked; a reload command runs inside the child's
 * confinement (its PID namespace, cgroups, user, no capabilities); each is journaled with who
 * asked; mistakes get a clear error. Then nginx reloads a changed configuration on SIGHUP and on
 * `nginx -s reload` run in its confinement.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { skipOrFail } from '../support/host.ts';
import { httpGet } from '../support/net.ts';
import { captree, eventually, freePort, killAll, logText, psJson } from './helpers.ts';

/** The main process traps HUP and USR1; a process it forked (same process group) traps HUP too. */
const trapScript = [
  "trap 'echo main got HUP; kill -USR1 $SUB' HUP",
  "trap 'echo main got USR1' USR1",
  'sh -c \'trap "echo sub got HUP" HUP; trap "echo sub got USR1" USR1; while :; do sleep 1 & wait $!; done\' &',
  'SUB=$!',
  'echo main up',
  'while :; do sleep 1 & wait $!; done',
].join('\n');

/** The reload command reports where it runs, then signals the main process by its namespace pid. */
const reloadScript = [
  'echo "reload uid=$(id -u)"',
  'grep -E "^(CapEff|CapBnd|NoNewPrivs):" /proc/self/status | tr -s "\\t" " " | sed "s/^/reload /"',
  'echo "reload cgroups $(sort /proc/self/cgroup | grep -E ":(memory|pids):" | tr "\\n" " ")"',
  'kill -HUP 2',
].join('\n');

/** A shell script as a manifest's command: `$` is the manifest's interpolation, `$$` a literal `$`. */
const sh = (script: string) => JSON.stringify(['sh', '-c', script.replaceAll('$', '$$$$')]);

describe('signal and reload a child', () => {
  let dir: string;
  let state: string;
  let name: string;
  let daemonPid: number | undefined;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'captree-sig-'));
    chmodSync(dir, 0o755);
    state = join(dir, '.captree');
    name = `ctsig${process.pid}${Math.random().toString(36).slice(2, 6)}`;
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}
children:
  - name: trap
    command: ${sh(trapScript)}
    reload: SIGUSR1
  - name: cmd
    user: nobody
    command: ${sh("trap 'echo main reloaded' HUP; while :; do sleep 1 & wait $!; done")}
    requires: { memory: 64Mi, pids: 16 }
    reload: { exec: ${sh(reloadScript)}, timeout: 10s }
  - name: failing
    command: [sleep, "1000"]
    reload: { exec: [sh, -c, "echo cannot; exit 3"] }
  - name: plain
    command: [sleep, "1000"]
`,
    );
    const r = await captree(['up', '-d'], dir);
    assert.equal(r.code, 0, r.stderr);
    daemonPid = Number(/daemon pid (\d+)/.exec(r.stdout)?.[1]);
  });
  after(async () => {
    await captree(['down'], dir);
    killAll([daemonPid]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('signal reaches the main process only, by its own pid; journaled with who asked', async () => {
    await eventually(
      () => (logText(state, `/${name}/trap`).includes('main up') ? true : undefined),
      'main up',
    );
    const shown = (await psJson(dir)).find((e) => e.path === `/${name}/trap`)?.pid;
    const r = await captree(['signal', 'trap', 'hup', '--json'], dir);
    assert.equal(r.code, 0, r.stderr);
    const sent = JSON.parse(r.stdout) as { path: string; signal: string; pid: number };
    assert.equal(sent.signal, 'SIGHUP');
    assert.equal(sent.path, `/${name}/trap`);
    // The program itself (not the launcher's helpers around a confined child), the pid ps shows.
    assert.equal(sent.pid, shown);
    assert.match(readFileSync(`/proc/${sent.pid}/cmdline`, 'utf8'), /main got HUP/);
    // The main process asks its sub-process for USR1 on HUP: the sub runs its traps in signal
    // order, so once it printed USR1, a HUP sent to the whole group would have shown first.
    const log = await eventually(() => {
      const text = logText(state, `/${name}/trap`);
      return text.includes('sub got USR1') ? text : undefined;
    }, 'the sub-process to get USR1');
    assert.match(log, /main got HUP/);
    assert.doesNotMatch(log, /sub got HUP/);
    const events = JSON.parse(
      (await captree(['events', '--json', '--path', `/${name}/trap`], dir)).stdout,
    ) as {
      type: string;
      signal?: string;
      pid?: number;
      by?: string;
    }[];
    const record = events.find((e) => e.type === 'signalled');
    assert.equal(record?.signal, 'SIGHUP');
    assert.equal(record?.pid, sent.pid);
    assert.match(record?.by ?? '', /^the control socket \(uid 0\), captree signal \(user root, pid \d+\)$/);
    const human = await captree(['events', '--path', `/${name}/trap`], dir);
    assert.match(
      human.stdout,
      new RegExp(`/${name}/trap sent SIGHUP to pid ${sent.pid} \\(asked by the control socket`),
    );
  });

  test('reload: SIGUSR1 sends the declared signal', async () => {
    const r = await captree(['reload', 'trap'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^reloaded /${name}/trap: sent SIGUSR1 \\(pid \\d+\\)\\n$`));
    await eventually(
      () => (logText(state, `/${name}/trap`).includes('main got USR1') ? true : undefined),
      'main got USR1',
    );
  });

  test('a reload command runs in the child’s confinement: its pids, cgroups, user, no capabilities', async () => {
    const r = await captree(['reload', 'cmd', '--json'], dir);
    assert.equal(r.code, 0, r.stderr);
    const reply = JSON.parse(r.stdout) as { result: string; pid: number; reload: { type: string } };
    assert.equal(reply.reload.type, 'exec');
    assert.equal(reply.result, 'sh exited with code 0');
    const log = await eventually(() => {
      const text = logText(state, `/${name}/cmd`);
      return text.includes('main reloaded') && text.includes('reload: sh exited') ? text : undefined;
    }, 'the reload command and its effect in the log');
    // `kill -HUP 2` reached the main process: pid 2 is it only inside the child's PID namespace.
    assert.match(log, /reload uid=65534/);
    assert.match(log, /reload CapEff: 0000000000000000/);
    assert.match(log, /reload CapBnd: 0000000000000000/);
    assert.match(log, /reload NoNewPrivs: 1/);
    const own = readFileSync(`/proc/${reply.pid}/cgroup`, 'utf8')
      .split('\n')
      .filter((l) => /:(memory|pids):/.test(l))
      .sort()
      .join(' ');
    assert.ok(own.includes(name), own);
    assert.ok(log.includes(`reload cgroups ${own} `), `${own}\n${log}`);
    const events = JSON.parse(
      (await captree(['events', '--json', '--path', `/${name}/cmd`], dir)).stdout,
    ) as {
      type: string;
      ok?: boolean;
    }[];
    assert.equal(events.find((e) => e.type === 'reloaded')?.ok, true);
  });

  test('a failing reload command: exit 1 with its exit code, journaled as failed', async () => {
    const r = await captree(['reload', 'failing'], dir);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `^captree: /${name}/failing: reload failed: sh exited with code 3 \\(its output: captree logs /${name}/failing --since \\S+Z\\)\\n$`,
      ),
    );
    await eventually(
      () => (logText(state, `/${name}/failing`).includes('cannot') ? true : undefined),
      'its output',
    );
    const events = JSON.parse(
      (await captree(['events', '--json', '--path', `/${name}/failing`], dir)).stdout,
    ) as {
      type: string;
      ok?: boolean;
      result?: string;
    }[];
    assert.deepEqual(
      events.filter((e) => e.type === 'reloaded').map((e) => [e.ok, e.result]),
      [[false, 'sh exited with code 3']],
    );
  });

  test('mistakes: an unknown signal, no reload declared, a node, a stopped child', async () => {
    const typo = await captree(['signal', 'trap', 'SIGHUB'], dir);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /^captree signal: unknown signal SIGHUB \(did you mean SIGHUP\?\)/);
    const none = await captree(['reload', 'plain'], dir);
    assert.equal(none.code, 1);
    assert.match(none.stderr, new RegExp(`^captree: /${name}/plain declares no reload: add reload: SIGHUP`));
    const node = await captree(['signal', `/${name}`, 'HUP'], dir);
    assert.equal(node.code, 1);
    assert.match(node.stderr, new RegExp(`^captree: /${name} is a node: only a process child`));
    assert.equal((await captree(['stop', 'plain'], dir)).code, 0);
    const stopped = await captree(['signal', 'plain', 'TERM'], dir);
    assert.equal(stopped.code, 1);
    assert.match(stopped.stderr, new RegExp(`/${name}/plain is stopped, no process runs \\(start it with`));
  });
});

describe('nginx reloads its configuration', () => {
  let dir: string;
  let port: number;
  let daemonPid: number | undefined;
  const conf = (body: string) => `daemon off;
worker_processes 1;
error_log stderr;
pid nginx.pid;
events { worker_connections 16; }
http {
  access_log off;
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  server { listen 127.0.0.1:${port}; location / { return 200 "${body}\\n"; } }
}
`;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'captree-nginx-'));
    chmodSync(dir, 0o755);
    // nginx runs as nobody: a master without capabilities could not switch its workers' user.
    chownSync(dir, 65534, 65534);
    mkdirSync(join(dir, 'tmp'));
    chownSync(join(dir, 'tmp'), 65534, 65534);
    port = await freePort();
    writeFileSync(join(dir, 'nginx.conf'), conf('v1'));
    const name = `ctngx${process.pid}${Math.random().toString(36).slice(2, 6)}`;
    const prefix = ['-p', dir, '-c', 'nginx.conf', '-e', 'stderr'];
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}
children:
  - name: web
    user: nobody
    command: ${JSON.stringify(['/usr/sbin/nginx', ...prefix])}
    ready: { tcp: 127.0.0.1:${port} }
    reload: SIGHUP
  - name: web2
    user: nobody
    command: ${JSON.stringify(['/usr/sbin/nginx', ...prefix.slice(0, 2), '-c', 'nginx2.conf', '-e', 'stderr'])}
    reload: ${JSON.stringify(['/usr/sbin/nginx', ...prefix.slice(0, 2), '-c', 'nginx2.conf', '-e', 'stderr', '-s', 'reload'])}
`,
    );
  });
  after(async () => {
    if (dir === undefined) return;
    await captree(['down'], dir);
    killAll([daemonPid]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('SIGHUP, and nginx -s reload run in its confinement: the new configuration answers', async (t) => {
    try {
      readFileSync('/usr/sbin/nginx');
    } catch {
      skipOrFail(t, 'nginx is not installed (apt-get install nginx-light)');
      return;
    }
    const port2 = await freePort();
    writeFileSync(join(dir, 'nginx2.conf'), conf('w1').replace(`127.0.0.1:${port}`, `127.0.0.1:${port2}`));
    const r = await captree(['up', '-d'], dir);
    assert.equal(r.code, 0, r.stderr);
    daemonPid = Number(/daemon pid (\d+)/.exec(r.stdout)?.[1]);
    assert.equal(await httpGet(port), 'v1\n');

    writeFileSync(join(dir, 'nginx.conf'), conf('v2'));
    const hup = await captree(['reload', 'web'], dir);
    assert.equal(hup.code, 0, hup.stderr);
    assert.match(hup.stdout, /: sent SIGHUP \(pid \d+\)/);
    await eventually(async () => ((await httpGet(port)) === 'v2\n' ? true : undefined), 'nginx to answer v2');

    await eventually(
      async () => ((await httpGet(port2).catch(() => '')) === 'w1\n' ? true : undefined),
      'web2 up',
    );
    writeFileSync(join(dir, 'nginx2.conf'), conf('w2').replace(`127.0.0.1:${port}`, `127.0.0.1:${port2}`));
    // `nginx -s reload` signals the pid in nginx.pid: the master's pid in the child's namespace.
    const cmd = await captree(['reload', 'web2'], dir);
    assert.equal(cmd.code, 0, cmd.stderr);
    assert.match(cmd.stdout, /: nginx exited with code 0 \(pid \d+\)/);
    await eventually(
      async () => ((await httpGet(port2)) === 'w2\n' ? true : undefined),
      'nginx to answer w2',
    );
  });
});
