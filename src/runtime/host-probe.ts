/**
 * What this host can enforce, as data: cgroup layout and limits, namespaces, privileges, tools.
 * `captree doctor` prints it and admission reads it to fail closed ("memory limits: not enforced
 * (no usable cgroups)") instead of pretending.
 *
 * Hazards: namespace support is tested by actually running `unshare` in short-lived children
 * (kernel config, seccomp profiles and sysctls all decide, so reading config is not enough); each
 * try is bounded by a timeout, and the whole probe takes tens of milliseconds. The answer is for
 * this process's privileges: a different user gets a different report.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type CgroupProbe, probeCgroupLayout } from './cgroup/probe.ts';

export type NamespaceKind = 'net' | 'mount' | 'pid' | 'user';

export interface Capability {
  available: boolean;
  detail: string;
}

export interface ToolInfo {
  present: boolean;
  path: string | null;
  version: string | null;
}

export interface HostReport {
  kernel: string;
  arch: string;
  uid: number;
  root: boolean;
  cgroups: CgroupProbe;
  namespaces: Record<NamespaceKind, Capability>;
  unshare: ToolInfo;
  bwrap: ToolInfo;
  /** The launcher is C compiled on first use; without `cc` it cannot be built here. */
  compiler: ToolInfo;
}

/** Finds an executable on PATH (no shell, no `which`). */
export function findOnPath(name: string, envPath = process.env.PATH ?? ''): string | null {
  for (const dir of envPath.split(':')) {
    if (dir === '') continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

function run(file: string, args: string[], timeoutMs = 2000): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' },
      (err, stdout, stderr) => {
        const out = `${stdout}${stderr}`.trim();
        if (err) {
          const why = err.killed
            ? `timed out after ${timeoutMs} ms`
            : (out.split('\n').at(-1) ?? err.message);
          resolve({ ok: false, out: why || err.message });
        } else resolve({ ok: true, out });
      },
    );
  });
}

async function tool(name: string, versionArgs: string[]): Promise<ToolInfo> {
  const p = findOnPath(name);
  if (!p) return { present: false, path: null, version: null };
  const v = await run(p, versionArgs);
  return { present: true, path: p, version: v.ok ? (v.out.split('\n')[0] ?? null) : null };
}

const UNSHARE_FLAGS: Record<NamespaceKind, string[]> = {
  net: ['--net'],
  mount: ['--mount'],
  pid: ['--pid', '--fork', '--mount-proc'],
  user: ['--user', '--map-root-user'],
};

/** Probes the live host. Spawns a handful of short-lived children; about 10–50 ms. */
export async function probeHost(): Promise<HostReport> {
  const uid = process.getuid?.() ?? -1;
  const [unshare, bwrap, compiler] = await Promise.all([
    tool('unshare', ['--version']),
    tool('bwrap', ['--version']),
    tool('cc', ['--version']),
  ]);
  const kinds = Object.keys(UNSHARE_FLAGS) as NamespaceKind[];
  const results = await Promise.all(
    kinds.map(async (k): Promise<Capability> => {
      if (!unshare.path) return { available: false, detail: 'unshare(1) not found (util-linux)' };
      const r = await run(unshare.path, [...UNSHARE_FLAGS[k], 'true']);
      return r.ok
        ? { available: true, detail: `unshare ${UNSHARE_FLAGS[k].join(' ')} works` }
        : { available: false, detail: r.out };
    }),
  );
  const namespaces = Object.fromEntries(kinds.map((k, i) => [k, results[i]!])) as Record<
    NamespaceKind,
    Capability
  >;
  return {
    kernel: os.release(),
    arch: os.arch(),
    uid,
    root: uid === 0,
    cgroups: probeCgroupLayout(),
    namespaces,
    unshare,
    bwrap,
    compiler,
  };
}

const LAYOUT_TEXT: Record<CgroupProbe['layout'], string> = {
  v2: 'cgroup v2 (unified)',
  hybrid: 'cgroup v1 hybrid (v1 controllers, cgroup2 for kill and events)',
  v1: 'cgroup v1 only',
  none: 'no cgroups mounted',
};

