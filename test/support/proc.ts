/**
 * A process's place in the host's process tree, from /proc. A confined child's reported pid is
 * its program; above it are the init of its PID namespace and an outer process, both forked by
 * the launcher (so named like it), then the launcher itself.
 */
import { readFileSync } from 'node:fs';

/** The parent pid, or null when the process is gone. */
export function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** The launcher above `pid`: the topmost of the launcher-named processes over it; null if none. */
export function launcherOf(pid: number): number | null {
  let found: number | null = null;
  for (let p = parentOf(pid), depth = 0; p !== null && p > 1 && depth < 8; p = parentOf(p), depth++) {
    if (commOf(p).startsWith('captree-launche')) found = p;
    else if (found !== null) break;
  }
  return found;
}
