/**
 * The host probe on the real machine, and the pure formatting of a report for `captree doctor`.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, test } from 'node:test';
import { analyseCgroups } from '../../src/runtime/cgroup/index.ts';
import { describeHost, formatHostReport, type HostReport, probeHost } from '../../src/runtime/host-probe.ts';
import { skipOrFail } from '../support/host.ts';

describe('probeHost (real host)', () => {
  test('reports cgroups, namespaces, privileges and tools consistently with the host', async (t) => {
    const r = await probeHost();
    t.diagnostic(formatHostReport(r));
    assert.equal(r.root, process.getuid?.() === 0);
    const magic = fs.statfsSync('/sys/fs/cgroup').type;
    if (magic === 0x63677270) assert.equal(r.cgroups.layout, 'v2');
    else if (r.cgroups.layout !== 'none') assert.ok(['hybrid', 'v1'].includes(r.cgroups.layout));
    if (!r.root) return skipOrFail(t, 'not root: namespace and cgroup expectations need root');
    assert.notEqual(r.cgroups.driver, 'none', r.cgroups.reason ?? '');
    for (const [k, v] of Object.entries(r.namespaces)) assert.ok(v.available, `${k}: ${v.detail}`);
    assert.ok(r.compiler.present, 'cc is needed to build the launcher');
    const { json, lines } = describeHost(r);
    assert.deepEqual(JSON.parse(JSON.stringify(json)), json);
    assert.ok(lines.some((l) => /memory limits: enforced \(cgroup v[12]\)/.test(l)));
  });
});

describe('describeHost (pure)', () => {
  const unprivileged: HostReport = {
    kernel: '6.1.0',
    arch: 'x64',
    uid: 1000,
    root: false,
    cgroups: analyseCgroups({
      statfsType: 0x63677270,
      mountinfo: '30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n',
      procCgroup: '0::/user.slice/user-1000.slice/session-1.scope\n',
      readFile: () => 'cpu memory pids\n',
      writable: () => false,
      kernelRelease: '6.1.0',
    }),
    namespaces: {
      net: { available: false, detail: 'unshare: unshare failed: Operation not permitted' },
      mount: { available: false, detail: 'unshare: unshare failed: Operation not permitted' },
      pid: { available: false, detail: 'unshare: unshare failed: Operation not permitted' },
      user: { available: true, detail: 'unshare --user --map-root-user works' },
    },
    unshare: { present: true, path: '/usr/bin/unshare', version: 'unshare from util-linux 2.38.1' },
    bwrap: { present: false, path: null, version: null },
    compiler: { present: false, path: null, version: null },
  };

  test('names everything that cannot be enforced', () => {
    const { json, lines } = describeHost(unprivileged);
    assert.equal(json.cgroups.driver, 'none');
    assert.equal(json.cgroups.kill, 'process group');
    assert.equal(json.cgroups.emptiness, 'polling');
    assert.deepEqual(json.missing, [
      'cpu limits: not enforced (no usable cgroups)',
      'cpu weights: not enforced (no usable cgroups)',
      'memory limits: not enforced (no usable cgroups)',
      'pids limits: not enforced (no usable cgroups)',
      'net namespaces: unshare: unshare failed: Operation not permitted',
      'mount namespaces: unshare: unshare failed: Operation not permitted',
      'pid namespaces: unshare: unshare failed: Operation not permitted',
      'no C compiler (cc): the launcher cannot be built',
    ]);
    const text = formatHostReport(unprivileged);
    assert.match(text, /^kernel 6\.1\.0 \(x64\), running as uid 1000 \(not root\)$/m);
    assert.match(
      text,
      /driver none \(cannot create cgroups: no write access to \/sys\/fs\/cgroup\/user\.slice/,
    );
    assert.match(text, /^namespaces: net no, mount no, pid no, user yes$/m);
    assert.match(text, /^bubblewrap: not found/m);
    assert.match(text, /^not enforceable here: 8 item\(s\) above$/m);
    assert.equal(lines.join('\n') + '\n', text);
  });
});
