/**
 * The limits a cgroup enforces, read back from its files: what reconciliation compares with
 * the grant to see limit drift (someone or something wrote the cgroup behind captree's back).
 * cgroup v2: `cpu.max`, `memory.max`, `pids.max`; v1: `cpu.cfs_quota_us` / `cpu.cfs_period_us`,
 * `memory.limit_in_bytes`, `pids.max`. A quantity no directory of the group has is undefined
 * (not controlled here); `null` means no limit.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ReadLimits {
  /** Cores. */
  cpu?: number | null;
  /** Bytes. */
  memory?: number | null;
  pids?: number | null;
}

/** v1 reports "no memory limit" as the largest page-aligned signed 64-bit value. */
const V1_UNLIMITED = 2 ** 62;

export function readLimits(dirs: readonly string[]): ReadLimits {
  const out: ReadLimits = {};
  for (const dir of dirs) {
    const cpuMax = read(join(dir, 'cpu.max'));
    if (cpuMax !== null) {
      const [q, p] = cpuMax.split(/\s+/);
      out.cpu = q === 'max' ? null : Number(q) / Number(p);
    }
    const quota = read(join(dir, 'cpu.cfs_quota_us'));
    if (quota !== null) {
      const period = Number(read(join(dir, 'cpu.cfs_period_us')) ?? 100_000);
      out.cpu = Number(quota) < 0 ? null : Number(quota) / period;
    }
    const memMax = read(join(dir, 'memory.max'));
    if (memMax !== null) out.memory = memMax === 'max' ? null : Number(memMax);
    const memLimit = read(join(dir, 'memory.limit_in_bytes'));
    if (memLimit !== null) out.memory = Number(memLimit) >= V1_UNLIMITED ? null : Number(memLimit);
    const pids = read(join(dir, 'pids.max'));
    if (pids !== null) out.pids = pids === 'max' ? null : Number(pids);
  }
  return out;
}

function read(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}
