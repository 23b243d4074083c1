/** The Prometheus text writer: escaping, special values, families kept together, undeclared names refused. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { restartReason } from '../../src/daemon/metrics.ts';
import { TextWriter } from '../../src/daemon/metrics-text.ts';

test('label values escape backslash, quote and newline; HELP escapes backslash and newline', () => {
  const w = new TextWriter();
  w.family('x_total', 'counter', 'a \\ help\nline');
  w.sample('x_total', { path: '/a"b\\c\nd' }, 3);
  assert.equal(
    w.toString(),
    '# HELP x_total a \\\\ help\\nline\n# TYPE x_total counter\nx_total{path="/a\\"b\\\\c\\nd"} 3\n',
  );
});

test('families stay together in declaration order; NaN and infinities; no labels', () => {
  const w = new TextWriter();
  w.family('a', 'gauge', 'A');
  w.family('b', 'gauge', 'B');
  w.sample('b', {}, Number.POSITIVE_INFINITY);
  w.sample('a', { k: 'v' }, Number.NaN);
  w.sample('b', { k: 'w' }, Number.NEGATIVE_INFINITY);
  const lines = w.toString().trimEnd().split('\n');
  assert.deepEqual(lines, [
    '# HELP a A',
    '# TYPE a gauge',
    'a{k="v"} NaN',
    '# HELP b B',
    '# TYPE b gauge',
    'b +Inf',
    'b{k="w"} -Inf',
  ]);
  assert.throws(() => w.sample('c', {}, 1), /metric c was not declared/);
});

test('restart reasons name why the instance before stopped', () => {
  assert.equal(restartReason({ kind: 'crashed', message: 'x', signal: 'SIGKILL' }, false), 'signal');
  assert.equal(restartReason({ kind: 'crashed', message: 'x', signal: 'SIGKILL', oom: true }, false), 'oom');
  assert.equal(restartReason({ kind: 'crashed', message: 'exit code 3', code: 3 }, false), 'exit_code');
  assert.equal(restartReason({ kind: 'normal' }, false), 'normal');
  assert.equal(restartReason({ kind: 'crashed', message: 'x' }, true), 'start_failed');
  assert.equal(restartReason(undefined, false), 'unknown');
});
