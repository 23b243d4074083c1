/**
 * Privileges are capabilities: uid 0, Linux capabilities and other users are held down the tree
 * like secrets. Run as children of a real tree (in-process daemon, real launcher, namespaces):
 * a default child (uid 0, named nothing) has no capability and cannot change root's files
 * outside its working directory and the scratch directories; a `user: nobody` child granted
 * `net_bind_service` binds port 80 (in its own network namespace) and one not granted it cannot;
 * real nginx binds :80 as www-data with only that capability. What the manifest may not hold is
 * refused by `captree check` at its position, and nothing starts.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Daemon } from '../../src/daemon/index.ts';
import { captree, cgroupsNamed } from '../cli/helpers.ts';
import { daemonOn } from '../support/daemon.ts';
import { skipOrFail } from '../support/host.ts';

const read = (file: string) => readFileSync(file, 'utf8');

/** Every process in the tree's cgroup of `child` (pids controller), with its /proc status. */
function processesOf(name: string, child: string): { pid: number; status: string }[] {
  const root = cgroupsNamed(name).find((d) => d.startsWith('/sys/fs/cgroup/pids/'));
  assert.ok(root, `a pids cgroup for ${name}`);
  const dir = join(root, child);
  return read(join(dir, 'cgroup.procs'))
    .split('\n')
    .filter(Boolean)
    .flatMap((pid) => {
      try {
        return [{ pid: Number(pid), status: read(`/proc/${pid}/status`) }];
      } catch {
        return [];
      }
    });
}

const field = (status: string, name: string) => new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(status)?.[1] ?? '';

async function until<T>(what: string, probe: () => T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('privileges are granted like capabilities', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-priv-'));
  // Root's own files elsewhere on the host: a directory only root may enter, and a file in it.
  // Outside /tmp and /var/tmp, which stay writable.
  const vault = mkdtempSync('/var/lib/captree-test-vault-');
  const target = join(vault, 'owned-by-root.txt');
  const etcFile = `/etc/captree-priv-${process.pid}`;
  const name = `pv${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const out = join(dir, 'attack.out');
  let daemon: Daemon;

  before(async () => {
    chmodSync(vault, 0o700);
    writeFileSync(target, 'original\n');
    const script = [
      'try() { n=$1; shift; if ( "$@" ) >/dev/null 2>&1; then echo "$n=done"; else echo "$n=refused"; fi; }',
      `try append_root_file sh -c 'echo evil >> ${target}'`,
      `try create_in_root_dir sh -c 'mkdir ${vault}/planted'`,
      `try create_in_etc sh -c 'echo evil > ${etcFile}'`,
      "try write_cwd sh -c 'echo mine > ./mine.txt'",
      "try write_tmp sh -c 'echo scratch > /tmp/captree-priv-scratch-$$ && rm /tmp/captree-priv-scratch-$$'",
      'grep -E "^Cap(Eff|Prm|Bnd|Amb|Inh):" /proc/self/status',
      'echo DONE',
    ].join('\n');
    writeFileSync(join(dir, 'attack.sh'), `${script}\n`);
    const bind80 = [
      'import os, socket, sys, time',
      'try:',
      "    socket.socket().bind(('127.0.0.1', 80))",
      "    print('bind80=done', flush=True)",
      'except OSError as e:',
      "    print('bind80=refused', e.errno, flush=True)",
      'time.sleep(3600)',
    ].join('\n');
    writeFileSync(join(dir, 'bind80.py'), `${bind80}\n`);
    chmodSync(dir, 0o755);
    daemon = await daemonOn(
      dir,
      `name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 256 }
children:
  - name: attacker
    command: [sh, -c, 'sh ./attack.sh > ${out} 2>&1; echo DONE; exec sleep infinity']
    ready: { log: DONE }
  - name: binder
    user: nobody
    command: [/usr/bin/python3, ${join(dir, 'bind80.py')}]
    ready: { log: bind80= }
    requires: { net: none, privileges: [net_bind_service] }
  - name: nobinder
    user: nobody
    command: [/usr/bin/python3, ${join(dir, 'bind80.py')}]
    ready: { log: bind80= }
    requires: { net: none }
`,
    );
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
    rmSync(vault, { recursive: true, force: true });
    rmSync(etcFile, { force: true });
  });

  test('a default child has no capability and cannot change root’s files outside its cwd and /tmp', async () => {
    const report = await until('the attack report', () => {
      const text = existsSync(out) ? read(out) : '';
      return text.includes('DONE') ? text : undefined;
    });
    for (const attack of ['append_root_file', 'create_in_root_dir', 'create_in_etc'])
      assert.match(report, new RegExp(`^${attack}=refused$`, 'm'), `${attack}:\n${report}`);
    assert.match(report, /^write_cwd=done$/m, report);
    assert.match(report, /^write_tmp=done$/m, report);
    for (const set of ['CapEff', 'CapPrm', 'CapBnd', 'CapAmb', 'CapInh'])
      assert.match(report, new RegExp(`^${set}:\\s+0+$`, 'm'), report);
    // From the host: root's file byte-identical, nothing planted.
    assert.equal(read(target), 'original\n');
    assert.equal(existsSync(join(vault, 'planted')), false);
    assert.equal(existsSync(etcFile), false);
    assert.equal(read(join(dir, 'mine.txt')), 'mine\n');
  });

  test('net_bind_service, granted, is the one capability a `user: nobody` child holds; without it port 80 is refused', async () => {
    // Readiness saw the line; the log file gets it a moment later.
    const logged = (child: string) =>
      until(`${child}'s log`, () => {
        const file = join(dir, `.captree/logs/${name}.${child}.log`);
        const text = existsSync(file) ? read(file) : '';
        return text.includes('bind80=') ? text : undefined;
      });
    assert.match(await logged('binder'), /bind80=done/);
    assert.match(await logged('nobinder'), /bind80=refused 13/);
    const py = processesOf(name, 'binder').find((p) => field(p.status, 'Name') === 'python3');
    assert.ok(py, 'the program runs in its cgroup');
    assert.match(field(py.status, 'Uid'), /^65534\s+65534\s+65534\s+65534$/);
    const bit = (1n << 10n).toString(16).padStart(16, '0'); // CAP_NET_BIND_SERVICE
    for (const set of ['CapEff', 'CapPrm', 'CapBnd', 'CapAmb']) assert.equal(field(py.status, set), bit, set);
    const other = processesOf(name, 'nobinder').find((p) => field(p.status, 'Name') === 'python3');
    assert.ok(other);
    assert.match(field(other.status, 'CapEff'), /^0+$/);
  });
});

