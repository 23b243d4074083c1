/**
 * Log capture: splitting, the record format, rotation under concurrent producers with nothing
 * lost or duplicated, the bounded tail, and reading back by time.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  BoundedTail,
  ChildLog,
  formatRecord,
  LineSplitter,
  parseRecord,
  RotatingFileWriter,
  readLogSince,
  readRotatedSet,
} from '../../src/runtime/logs/index.ts';
import { uniqueName } from '../support/host.ts';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), `${uniqueName('logs')}-`));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('LineSplitter', () => {
  test('joins lines across chunks, handles CRLF, keeps lone CR, splits UTF-8 safely', () => {
    const s = new LineSplitter();
    const euro = Buffer.from('€'); // 3 bytes, fed one at a time
    const got = [
      ...s.push('ab'),
      ...s.push('c\r\nde'),
      ...s.push(euro.subarray(0, 1)),
      ...s.push(euro.subarray(1, 2)),
      ...s.push(Buffer.concat([euro.subarray(2), Buffer.from('\n50%\r100%\nlast')])),
      ...s.end(),
    ];
    assert.deepEqual(got, [
      { text: 'abc', partial: false },
      { text: 'de€', partial: false },
      { text: '50%\r100%', partial: false },
      { text: 'last', partial: true },
    ]);
  });

  test('cuts an endless line at maxLineBytes without splitting a character', () => {
    const s = new LineSplitter(10);
    const got = s.push('aaaaaaaa€€bb\n'); // 8 bytes fit, the euro sign would cross 10
    assert.deepEqual(
      got.map((l) => [l.text, l.partial]),
      [
        ['aaaaaaaa', true],
        ['€€bb', false],
      ],
    );
    const pending = s.push('x'.repeat(25));
    assert.deepEqual(
      pending.map((l) => l.text.length),
      [10, 10],
    );
    assert.deepEqual(s.end(), [{ text: 'xxxxx', partial: true }]);
  });
});

describe('record format', () => {
  test('round-trips, including partial records and text with spaces', () => {
    const r = {
      ts: Date.UTC(2025, 0, 31, 12, 34, 56, 789),
      stream: 'err' as const,
      partial: true,
      text: ' a  b ',
    };
    const line = formatRecord(r);
    assert.equal(line, '2025-01-31T12:34:56.789Z err+  a  b \n');
    assert.deepEqual(parseRecord(line.slice(0, -1)), r);
    assert.equal(parseRecord('garbage'), null);
  });
});

describe('RotatingFileWriter', () => {
  test('concurrent producers across many rotations: every line exactly once, in order, files bounded', async () => {
    const w = new RotatingFileWriter({ dir, name: 'concurrent', maxBytes: 4096, keep: 500 });
    const producers = 8;
    const perProducer = 500;
    await Promise.all(
      Array.from({ length: producers }, async (_, p) => {
        for (let i = 0; i < perProducer; i++) {
          w.write(`p${p} ${String(i).padStart(5, '0')} ${'x'.repeat((i * 7 + p) % 90)}\n`);
          if (i % 13 === p) await new Promise((r) => setImmediate(r));
        }
      }),
    );
    await w.close();
    assert.ok(w.rotations > 50, `rotations=${w.rotations}`);
    const bufs = await readRotatedSet(w.files());
    const lines = bufs.flatMap((b) => b.toString().split('\n').filter(Boolean));
    assert.equal(lines.length, producers * perProducer);
    const next = new Array<number>(producers).fill(0);
    for (const l of lines) {
      const [tag, seq] = l.split(' ');
      const p = Number(tag!.slice(1));
      assert.equal(Number(seq), next[p], `producer ${p} out of order or duplicated at ${l}`);
      next[p]!++;
    }
    for (const f of w.files()) {
      if (fs.existsSync(f)) assert.ok(fs.statSync(f).size <= 4096, `${f} exceeds maxBytes`);
    }
  });

  test('keeps only `keep` rotated files, as a contiguous newest suffix', async () => {
    const w = new RotatingFileWriter({ dir, name: 'keep', maxBytes: 100, keep: 2 });
    for (let i = 0; i < 100; i++) w.write(`line ${String(i).padStart(3, '0')}\n`);
    await w.close();
    assert.equal(fs.existsSync(path.join(dir, 'keep.log.3')), false);
    const lines = (await readRotatedSet(w.files())).flatMap((b) => b.toString().split('\n').filter(Boolean));
    const nums = lines.map((l) => Number(l.split(' ')[1]));
    assert.equal(nums.at(-1), 99);
    nums.forEach((n, i) => {
      if (i > 0) assert.equal(n, nums[i - 1]! + 1);
    });
  });

  test('a record larger than maxBytes gets a file of its own and is not split', async () => {
    const w = new RotatingFileWriter({ dir, name: 'big', maxBytes: 50, keep: 3 });
    w.write('small\n');
    w.write(`${'B'.repeat(200)}\n`);
    w.write('after\n');
    await w.close();
    assert.deepEqual(
      (await readRotatedSet(w.files())).map((b) => b.toString()),
      ['small\n', `${'B'.repeat(200)}\n`, 'after\n'],
    );
  });

  test('appends to an existing file after a restart', async () => {
    const a = new RotatingFileWriter({ dir, name: 'restart', maxBytes: 1000 });
    a.write('one\n');
    await a.close();
    const b = new RotatingFileWriter({ dir, name: 'restart', maxBytes: 1000 });
    b.write('two\n');
    await b.close();
    assert.equal(fs.readFileSync(path.join(dir, 'restart.log'), 'utf8'), 'one\ntwo\n');
  });

  test('a reader racing rotations sees no duplicates and no gaps', async () => {
    const w = new RotatingFileWriter({ dir, name: 'race', maxBytes: 512, keep: 50 });
    // Start with a full set on disk so every read has files to open (and yields to the writer).
    const preload = 4000;
    for (let i = 0; i < preload; i++) w.write(`${String(i).padStart(7, '0')}\n`);
    await w.flush();
    let stop = false;
    const writer = (async () => {
      for (let i = preload; !stop; i++) {
        w.write(`${String(i).padStart(7, '0')}\n`);
        // About one rotation every few milliseconds: often enough to race every read.
        if (i % 20 === 0) await delay(1);
      }
    })();
    const rotationsBefore = w.rotations;
    for (let round = 0; round < 30; round++) {
      const nums = (await readRotatedSet(w.files()))
        .flatMap((b) => b.toString().split('\n').filter(Boolean))
        .map(Number);
      // Old files are deleted past `keep`, so the set starts anywhere but must have no holes.
      for (let i = 1; i < nums.length; i++) {
        assert.equal(nums[i], nums[i - 1]! + 1, `round ${round}: gap or duplicate at index ${i}`);
      }
    }
    assert.ok(
      w.rotations - rotationsBefore > 10,
      `only ${w.rotations - rotationsBefore} rotations raced the reader`,
    );
    stop = true;
    await writer;
    await w.close();
  });
});

describe('BoundedTail', () => {
  test('bounds by lines and by bytes, oldest dropped first', () => {
    const t = new BoundedTail({ maxLines: 3, maxBytes: 9 });
    const rec = (text: string, ts = 0) => ({ ts, stream: 'out' as const, partial: false, text });
    for (const s of ['a', 'b', 'c', 'd']) t.push(rec(s));
    assert.deepEqual(
      t.records().map((r) => r.text),
      ['b', 'c', 'd'],
    );
    t.push(rec('123456789'));
    assert.deepEqual(
      t.records().map((r) => r.text),
      ['123456789'],
    );
    t.push(rec('x'.repeat(50)));
    assert.equal(t.length, 1);
    for (let i = 0; i < 5000; i++) t.push(rec('z', i));
    assert.deepEqual(
      t.records(4998).map((r) => r.ts),
      [4998, 4999],
    );
  });
});

describe('ChildLog', () => {
  test('captures a real child, stamps and tags lines, reads back since a time', async () => {
    let clock = 1_000_000;
    const log = new ChildLog({ dir, name: 'child', maxBytes: 200, keep: 10, now: () => clock });
    log.note('starting');
    clock += 1000;
    const child = spawn('sh', [
      '-c',
      'for i in 1 2 3 4 5 6 7 8 9 10; do echo "out $i"; echo "err $i" >&2; done; printf tail',
    ]);
    await Promise.all([log.attach(child.stdout, 'out'), log.attach(child.stderr, 'err')]);
    clock -= 500; // a wall-clock step back must not reorder records
    log.note('exited 0');
    await log.close();
    const all = await readLogSince(dir, 'child', 0, { keep: 10 });
    assert.equal(all.length, 1 + 10 + 10 + 1 + 1);
    assert.deepEqual(
      all.filter((r) => r.stream === 'out').map((r) => [r.text, r.partial]),
      [...Array.from({ length: 10 }, (_, i) => [`out ${i + 1}`, false]), ['tail', true]],
    );
    const since = await readLogSince(dir, 'child', 1_001_000, { keep: 10, streams: ['err', 'sys'] });
    assert.equal(since.length, 11);
    assert.equal(since.at(-1)!.text, 'exited 0');
    assert.equal(since.at(-1)!.ts, 1_001_000);
    assert.ok(log.writer.rotations > 0);
    assert.deepEqual(
      (await readLogSince(dir, 'child', 0, { keep: 10, limit: 2 })).map((r) => r.text),
      ['tail', 'exited 0'],
    );
    assert.equal(log.tail.records().at(-1)!.text, 'exited 0');
  });
});
