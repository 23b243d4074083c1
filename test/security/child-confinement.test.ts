/**
 * A default child (it asks only for `cpu: 0.2`) is confined from its supervisor. The attacks
 * that worked against it before, run *as the child* in a real tree (in-process daemon, real
 * launcher, cgroups and namespaces), and checked from the host side: its own and its parent's
 * cgroup limits read back unchanged, it is still in its cgroups, the daemon and the launcher
 * live, a sibling's environment was not read, no cgroupfs was mounted, the state dir was not
 * seen. The tree has nothing to hide (no secret, no unix service): the confinement is the
 * default, not a side effect of what a sibling holds.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Daemon } from '../../src/daemon/index.ts';
import { cgroupsNamed } from '../cli/helpers.ts';
import { daemonOn } from '../support/daemon.ts';
import { launcherOf } from '../support/proc.ts';

const SECRET = 'sibling-secret-7c1d9e';

describe('a default child cannot undo its budget or reach its supervisor', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-confine-'));
  const name = `cf${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const out = join(dir, 'attack.out');
  let daemon: Daemon;
  let launcher = 0;
  let victim = 0;
  /** A v1 controller's directory of a tree path, e.g. cpu of `/name/attacker`. */
  const cgroupDir = (controller: string, rel: string) => {
    const root = cgroupsNamed(name).find(
      (d) => d.startsWith(`/sys/fs/cgroup/${controller}/`) && /\/captree-[^/]+$/.test(d),
    );
    assert.ok(root, `the tree has a ${controller} cgroup`);
    return join(root, rel);
  };
  const read = (file: string) => readFileSync(file, 'utf8').trim();

  before(async () => {
    // Each attack prints its name and whether it succeeded; the host checks the effects too.
    const script = [
      'try() { n=$1; shift; if ( "$@" ) >/dev/null 2>&1; then echo "$n=done"; else echo "$n=refused"; fi; }',
      "me=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ {print $3}' /proc/self/cgroup)",
      'up=$(dirname "$me")',
      'try own_quota sh -c "echo -1 > /sys/fs/cgroup/cpu$me/cpu.cfs_quota_us"',
      'try parent_quota sh -c "echo -1 > /sys/fs/cgroup/cpu$up/cpu.cfs_quota_us"',
      'try own_memory sh -c "echo -1 > /sys/fs/cgroup/memory$(awk -F: \'$2 ~ /(^|,)memory(,|$)/ {print $3}\' /proc/self/cgroup)/memory.limit_in_bytes"',
      'try own_pids sh -c "echo max > /sys/fs/cgroup/pids$(awk -F: \'$2 == \\"pids\\" {print $3}\' /proc/self/cgroup)/pids.max"',
      'try leave_cgroup sh -c "echo $$ > /sys/fs/cgroup/pids/cgroup.procs"',
      'try mount_cgroupfs sh -c "mkdir -p /tmp/cg && mount -t cgroup -o pids none /tmp/cg"',
      'try kill_launcher kill -9 "$LAUNCHER_PID"',
      'try kill_daemon kill -9 "$DAEMON_PID"',
      'try daemon_environ cat "/proc/$DAEMON_PID/environ"',
      'try daemon_mem sh -c "head -c 1 /proc/$DAEMON_PID/mem"',
      'try sibling_environ sh -c "grep -q ' + SECRET + ' /proc/$VICTIM_PID/environ"',
      'try state_dir test -e "$STATE/control.sock"',
      'echo DONE',
      'echo DONE >&3',
      'exec sleep infinity',
    ].join('\n');
    writeFileSync(join(dir, 'attack.sh'), `${script}\n`);
    daemon = await daemonOn(
      dir,
      `name: ${name}
requires: { cpu: 1.0, memory: 256Mi, pids: 256 }
children:
  - name: victim
    command: [sleep, infinity]
    env: { TOKEN: ${SECRET} }
  - name: plain
    command: [sleep, infinity]
    user: nobody
  - name: attacker
    command: [sh, -c, 'exec 3>&1; sh ./attack.sh > ${out} 2>&1']
    ready: { log: DONE }
    requires: { cpu: 0.2, memory: 64Mi, pids: 32 }
`,
    );
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
  });

  test('every attack is refused, and from the host nothing changed', async () => {
    // The attacker started before we knew the pids: restart it with them in its environment.
    const sup = daemon.tree.supervisor;
    victim = sup.child('victim')?.pid as number;
    launcher = launcherOf(sup.child('attacker')?.pid as number) as number;
    assert.ok(victim > 0 && launcher > 0);
    const quota = read(cgroupDir('cpu', 'attacker/cpu.cfs_quota_us'));
    const parentQuota = read(cgroupDir('cpu', 'cpu.cfs_quota_us'));
    const memory = read(cgroupDir('memory', 'attacker/memory.limit_in_bytes'));
    const pids = read(cgroupDir('pids', 'attacker/pids.max'));
    assert.equal(quota, '20000');
    writeFileSync(
      join(dir, 'attack.sh'),
      `LAUNCHER_PID=${launcher}\nDAEMON_PID=${process.pid}\nVICTIM_PID=${victim}\nSTATE=${join(dir, '.captree')}\n${readFileSync(join(dir, 'attack.sh'), 'utf8')}`,
    );
    rmSync(out, { force: true });
    // Ready once the script has written its report and said DONE on stdout.
    await sup.restartChild('attacker');
    const report = readFileSync(out, 'utf8');
    assert.match(report, /DONE/, report);
    for (const attack of [
      'own_quota',
      'parent_quota',
      'own_memory',
      'own_pids',
      'leave_cgroup',
      'mount_cgroupfs',
      'kill_launcher',
      'kill_daemon',
      'daemon_environ',
      'daemon_mem',
      'sibling_environ',
      'state_dir',
    ])
      assert.match(report, new RegExp(`^${attack}=refused$`, 'm'), `${attack}:\n${report}`);
    // The host side: limits, membership, the launcher and the victim, all as they were.
    assert.equal(read(cgroupDir('cpu', 'attacker/cpu.cfs_quota_us')), quota);
    assert.equal(read(cgroupDir('cpu', 'cpu.cfs_quota_us')), parentQuota);
    assert.equal(read(cgroupDir('memory', 'attacker/memory.limit_in_bytes')), memory);
    assert.equal(read(cgroupDir('pids', 'attacker/pids.max')), pids);
    const attacker = sup.child('attacker')?.pid as number;
    assert.ok(read(`/proc/${attacker}/cgroup`).includes(`/attacker`), 'still in its cgroups');
    process.kill(launcher, 0);
    process.kill(victim, 0);
    assert.equal(sup.child('victim')?.pid, victim, 'the sibling was not restarted');
  });

  test('a `user: nobody` child runs as nobody in every id: real, effective, saved, fs uid and gid, groups', () => {
    // The reported pid is the program itself (below its PID namespace's init and outer process).
    const pid = daemon.tree.supervisor.child('plain')?.pid as number;
    const status = read(`/proc/${pid}/status`);
    const nobody = Number(/^nobody:[^:]*:(\d+):(\d+):/m.exec(readFileSync('/etc/passwd', 'utf8'))?.[2]);
    assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
    assert.match(
      status,
      new RegExp(`^Gid:\\s+${nobody}\\s+${nobody}\\s+${nobody}\\s+${nobody}$`, 'm'),
      'not gid 0',
    );
    assert.match(status, new RegExp(`^Groups:\\s+${nobody}\\s*$`, 'm'), 'no supplementary group of root');
    assert.match(status, /^CapEff:\s+0+$/m);
  });
});