export interface HostSummary {
  kernel: string;
  arch: string;
  root: boolean;
  cgroups: {
    layout: CgroupProbe['layout'];
    driver: CgroupProbe['driver'];
    reason: string | null;
    limits: CgroupProbe['limits'];
    accounting: CgroupProbe['accounting'];
    kill: 'cgroup.kill' | 'signal loop' | 'process group';
    emptiness: 'cgroup.events' | 'polling';
  };
  namespaces: Record<NamespaceKind, Capability>;
  bwrap: ToolInfo;
  compiler: ToolInfo;
  /** What admission cannot enforce here, one human phrase each; empty when nothing is missing. */
  missing: string[];
}

/** Pure: turns a report into the `captree doctor` JSON object and its human lines. */
export function describeHost(r: HostReport): { json: HostSummary; lines: string[] } {
  const c = r.cgroups;
  const kill: HostSummary['cgroups']['kill'] =
    c.driver === 'none' ? 'process group' : c.cgroupKill ? 'cgroup.kill' : 'signal loop';
  const emptiness: HostSummary['cgroups']['emptiness'] = c.cgroupEvents ? 'cgroup.events' : 'polling';
  const missing: string[] = [];
  for (const l of Object.values(c.limits)) if (!l.enforced) missing.push(l.detail);
  for (const [k, v] of Object.entries(r.namespaces))
    if (!v.available) missing.push(`${k} namespaces: ${v.detail}`);
  if (!r.compiler.present) missing.push('no C compiler (cc): the launcher cannot be built');
  const json: HostSummary = {
    kernel: r.kernel,
    arch: r.arch,
    root: r.root,
    cgroups: {
      layout: c.layout,
      driver: c.driver,
      reason: c.reason,
      limits: c.limits,
      accounting: c.accounting,
      kill,
      emptiness,
    },
    namespaces: r.namespaces,
    bwrap: r.bwrap,
    compiler: r.compiler,
    missing,
  };
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const lines = [
    `kernel ${r.kernel} (${r.arch}), ${r.root ? 'running as root' : `running as uid ${r.uid} (not root)`}`,
    `cgroups: ${LAYOUT_TEXT[c.layout]}; driver ${c.driver}${c.reason ? ` (${c.reason})` : ''}`,
    ...Object.values(c.limits).map((l) => `  ${l.detail}`),
    `  accounting: cpu ${c.accounting.cpu}, memory ${c.accounting.memory}, pids ${c.accounting.pids}`,
    `  stop everything: ${
      kill === 'cgroup.kill'
        ? 'cgroup.kill (race-free)'
        : kill === 'signal loop'
          ? 'SIGKILL loop over cgroup.procs (races forks)'
          : 'process group only (setsid escapes)'
    }`,
    `  empty detection: ${emptiness === 'cgroup.events' ? 'cgroup.events (inotify)' : 'polling'}`,
    `namespaces: ${(Object.keys(r.namespaces) as NamespaceKind[]).map((k) => `${k} ${yes(r.namespaces[k].available)}`).join(', ')}`,
    ...(Object.entries(r.namespaces) as [NamespaceKind, Capability][])
      .filter(([, v]) => !v.available)
      .map(([k, v]) => `  ${k}: ${v.detail}`),
    `bubblewrap: ${r.bwrap.present ? `${r.bwrap.path}${r.bwrap.version ? ` (${r.bwrap.version})` : ''}` : 'not found (optional; apt install bubblewrap)'}`,
    `C compiler: ${r.compiler.present ? `${r.compiler.path}${r.compiler.version ? ` (${r.compiler.version})` : ''}` : 'not found: the launcher cannot be built'}`,
    missing.length === 0
      ? 'everything captree enforces is available here'
      : `not enforceable here: ${missing.length} item(s) above`,
  ];
  return { json, lines };
}

/** The human text of `captree doctor`. */
export function formatHostReport(r: HostReport): string {
  return `${describeHost(r).lines.join('\n')}\n`;
}
