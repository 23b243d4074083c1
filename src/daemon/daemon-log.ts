/**
 * `daemon.log` (a detached daemon's stdout and stderr) kept bounded. The daemon writes it through
 * descriptors its parent opened (O_APPEND), which it cannot reopen from Node, so it is rotated
 * as logrotate's `copytruncate` does: copied to `daemon.log.1` (older ones shift up to `.keep`),
 * then truncated in place; appends go on at the new end. A line written between the copy and the
 * truncation can be lost, which is the price of not owning the descriptor.
 */
import * as fs from 'node:fs';

export const DAEMON_LOG_MAX_BYTES = 1 << 20;
export const DAEMON_LOG_KEEP = 2;

/** Rotates `file` when it holds `maxBytes` or more; true when it did. Never throws. */
export function rotateDaemonLog(
  file: string,
  maxBytes = DAEMON_LOG_MAX_BYTES,
  keep = DAEMON_LOG_KEEP,
): boolean {
  try {
    if (fs.statSync(file).size < maxBytes) return false;
    for (let i = keep - 1; i >= 1; i--) {
      if (fs.existsSync(`${file}.${i}`)) fs.renameSync(`${file}.${i}`, `${file}.${i + 1}`);
    }
    fs.copyFileSync(file, `${file}.1`);
    fs.truncateSync(file, 0);
    return true;
  } catch {
    // Gone, or a full disk: the next check tries again.
    return false;
  }
}

/** Checks `file` every `everyMs` until the returned function is called; the timer keeps nothing alive. */
export function watchDaemonLog(file: string, everyMs = 5000, maxBytes?: number): () => void {
  const timer = setInterval(() => rotateDaemonLog(file, maxBytes), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