describe('what a node does not hold, its children cannot be granted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-priv-check-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('check names each privilege not held, at its place, and the policy that forbids a combination', async () => {
    chmodSync(dir, 0o755);
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: pc
requires: { cpu: 1 }
policy:
  never: [[privilege:root, net:host]]
children:
  - name: sandbox
    requires: { privileges: [] }
    children:
      - name: legacy
        command: [sleep, infinity]
        user: root
        requires: { net: none }
      - name: web
        command: [sleep, infinity]
        user: www-data
        requires: { net: none, privileges: [net_bind_service] }
  - name: admin
    command: [sleep, infinity]
    requires: { privileges: [root] }
`,
    );
    const r = await captree(['check', 'captree.yaml'], dir);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const text = r.stdout + r.stderr;
    assert.match(text, /\/pc\/sandbox\/legacy: requires privilege root, \/pc\/sandbox does not hold it/);
    assert.match(
      text,
      /\/pc\/sandbox\/web: requires privilege net_bind_service, \/pc\/sandbox does not hold it/,
    );
    assert.match(text, /\/pc\/sandbox\/web: requires privilege user:www-data/);
    assert.match(text, /\/pc\/admin requires.net: would hold privilege:root and net:host/);
    assert.equal(existsSync(join(dir, '.captree')), false, 'nothing started');
    writeFileSync(
      join(dir, 'typo.yaml'),
      'name: pt\nchildren:\n  - name: typo\n    command: [sleep, infinity]\n    requires: { privileges: [net_bind_servce] }\n',
    );
    const typo = await captree(['check', 'typo.yaml'], dir);
    assert.equal(typo.code, 1);
    assert.match(
      typo.stdout + typo.stderr,
      /typo\.yaml:5:\d+: .*net_bind_servce \(did you mean net_bind_service\?\)/,
    );
  });
});

describe('nginx binds :80 as www-data with only net_bind_service', () => {
  const nginx = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : null;
  const dir = mkdtempSync(join(tmpdir(), 'captree-nginx80-'));
  const name = `ng${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  let daemon: Daemon | undefined;

  before(async () => {
    if (!nginx) return;
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'run'), { mode: 0o777 });
    chmodSync(join(dir, 'run'), 0o777);
    writeFileSync(
      join(dir, 'nginx.conf'),
      `daemon off;
pid ${dir}/run/nginx.pid;
error_log stderr notice;
worker_processes 2;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/run/body;
  proxy_temp_path ${dir}/run/proxy;
  fastcgi_temp_path ${dir}/run/fastcgi;
  uwsgi_temp_path ${dir}/run/uwsgi;
  scgi_temp_path ${dir}/run/scgi;
  server { listen 127.0.0.1:80; return 200 "ok\\n"; }
}
`,
    );
    daemon = await daemonOn(
      dir,
      `name: ${name}
requires: { cpu: 1.0, memory: 256Mi, pids: 64 }
children:
  - name: web
    command: [${nginx}, -c, ${dir}/nginx.conf, -e, stderr]
    user: www-data
    ready: { log: start worker process }
    requires: { net: none, privileges: [net_bind_service] }
`,
    );
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
  });

  test('master and workers run as www-data, hold net_bind_service and nothing else, and :80 is bound', async (t) => {
    if (!nginx) return skipOrFail(t, 'nginx (Debian nginx-light) is not installed');
    const www = Number(/^www-data:[^:]*:(\d+):/m.exec(read('/etc/passwd'))?.[1]);
    const procs = await until('nginx master and two workers', () => {
      const ps = processesOf(name, 'web').filter((p) => field(p.status, 'Name') === 'nginx');
      return ps.length >= 3 ? ps : undefined;
    });
    for (const p of procs) {
      assert.match(field(p.status, 'Uid'), new RegExp(`^${www}\\s+${www}\\s+${www}\\s+${www}$`));
      assert.equal(field(p.status, 'CapBnd'), (1n << 10n).toString(16).padStart(16, '0'));
    }
    const master = procs.find((p) =>
      readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').startsWith('nginx: master'),
    );
    assert.ok(master, 'the master process');
    // Port 80 of the child's own network namespace is listening (its /proc/net/tcp, read from the host).
    const tcp = read(`/proc/${master.pid}/net/tcp`);
    assert.match(tcp, /^\s*\d+: 0100007F:0050 00000000:0000 0A /m, tcp);
  });
});

