import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errorAt, formatError, locate, parseManifest, positionOf } from '../../src/manifest/index.ts';
import { yaml } from './helpers.ts';

const TEXT = yaml(
  'name: shop', // 1
  'children:', // 2
  '  - name: db', // 3
  '    command: [postgres]', // 4
  '    requires:', // 5
  '      cpu: 0.5', // 6
  '      memory: 1Gi', // 7
  '    provides: { db.sql: { unix: db.sock } }', // 8
);

test('positions of values, keys and missing fields', () => {
  const result = parseManifest(TEXT, 'captree.yaml');
  assert.ok(result.ok);
  const { source } = result;
  assert.deepEqual(positionOf(source, ['children', 0, 'requires', 'cpu']), { line: 6, col: 12 });
  assert.deepEqual(positionOf(source, ['children', 0, 'requires', 'cpu'], 'key'), { line: 6, col: 7 });
  assert.deepEqual(positionOf(source, ['children', 0, 'provides', 'db.sql', 'unix']), { line: 8, col: 33 });
  // A field that is not written: the mapping that would hold it.
  assert.deepEqual(positionOf(source, ['children', 0, 'requires', 'pids']), { line: 6, col: 7 });
});

test('later layers report errors by tree path in the same format', () => {
  const result = parseManifest(TEXT, 'captree.yaml');
  assert.ok(result.ok);
  assert.deepEqual(locate(result.source, '/shop/db', 'requires.memory'), { line: 7, col: 15 });
  assert.deepEqual(locate(result.source, '/shop'), { line: 1, col: 1 });
  const error = errorAt(
    result.source,
    '/shop/db',
    ['requires', 'cpu'],
    'exceeds what /shop holds (0.4 cores left)',
  );
  assert.equal(
    formatError(error),
    'captree.yaml:6:12: /shop/db requires.cpu: exceeds what /shop holds (0.4 cores left)',
  );
});
