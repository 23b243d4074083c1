/**
 * When `up` fails or a node gives up, the reason a person can act on is usually in the failing
 * child's own output (`pyhton3: not found`, `Address already in use`), not in its exit code:
 * this prints the child's exact reason and its last log lines.
 */
import { join } from 'node:path';
import { describeExit } from '../core/index.ts';
import type { JournalRecord } from '../daemon/index.ts';
import { readLogSince } from '../runtime/logs/capture.ts';
import { formatRecord } from '../runtime/logs/format.ts';

const lines = 10;

/** Remembers the last unexpected exit of each child, to report the one that brought the tree down. */
export class FailureWatch {
  readonly #last = new Map<string, string>();
  #culprit: string | null = null;

  event(r: JournalRecord): void {
    if ((r.type === 'exited' && !r.expected) || r.type === 'start_failed' || r.type === 'permanent_failure') {
      this.#last.set(r.path, describeExit(r.reason));
      this.#culprit = r.path;
    } else if (r.type === 'intensity_exceeded' && this.#culprit === null) this.#culprit = r.path;
  }

  /** The report for stderr, or '' when no child failed. */
  async report(stateDir: string): Promise<string> {
    const path = this.#culprit;
    if (path === null) return '';
    const reason = this.#last.get(path) ?? 'gave up';
    const name = path.slice(1).replaceAll('/', '.');
    let tail: string[] = [];
    try {
      tail = (await readLogSince(join(stateDir, 'logs'), name, 0, { limit: lines })).map((r) =>
        formatRecord(r).trimEnd(),
      );
    } catch {
      // no log (a node, or nothing written)
    }
    const short = path.split('/').at(-1);
    return [
      `captree: ${path} failed: ${reason}`,
      ...(tail.length > 0
        ? [
            `  its last ${tail.length} log line${tail.length === 1 ? '' : 's'} (captree logs ${short}):`,
            ...tail.map((l) => `    ${l}`),
          ]
        : ['  it wrote nothing to stdout or stderr']),
      '',
    ].join('\n');
  }
}