describe('nginx as it starts by default: a root master that binds :80 and starts its workers as www-data', () => {
  const nginx = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : null;
  const dir = mkdtempSync(join(tmpdir(), 'captree-nginx-root-'));
  const name = `nr${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  let daemon: Daemon | undefined;

  before(async () => {
    if (!nginx) return;
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'tmp'));
    writeFileSync(
      join(dir, 'nginx.conf'),
      `user www-data;
daemon off;
pid ${dir}/nginx.pid;
error_log stderr notice;
worker_processes 2;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  server { listen 127.0.0.1:80; return 200 "ok\\n"; }
}
`,
    );
    daemon = await daemonOn(
      dir,
      `name: ${name}
requires: { cpu: 1.0, memory: 256Mi, pids: 64 }
children:
  - name: web
    command: [${nginx}, -c, ${dir}/nginx.conf, -e, stderr]
    user: root
    ready: { log: start worker process }
    requires: { net: none, privileges: [root, net_bind_service, setuid, setgid, chown, dac_override] }
`,
    );
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
  });

  test('the master holds exactly the named capabilities, the workers are www-data with none', async (t) => {
    if (!nginx) return skipOrFail(t, 'nginx (Debian nginx-light) is not installed');
    const www = Number(/^www-data:[^:]*:(\d+):/m.exec(read('/etc/passwd'))?.[1]);
    const procs = await until('nginx master and two workers', () => {
      const ps = processesOf(name, 'web').filter((p) => field(p.status, 'Name') === 'nginx');
      return ps.length >= 3 ? ps : undefined;
    });
    const cmd = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const master = procs.find((p) => cmd(p.pid).startsWith('nginx: master'));
    assert.ok(master);
    assert.match(field(master.status, 'Uid'), /^0\s+0\s+0\s+0$/);
    // chown 0, dac_override 1, setgid 6, setuid 7, net_bind_service 10, and nothing else.
    const named = (1n << 0n) | (1n << 1n) | (1n << 6n) | (1n << 7n) | (1n << 10n);
    assert.equal(field(master.status, 'CapEff'), named.toString(16).padStart(16, '0'));
    assert.equal(field(master.status, 'CapBnd'), named.toString(16).padStart(16, '0'));
    const workers = procs.filter((p) => cmd(p.pid).startsWith('nginx: worker'));
    assert.equal(workers.length, 2);
    for (const w of workers) {
      assert.match(field(w.status, 'Uid'), new RegExp(`^${www}\\s+${www}\\s+${www}\\s+${www}$`));
      assert.match(field(w.status, 'CapEff'), /^0+$/);
    }
    assert.match(read(`/proc/${master.pid}/net/tcp`), /^\s*\d+: 0100007F:0050 00000000:0000 0A /m);
  });
});
