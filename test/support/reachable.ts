/**
 * Programs a child running as another user can exec. A clone under a 0700 home directory
 * (/root/src/captree) holds node_modules/node/bin/node where `nobody` cannot reach it, so a test
 * that runs a child as another user links Node and its scripts into a world-readable directory
 * of its own, removed when the test process exits.
 */
import { chmodSync, copyFileSync, linkSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

let dir: string | null = null;

function shared(): string {
  if (dir === null) {
    const made = mkdtempSync(join(tmpdir(), 'captree-reachable-'));
    chmodSync(made, 0o755);
    process.once('exit', () => rmSync(made, { recursive: true, force: true }));
    dir = made;
  }
  return dir;
}

/** `file` at a path every user can reach: a hard link where possible (no copy of 100 MiB), else a copy. */
export function reachable(file: string, mode = 0o755): string {
  const target = join(shared(), basename(file));
  try {
    linkSync(file, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return target;
    copyFileSync(file, target);
    chmodSync(target, mode);
  }
  return target;
}

/** This Node.js, reachable by any user. */
export function reachableNode(): string {
  return reachable(process.execPath);
}
