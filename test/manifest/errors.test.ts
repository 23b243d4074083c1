import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errorsOf, yaml } from './helpers.ts';

test('a negative intensity points at the value', () => {
  assert.deepEqual(errorsOf(yaml('name: shop', 'strategy: rest_for_one', 'intensity: -1', 'children: []')), [
    'captree.yaml:3:12: /shop intensity: must be an integer ≥ 0, got -1',
  ]);
});

test('YAML syntax errors carry their position', () => {
  // The parser notices an unclosed quote where the file ends.
  const errors = errorsOf(yaml('name: shop', 'children:', '  - name: a', '    command: "x', '  - name: b'));
  assert.deepEqual(errors, ['captree.yaml:6:1: YAML: Missing closing "quote']);
});

test('duplicate keys are YAML errors', () => {
  assert.deepEqual(errorsOf(yaml('name: shop', 'name: again', 'children: []')), [
    'captree.yaml:2:1: YAML: Map keys must be unique',
  ]);
});

test('duplicate child names within a node', () => {
  assert.deepEqual(
    errorsOf(
      yaml(
        'name: shop',
        'children:',
        '  - name: db',
        '    command: [a]',
        '  - name: api',
        '    children:',
        '      - { name: db, command: [ok] }', // a different node: allowed
        '  - name: db',
        '    command: [b]',
      ),
    ),
    [
      "captree.yaml:8:11: /shop/db name: duplicate name 'db' (also at line 3); names must be unique within a node",
    ],
  );
});

test('a child with both command and children', () => {
  assert.deepEqual(
    errorsOf(yaml('name: shop', 'children:', '  - name: db', '    command: [a]', '    children: []')),
    [
      'captree.yaml:5:5: /shop/db children: `command` makes this a process and `children` makes it a node; keep one (a process cannot have children)',
    ],
  );
});

test('a child with neither command nor children', () => {
  assert.deepEqual(errorsOf(yaml('name: shop', 'children:', '  - name: db', '    restart: transient')), [
    'captree.yaml:3:5: /shop/db: needs `command` (a process) or `children` (a node; `children: []` if empty)',
  ]);
});

test('significant with restart permanent (OTP rule)', () => {
  assert.deepEqual(
    errorsOf(
      yaml(
        'name: shop',
        'autoShutdown: any_significant',
        'children:',
        '  - name: job',
        '    command: [a]',
        '    significant: true',
      ),
    ),
    [
      'captree.yaml:6:18: /shop/job significant: a permanent child cannot be significant (OTP rule: it never exits for good); set `restart: transient` or `temporary`, or remove `significant`',
    ],
  );
});

test('significant under autoShutdown never (OTP rule)', () => {
  assert.deepEqual(
    errorsOf(
      yaml(
        'name: shop',
        'children:',
        '  - name: job',
        '    command: [a]',
        '    restart: transient',
        '    significant: true',
      ),
    ),
    [
      "captree.yaml:6:18: /shop/job significant: has no effect under a parent with `autoShutdown: never` (OTP rule); set the parent's `autoShutdown: any_significant` or `all_significant`, or remove `significant`",
    ],
  );
});

test('maxChildren on a node that is not dynamic', () => {
  assert.deepEqual(
    errorsOf(yaml('name: shop', 'children:', '  - name: dev', '    maxChildren: 3', '    children: []')),
    [
      'captree.yaml:4:18: /shop/dev maxChildren: only applies to `strategy: dynamic` (this node is one_for_one); remove it or make the node dynamic',
    ],
  );
});

test('names must match the name pattern', () => {
  assert.deepEqual(errorsOf(yaml('name: shop', 'children:', '  - name: -db', '    command: [a]')), [
    "captree.yaml:3:11: /shop/children[0] name: must be a name: a letter or digit, then letters, digits, '_', '.' or '-', got '-db'",
  ]);
  assert.deepEqual(errorsOf(yaml('name: my shop', 'children: []')), [
    "captree.yaml:1:7: / name: must be a name: a letter or digit, then letters, digits, '_', '.' or '-', got 'my shop'",
  ]);
});

test('unknown keys, with a suggestion when one is close', () => {
  assert.deepEqual(
    errorsOf(
      yaml(
        'name: shop',
        'stratgy: one_for_all',
        'auto_shutdown: never',
        'children:',
        '  - name: db',
        '    command: [a]',
        '    requires: { cpus: 1, memroy: 1Gi }',
        '    ready: { tcp: 5432, timout: 5s }',
        '    frobnicate: true',
      ),
    ),
    [
      "captree.yaml:2:1: /shop stratgy: unknown field; did you mean 'strategy'?",
      "captree.yaml:3:1: /shop auto_shutdown: unknown field; did you mean 'autoShutdown'?",
      "captree.yaml:7:17: /shop/db requires.cpus: unknown field; did you mean 'cpu'?",
      "captree.yaml:7:26: /shop/db requires.memroy: unknown field; did you mean 'memory'?",
      "captree.yaml:8:25: /shop/db ready.timout: unknown field; did you mean 'timeout'?",
      'captree.yaml:9:5: /shop/db frobnicate: unknown field; known fields: name, command, env, envFile, inheritEnv, cwd, user, group, restart, shutdown, stopSignal, killMode, pidFile, significant, backoff, permanentExitCodes, ready, liveness, watchdog, logs, requires, provides, supervisor, priority, reload',
    ],
  );
});

