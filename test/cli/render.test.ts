/** The human output: the ps table, tree glyphs, colour rules, event lines and the live view's throttle. */
import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';
import { palette } from '../../src/cli/cli.ts';
import { LiveView } from '../../src/cli/live.ts';
import { eventLine, formatBytes, renderTable, treePrefixes } from '../../src/cli/render.ts';
import type { JournalRecord, PsEntry } from '../../src/daemon/index.ts';

function entry(path: string, depth: number, over: Partial<PsEntry> = {}): PsEntry {
  return {
    path,
    depth,
    kind: depth === 0 ? 'node' : 'process',
    state: 'ready',
    pid: depth === 0 ? null : 100 + depth,
    uptimeMs: 65_000,
    restarts: 0,
    ready: true,
    grant: { cpu: 0.5, memory: 256 * 1024 * 1024, pids: null },
    used: { cpu: null, memory: 3 * 1024 * 1024 },
    lastExit: null,
    ...over,
  };
}

/** A fake terminal that records writes. */
function fakeTty(columns = 200, rows = 50): NodeJS.WriteStream & { writes: string[] } {
  const writes: string[] = [];
  return {
    isTTY: true,
    columns,
    rows,
    writes,
    write(s: string) {
      writes.push(s);
      return true;
    },
  } as unknown as NodeJS.WriteStream & { writes: string[] };
}

describe('ps table', () => {
  test('tree glyphs follow depth and last siblings', () => {
    assert.deepEqual(treePrefixes([0, 1, 2, 2, 1, 2]), ['', '├─ ', '│  ├─ ', '│  └─ ', '└─ ', '   └─ ']);
  });

  test('aligned columns, used/granted, ∞ for unlimited', () => {
    const lines = renderTable([
      entry('/s', 0),
      entry('/s/db', 1, { restarts: 12, pid: 123456 }),
      entry('/s/api', 1),
    ]);
    assert.equal(lines.length, 4);
    assert.match(lines[0]!, /^PATH\s+KIND\s+STATE\s+PID\s+UPTIME\s+RESTARTS\s+READY\s+CPU\s+MEMORY\s+PIDS$/);
    assert.match(
      lines[2]!,
      /^├─ db\s+process\s+ready\s+123456\s+1m05s\s+12\s+yes\s+-\/0\.5\s+3Mi\/256Mi\s+∞$/,
    );
    const ends = lines.map((l) => l.length);
    assert.equal(new Set(ends).size, 1, `right-aligned last column: ${ends}`);
  });

  test('formatBytes', () => {
    assert.equal(formatBytes(512), '512B');
    assert.equal(formatBytes(1536), '1.5Ki');
    assert.equal(formatBytes(128 * 1024 * 1024), '128Mi');
  });

  test('colour only on a TTY without NO_COLOR', () => {
    assert.equal(palette(fakeTty(), {}).enabled, true);
    assert.equal(palette(fakeTty(), { NO_COLOR: '1' }).enabled, false);
    assert.equal(palette({ isTTY: false } as NodeJS.WriteStream, {}).enabled, false);
    const coloured = renderTable([entry('/s', 0)], { palette: palette(fakeTty(), {}) });
    assert.ok(coloured[1]!.includes('\x1b['));
  });

  test('event lines', () => {
    const r = {
      type: 'exited',
      path: '/s/db',
      at: 1,
      reason: { kind: 'crashed', message: '', code: 3 },
      expected: false,
      seq: 1,
      ts: 0,
      time: '1970-01-01T00:00:00.000Z',
    } as JournalRecord;
    assert.equal(eventLine(r), '1970-01-01T00:00:00.000Z /s/db exited: exit code 3');
  });
});

describe('live view', () => {
  test('figures refresh once a second with no event, and a use above the grant shows clamped', () => {
    mock.timers.enable({ apis: ['setInterval', 'setTimeout', 'Date'] });
    try {
      const out = fakeTty();
      const rows = [
        entry('/s', 0),
        entry('/s/a', 1, {
          grant: { cpu: 0.1, memory: null, pids: null },
          used: { cpu: 0.21, memory: null },
        }),
      ];
      const view = new LiveView(out, palette(out, { NO_COLOR: '1' }), () => rows, 'header');
      const base = out.writes.length;
      mock.timers.tick(999);
      assert.equal(out.writes.length, base);
      mock.timers.tick(1);
      mock.timers.tick(0);
      assert.equal(out.writes.length, base + 1, 'one redraw after a second');
      mock.timers.tick(1000);
      mock.timers.tick(0);
      assert.equal(out.writes.length, base + 2);
      const frame = out.writes.at(-1) ?? '';
      assert.match(frame, /0\.1\/0\.1/);
      assert.doesNotMatch(frame, /0\.21/);
      view.close();
      const closed = out.writes.length;
      mock.timers.tick(5000);
      assert.equal(out.writes.length, closed, 'nothing after close');
    } finally {
      mock.timers.reset();
    }
  });

  test('a burst of events draws once, later, not synchronously', async () => {
    const out = fakeTty();
    let calls = 0;
    let asked = 0;
    const view = new LiveView(
      out,
      palette(out, {}),
      (limit) => {
        calls++;
        asked = limit;
        return [entry('/s', 0), entry('/s/a', 1)];
      },
      'header',
    );
    const base = out.writes.length;
    const r = {
      type: 'starting',
      path: '/s/a',
      at: 0,
      seq: 1,
      ts: 0,
      time: '1970-01-01T00:00:00.000Z',
    } as JournalRecord;
    for (let i = 0; i < 50; i++) view.event(r);
    assert.equal(out.writes.length, base, 'nothing drawn synchronously');
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(out.writes.length, base + 1, 'one frame for the burst');
    // One read of the rows per draw (the coloured and the plain frame are built from it), of
    // no more rows than the terminal has lines.
    assert.equal(calls, 1);
    assert.ok(asked > 0 && asked < (out.rows || 40), `asked for ${asked} rows`);
    view.changed();
    view.changed();
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(out.writes.length, base + 2);
    const frame = out.writes.at(-1)!;
    const esc = '\x1b';
    assert.ok(
      new RegExp(`^${esc}\\[\\d+F${esc}\\[J`).test(frame),
      'redraws in place over the previous frame',
    );
    view.close();
    assert.ok(out.writes.at(-1)!.endsWith(`${esc}[?25h`), 'cursor shown again');
  });
});
