import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCpu, parseDuration, parseSize } from '../../src/manifest/index.ts';
import { errorsOf, treeOf, yaml } from './helpers.ts';

test('durations', () => {
  const table: [number | string, number | undefined][] = [
    ['5s', 5000],
    ['500ms', 500],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1.5s', 1500],
    ['1m30s', 90_000],
    ['250', 250],
    [0, 0],
    [1500, 1500],
    ['5x', undefined],
    ['s', undefined],
    ['-1s', undefined],
    ['5 s', undefined],
    [-1, undefined],
  ];
  for (const [input, expected] of table) assert.equal(parseDuration(input), expected, String(input));
});

test('sizes', () => {
  const table: [number | string, number | undefined][] = [
    ['256Mi', 256 * 2 ** 20],
    ['1Gi', 2 ** 30],
    ['512Ki', 512 * 1024],
    ['1G', 1e9],
    ['100M', 1e8],
    ['1k', 1000],
    ['2MiB', 2 * 2 ** 20],
    ['1.5Gi', 1.5 * 2 ** 30],
    ['4096', 4096],
    ['10B', 10],
    [1024, 1024],
    ['12XB', undefined],
    ['Mi', undefined],
    ['-1Mi', undefined],
    [-5, undefined],
  ];
  for (const [input, expected] of table) assert.equal(parseSize(input), expected, String(input));
});

test('cpu', () => {
  const table: [number | string, number | undefined][] = [
    [0.2, 0.2],
    [2, 2],
    ['20%', 0.2],
    ['150%', 1.5],
    ['200m', 0.2],
    ['1500m', 1.5],
    ['0.5', 0.5],
    [-1, undefined],
    ['20 %', undefined],
    ['lots', undefined],
  ];
  for (const [input, expected] of table) assert.equal(parseCpu(input), expected, String(input));
});

test('units reach the tree as numbers', () => {
  const tree = treeOf(
    yaml(
      'name: app',
      'period: 1m',
      'requires: { cpu: 50%, memory: 1G, pids: 10 }',
      'children:',
      '  - name: p',
      '    command: [x]',
      '    shutdown: 1.5s',
      '    watchdog: 30s',
      "    logs: { maxSize: '1Mi' }",
      '    requires: { cpu: 250m, memory: 64Mi }',
    ),
  );
  assert.equal(tree.root.period, 60_000);
  assert.deepEqual(
    [tree.root.requires.cpu, tree.root.requires.memory, tree.root.requires.pids],
    [0.5, 1e9, 10],
  );
  const child = tree.root.children[0];
  assert.ok(child?.kind === 'process');
  assert.equal(child.shutdown, 1500);
  assert.equal(child.watchdog, 30_000);
  assert.equal(child.logs.maxSize, 2 ** 20);
  assert.deepEqual([child.requires.cpu, child.requires.memory], [0.25, 64 * 2 ** 20]);
});

test('bad units say where, what was found and what fits', () => {
  assert.deepEqual(
    errorsOf(
      yaml(
        'name: app',
        'period: soon',
        'children:',
        '  - name: p',
        '    command: [x]',
        '    requires: { cpu: -1, memory: 12XB }',
      ),
    ),
    [
      "captree.yaml:2:9: /app period: must be a duration like '5s', '500ms', '1.5s', '2m', '1h' or a number of milliseconds, got 'soon'",
      "captree.yaml:6:22: /app/p requires.cpu: must be cores ≥ 0 like 0.5, a percentage of one core like '20%', or millicores like '200m', got -1",
      "captree.yaml:6:34: /app/p requires.memory: must be a size like '256Mi', '1Gi', '512Ki' (binary), '1G', '100M' (decimal) or a number of bytes, got '12XB'",
    ],
  );
});