test('enum values get a suggestion too', () => {
  assert.deepEqual(errorsOf(yaml('name: shop', 'strategy: rest-for-one', 'children: []')), [
    "captree.yaml:2:11: /shop strategy: must be one of one_for_one | one_for_all | rest_for_one | dynamic, got 'rest-for-one'; did you mean 'rest_for_one'?",
  ]);
});

test('missing required fields point at the mapping that lacks them', () => {
  assert.deepEqual(errorsOf(yaml('children:', '  - command: [a]')), [
    "captree.yaml:1:1: / name: is required: must be a name (letters, digits, '_', '.', '-')",
    "captree.yaml:2:5: /children[0] name: is required: must be a name (letters, digits, '_', '.', '-')",
  ]);
});

test('ready takes exactly one probe', () => {
  assert.deepEqual(
    errorsOf(
      yaml(
        'name: shop',
        'children:',
        '  - name: a',
        '    command: [a]',
        '    ready: { tcp: 1, http: "http://x/" }',
        '  - name: b',
        '    command: [b]',
        '    ready: { timeout: 1s }',
      ),
    ),
    [
      'captree.yaml:5:12: /shop/a ready: ready takes one of notify | sd_notify | tcp | http | exec | log, not several (tcp, http)',
      'captree.yaml:8:12: /shop/b ready: ready needs one of notify | sd_notify | tcp | http | exec | log',
    ],
  );
});

test('the root cannot run a command', () => {
  assert.deepEqual(errorsOf(yaml('name: shop', 'command: [a]')), [
    'captree.yaml:2:1: /shop command: the root is a node and cannot run a command; move it into `children:` as a process',
  ]);
});

test('an empty file or a non-mapping root', () => {
  assert.deepEqual(errorsOf(''), [
    'captree.yaml:1:1: the manifest is empty; it needs at least `name:` and `children:`',
  ]);
  assert.deepEqual(errorsOf('- a\n'), [
    'captree.yaml:1:1: the manifest must be a mapping (the root node), got a list',
  ]);
});

test('all errors at once, in file order, across nodes and kinds', () => {
  const errors = errorsOf(
    yaml(
      'name: shop', // 1
      'intensity: -1', // 2
      'children:', // 3
      '  - name: db', // 4
      '    command: [postgres]', // 5
      '    shutdown: soon', // 6
      '    requires: { cpu: -1, memory: 12XB }', // 7
      '  - name: dev', // 8
      '    strategy: one_for_al', // 9
      '    children:', // 10
      '      - name: sh', // 11
      '        command: 3', // 12
      '      - name: sh', // 13
      '        command: [b]', // 14
      '        children: []', // 15
      '  - name: db', // 16
      '    command: [x]', // 17
      '    significant: true', // 18
      'polcy: {}', // 19
    ),
  );
  assert.deepEqual(
    errors.map((line) => line.split(': ').slice(0, 2).join(': ')),
    [
      'captree.yaml:2:12: /shop intensity',
      'captree.yaml:6:15: /shop/db shutdown',
      'captree.yaml:7:22: /shop/db requires.cpu',
      'captree.yaml:7:34: /shop/db requires.memory',
      'captree.yaml:9:15: /shop/dev strategy',
      'captree.yaml:12:18: /shop/dev/sh command',
      'captree.yaml:13:15: /shop/dev/sh name',
      'captree.yaml:15:9: /shop/dev/sh children',
      'captree.yaml:16:11: /shop/db name',
      'captree.yaml:18:18: /shop/db significant',
      'captree.yaml:18:18: /shop/db significant',
      'captree.yaml:19:1: /shop polcy',
    ],
  );
});

test('errors before a YAML syntax error are still reported', () => {
  const errors = errorsOf(
    yaml('name: shop', 'intensity: -2', 'children:', '  - name: a', '    command: [a, "b'),
  );
  assert.equal(errors[0], 'captree.yaml:2:12: /shop intensity: must be an integer ≥ 0, got -2');
  assert.match(errors[1] ?? '', /^captree\.yaml:\d+:\d+: YAML: /);
});

test('cross-field and nested value checks', () => {
  assert.deepEqual(
    errorsOf(
      yaml(
        'name: x', // 1
        'children:', // 2
        '  - name: a', // 3
        '    command: []', // 4
        "    ready: { log: '(' }", // 5
        '    backoff: { initial: 10s, max: 1s }', // 6
        '    requires: { paths: [{ path: a, mode: rx }] }', // 7
        '  - name: d', // 8
        '    strategy: dynamic', // 9
        '    maxChildren: 0', // 10
        '    children: [{ name: z, command: z }]', // 11
      ),
    ),
    [
      "captree.yaml:4:14: /x/a command: must not be empty: a list of strings like [node, api.js] or a string run with 'sh -c'",
      'captree.yaml:5:19: /x/a ready.log: is not a valid regular expression: Invalid regular expression: /(/: Unterminated group',
      'captree.yaml:6:35: /x/a backoff.max: must be ≥ initial (10000ms)',
      "captree.yaml:7:42: /x/a requires.paths[0].mode: must be 'ro' or 'rw', got 'rx'; did you mean 'ro'?",
      'captree.yaml:10:18: /x/d maxChildren: is 0 but the node already lists 1 children; raise it',
    ],
  );
});
