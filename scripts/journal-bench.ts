/**
 * What reading a big journal costs: a journal of `--mb` MiB of restart records is written to a
 * temporary directory, then read as `captree events -n 20`, `--since 1m` and in full (the
 * daemon's `readJournal`, in process: no CLI start-up in the numbers), and as the journal was read
 * before it was read backwards (the whole file at once, split and parsed: main before issue 11).
 *
 *   node scripts/journal-bench.ts [--mb 100] [--rounds 3]
 */
import * as fs from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type JournalFilter, type JournalRecord, matches, readJournal } from '../src/daemon/journal.ts';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '100' }, rounds: { type: 'string', default: '3' } },
});
const bytes = Number(values.mb) * 2 ** 20;
const rounds = Number(values.rounds);

/** The reader `captree events` used before: the whole file, split, every line parsed. */
async function wholeFile(file: string, filter: JournalFilter): Promise<JournalRecord[]> {
  const text = await fs.promises.readFile(file, 'utf8');
  const out: JournalRecord[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      const r = JSON.parse(line) as JournalRecord;
      if (matches(filter, r)) out.push(r);
    } catch {
      // torn
    }
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'captree-jbench-'));
const file = join(dir, 'journal.jsonl');
try {
  const fd = fs.openSync(file, 'w', 0o600);
  const now = Date.now();
  let written = 0;
  let batch: string[] = [];
  for (let i = 1; written < bytes; i++) {
    const ts = now - 3_600_000 + i;
    const line = JSON.stringify({
      type: 'restarting',
      path: `/big/c${i % 50}`,
      at: i,
      delay: 0,
      restarts: i,
      seq: i,
      ts,
      time: new Date(ts).toISOString(),
    });
    batch.push(line);
    written += line.length + 1;
    if (batch.length === 10_000) {
      fs.writeSync(fd, `${batch.join('\n')}\n`);
      batch = [];
    }
  }
  if (batch.length > 0) fs.writeSync(fd, `${batch.join('\n')}\n`);
  fs.closeSync(fd);
  // The last minute's records: ts within 60 s of the last one.
  const last = Number(/"ts":(\d+)/.exec(fs.readFileSync(file, 'utf8').slice(-400))?.[1]);
  const since = last - 60_000;
  const time = async (what: string, fn: () => Promise<JournalRecord[]>) => {
    const ms: number[] = [];
    let n = 0;
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      n = (await fn()).length;
      ms.push(performance.now() - t0);
    }
    ms.sort((a, b) => a - b);
    console.log(
      `${what}: ${ms[Math.floor(ms.length / 2)]!.toFixed(1)} ms (median of ${rounds}; ${n} records)`,
    );
  };
  console.log(`journal: ${(fs.statSync(file).size / 2 ** 20).toFixed(0)} MiB`);
  await time('before, last 20 (whole file, then the last 20)', async () =>
    (await wholeFile(file, {})).slice(-20),
  );
  await time('before, --since 1m', () => wholeFile(file, { since }));
  await time('after, -n 20', () => readJournal(file, {}, 20));
  await time('after, --since 1m', () => readJournal(file, { since }));
  await time('after, everything', () => readJournal(file));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
