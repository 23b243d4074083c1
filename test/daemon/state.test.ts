/** state.json (`DurableState`) and the journal's pid → path lookup used by crash recovery. */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathsOfPids } from '../../src/daemon/journal.ts';
import { DurableState } from '../../src/daemon/state.ts';

const dir = mkdtempSync(join(tmpdir(), 'captree-state-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('DurableState', () => {
  it('starts empty, writes every change whole, reads it back, and is removed by a clean stop', () => {
    const file = join(dir, 'state.json');
    const s = DurableState.load(file);
    assert.deepEqual(s.held, []);
    s.setHeld('/t/b', true);
    s.setHeld('/t/a', true);
    s.setHeld('/t/a', true);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { version: 1, held: ['/t/a', '/t/b'] });
    assert.deepEqual(readdirSync(dir), ['state.json'], 'no temporary file left');
    const again = DurableState.load(file);
    assert.ok(again.isHeld('/t/a') && again.isHeld('/t/b') && !again.isHeld('/t/c'));
    again.setHeld('/t/b', false);
    assert.deepEqual(DurableState.load(file).held, ['/t/a']);
    again.remove();
    assert.deepEqual(readdirSync(dir), []);
  });

  it('ignores fields it does not know; refuses a file that is not JSON', () => {
    const file = join(dir, 'state2.json');
    writeFileSync(file, JSON.stringify({ version: 2, held: ['/t/x', 3], admitted: [{}] }));
    assert.deepEqual(DurableState.load(file).held, ['/t/x']);
    writeFileSync(file, '{"held": [');
    assert.throws(() => DurableState.load(file), /state2\.json is not valid JSON/);
    rmSync(file);
  });
});

describe('pathsOfPids', () => {
  it('finds the last started record of each pid before the given end', () => {
    const file = join(dir, 'journal.jsonl');
    const lines = [
      { type: 'started', path: '/t/a', pid: 10 },
      { type: 'exited', path: '/t/a', pid: 10 },
      { type: 'started', path: '/t/b', pid: 11 },
      { type: 'started', path: '/t/c', pid: 10 },
    ].map((r) => JSON.stringify(r));
    const before = `${lines.join('\n')}\n`;
    writeFileSync(file, `${before}${JSON.stringify({ type: 'started', path: '/t/new', pid: 11 })}\n`);
    const found = pathsOfPids(file, new Set([10, 11, 12]), Buffer.byteLength(before));
    assert.deepEqual([...found].sort(), [
      [10, '/t/c'],
      [11, '/t/b'],
    ]);
    rmSync(file);
  });
});
