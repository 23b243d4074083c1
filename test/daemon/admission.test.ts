import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { HostCapabilities } from '../../src/caps/index.ts';
import {
  admitManifest,
  admitParsed,
  contractsOf,
  hostCapabilities,
  hostCapabilitiesFrom,
} from '../../src/daemon/admission.ts';
import { availableSecrets } from '../../src/daemon/build-tree.ts';
import { formatError, type ManifestError, parseManifest } from '../../src/manifest/index.ts';
import type { HostReport } from '../../src/runtime/host-probe.ts';

const HOST: HostCapabilities = {
  cpu: 8,
  memory: 16 * 2 ** 30,
  pids: 32768,
  cpuLimits: true,
  memoryLimits: true,
  pidsLimits: true,
  netNamespaces: true,
  mountNamespaces: true,
  networks: { lan: {} },
  secrets: ['PII', 'DB_PASSWORD'],
  env: ['HOME', 'LANG'],
};

function yaml(...lines: string[]): string {
  return `${lines.join('\n')}\n`;
}

function parsed(text: string) {
  const result = parseManifest(text, 'captree.yaml', { baseDir: '/srv/app' });
  if (!result.ok) assert.fail(result.errors.map(formatError).join('\n'));
  return result;
}

function admitText(text: string, host: HostCapabilities = HOST) {
  const { tree, source } = parsed(text);
  return admitManifest(tree, source, host);
}

function rejected(text: string, host: HostCapabilities = HOST): ManifestError[] {
  const r = admitText(text, host);
  if (r.ok) assert.fail('expected a rejection');
  return r.errors;
}

/** 1-based line and column of the first `needle` at or after line `fromLine` in `text`. */
function posOf(text: string, needle: string, fromLine = 1): { line: number; col: number } {
  const lines = text.split('\n');
  for (let i = fromLine - 1; i < lines.length; i++) {
    const c = lines[i]!.indexOf(needle);
    if (c >= 0) return { line: i + 1, col: c + 1 };
  }
  assert.fail(`${needle} not in text`);
}

describe('contractsOf', () => {
  it('omits what was not given and maps endpoints, paths and policy', () => {
    const { tree } = parsed(
      yaml(
        'name: shop',
        'children:',
        '  - name: db',
        '    command: [postgres]',
        '    requires: { cpu: 0.3, cpuWeight: 200, memory: 256Mi, net: none, secrets: [DB_PASSWORD] }',
        '    provides: { db.sql: { unix: db.sock, kind: postgres } }',
        '  - name: api',
        '    command: [node, api.js]',
        '    requires:',
        '      services: [db.sql]',
        '      listen: { http: 127.0.0.1:8080, all: "0.0.0.0:81", v6: "[::1]:82", sock: { unix: api.sock } }',
        '      paths: { ./data: rw, /etc/ssl: ro }',
        '  - name: sub',
        '    policy: { never: [[secret:PII, net:internet]], maxDepth: 2 }',
        '    children: []',
      ),
    );
    const spec = contractsOf(tree);
    assert.deepEqual(spec, {
      name: 'shop',
      children: [
        {
          name: 'db',
          requires: {
            cpu: { cores: 0.3, weight: 200 },
            memory: 256 * 2 ** 20,
            net: 'none',
            secrets: ['DB_PASSWORD'],
            // A process child holds the privileges it names: none.
            privileges: [],
          },
          provides: { 'db.sql': { type: 'unix', path: 'db.sock', kind: 'postgres' } },
        },
        {
          name: 'api',
          requires: {
            listen: { http: '127.0.0.1:8080', all: '0.0.0.0:81', v6: '[::1]:82' },
            services: ['db.sql'],
            paths: { '/srv/app/data': 'rw', '/etc/ssl': 'ro' },
            privileges: [],
          },
        },
        { name: 'sub', policy: { never: [['secret:PII', 'net:internet']], maxDepth: 2 }, children: [] },
      ],
    });
  });
});

describe('admitManifest', () => {
  it('admits every example on this host', async () => {
    const dir = join(import.meta.dirname, '../../examples');
    const examples = readdirSync(dir).filter((d) => {
      try {
        readFileSync(join(dir, d, 'captree.yaml'));
        return true;
      } catch {
        return false;
      }
    });
    assert.ok(examples.length >= 3);
    for (const name of examples) {
      const file = join(dir, name, 'captree.yaml');
      const result = parseManifest(readFileSync(file, 'utf8'), file);
      // As `captree check` does: the host holds the secrets in the example's secrets/ folder.
      const secrets = result.ok ? availableSecrets(result.tree) : [];
      const r = admitParsed(result, await hostCapabilities({ secrets }));
      if (!r.ok) assert.fail(r.errors.map(formatError).join('\n'));
      assert.ok(r.grants.size > 1, name);
    }
  });

  it('admits a root without requires with what the host allows', () => {
    const r = admitText(yaml('name: bare', 'children:', '  - name: a', '    command: [a]'));
    assert.ok(r.ok);
    const g = r.grants.get('/bare')!;
    assert.equal(g.cpu.reserved, HOST.cpu);
    assert.equal(g.memory.reserved, HOST.memory);
    assert.deepEqual([...g.secrets].sort(), ['DB_PASSWORD', 'PII']);
    assert.equal(r.grants.get('/bare/a')!.cpu.reserved, 0);
  });

  it('rejects a child asking more cpu than its parent has, at its cpu:', () => {
    const text = yaml(
      'name: shop',
      'requires: { cpu: 1, memory: 1Gi }',
      'children:',
      '  - name: small',
      '    command: [a]',
      '    requires: { cpu: 0.5 }',
      '  - name: greedy',
      '    command: [b]',
      '    requires:',
      '      memory: 64Mi',
      '      cpu: 2',
    );
    const errors = rejected(text);
    assert.equal(errors.length, 1);
    const e = errors[0]!;
    const at = posOf(text, '2', posOf(text, 'cpu: 2').line);
    assert.deepEqual({ line: e.line, col: e.col }, at);
    assert.equal(e.path, '/shop/greedy');
    assert.equal(e.field, 'requires.cpu');
    assert.match(e.message, /^requires cpu 2(\.0)?, \/shop has 0\.5 left of 1(\.0)?: small holds 0\.5/);
    assert.equal(
      formatError(e),
      `captree.yaml:11:12: /shop/greedy requires.cpu: ${e.message}`,
      'same format as schema errors',
    );
  });

  it('leaves unit errors to the loader, through the same pipeline', () => {
    const text = yaml(
      'name: shop',
      'children:',
      '  - name: a',
      '    command: [a]',
      '    requires: { memory: 12XB }',
    );
    const r = admitParsed(parseManifest(text, 'captree.yaml'), HOST);
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.field, 'requires.memory');
    assert.equal(r.errors[0]!.line, 5);
    assert.match(r.errors[0]!.message, /12XB/);
  });

  it('names the path of an unroutable service, at its entry', () => {
    const text = yaml(
      'name: shop',
      'children:',
      '  - name: api',
      '    command: [a]',
      '    requires: { services: [cache.kv, db.sql] }',
      '  - name: cache',
      '    command: [c]',
      '    provides: { cache.kv: { tcp: 6379 } }',
    );
    const errors = rejected(text);
    assert.equal(errors.length, 1);
    const e = errors[0]!;
    assert.equal(e.path, '/shop/api');
    assert.equal(e.field, 'requires.services[1]');
    assert.deepEqual({ line: e.line, col: e.col }, posOf(text, 'db.sql'));
    assert.match(e.message, /^requires service db\.sql: no sibling provides it/);
  });

  it('names a cycle between two siblings', () => {
    const text = yaml(
      'name: shop',
      'children:',
      '  - name: a',
      '    command: [a]',
      '    requires: { services: [b.svc] }',
      '    provides: { a.svc: { tcp: 1001 } }',
      '  - name: b',
      '    command: [b]',
      '    requires: { services: [a.svc] }',
      '    provides: { b.svc: { tcp: 1002 } }',
    );
    const errors = rejected(text);
    const cycle = errors.filter((e) => /cycle/.test(e.message));
    assert.equal(cycle.length, 1, errors.map(formatError).join('\n'));
    const e = cycle[0]!;
    assert.match(e.message, /cycle: a -> b -> a/);
    assert.equal(e.path, '/shop/a');
    assert.equal(e.field, 'requires.services[0]');
    assert.deepEqual({ line: e.line, col: e.col }, posOf(text, 'b.svc'));
  });

  it('rejects a child that would hold secret PII and the internet under a never policy', () => {
    const text = yaml(
      'name: corp',
      'children:',
      '  - name: vault',
      '    policy: { never: [[secret:PII, net:internet]] }',
      '    requires: { secrets: [PII] }',
      '    children:',
      '      - name: store',
      '        command: [s]',
      '        requires: { net: none, secrets: [PII] }',
      '      - name: exporter',
      '        command: [e]',
      '        requires: { secrets: [PII], net: host }',
      '      - name: leaky',
      '        command: [l]',
      '        requires: { secrets: [PII] }',
    );
    const errors = rejected(text);
    assert.equal(errors.length, 2, errors.map(formatError).join('\n'));
    const [exporter, leaky] = errors;
    assert.equal(exporter!.path, '/corp/vault/exporter');
    assert.equal(exporter!.field, 'requires.net');
    assert.deepEqual({ line: exporter!.line, col: exporter!.col }, posOf(text, 'host', 12));
    assert.match(exporter!.message, /would hold secret:PII and net:internet, which \/corp\/vault forbids/);
    // Inherited network: the message says to narrow it; the error points at the secret it declares.
    assert.equal(leaky!.path, '/corp/vault/leaky');
    assert.equal(leaky!.field, 'requires.secrets[0]');
    assert.match(leaky!.message, /narrow it \(net: none\)/);
  });

  it('reports every error at once, in file order', () => {
    const text = yaml(
      'name: shop',
      'requires: { cpu: 1 }',
      'children:',
      '  - name: a',
      '    command: [a]',
      '    requires: { cpu: 4, secrets: [NOPE], net: wan }',
      '  - name: b',
      '    command: [b]',
      '    requires: { services: [missing], env: [HOME, SECRET_ENV] }',
      '  - name: c',
      '    command: [c]',
      '    requires: { listen: { s: { unix: /run/x.sock } } }',
      '  - name: d',
      '    command: [d]',
      '    requires: { listen: { t: { unix: /run/x.sock } }, paths: { /etc: rw } }',
    );
    const errors = rejected(text, { ...HOST, paths: { '/': 'ro' } });
    const got = errors.map((e) => `${e.line}:${e.col} ${e.path} ${e.field}`);
    const at = (needle: string, line: number, what: string) => {
      const p = posOf(text, needle, line);
      assert.equal(p.line, line, needle);
      return `${p.line}:${p.col} ${what}`;
    };
    assert.deepEqual(got, [
      at('4,', 6, '/shop/a requires.cpu'),
      at('NOPE', 6, '/shop/a requires.secrets[0]'),
      at('wan', 6, '/shop/a requires.net'),
      at('missing', 9, '/shop/b requires.services[0]'),
      at('SECRET_ENV', 9, '/shop/b requires.env[1]'),
      at('{ unix', 15, '/shop/d requires.listen.t'),
      at('rw', 15, "/shop/d requires.paths['/etc']"),
    ]);
    assert.match(errors[5]!.message, /\/shop\/c already listens there/);
  });

  it('starts providers before consumers', () => {
    const text = yaml(
      'name: shop',
      'children:',
      '  - name: web',
      '    command: [w]',
      '    requires: { services: [api.http] }',
      '  - name: api',
      '    command: [a]',
      '    requires: { services: [db.sql] }',
      '    provides: { api.http: { tcp: 8080, kind: http } }',
      '  - name: db',
      '    command: [d]',
      '    provides: { db.sql: { unix: db.sock } }',
    );
    const r = admitText(text);
    assert.ok(r.ok);
    assert.deepEqual(r.startOrder.get('/shop'), ['db', 'api', 'web']);
    const web = r.grants.get('/shop/web')!;
    assert.deepEqual(web.services, [
      {
        name: 'api.http',
        kind: 'http',
        from: '/shop/api',
        endpoint: { type: 'tcp', host: '127.0.0.1', port: 8080, kind: 'http' },
      },
    ]);
  });

  it('fails closed without memory limits unless the subtree allows advisory mode', () => {
    const noMemory: HostCapabilities = { ...HOST, memoryLimits: false };
    const text = (advisory: boolean) =>
      yaml(
        'name: shop',
        'children:',
        '  - name: sub',
        ...(advisory ? ['    policy: { allowAdvisory: true }'] : []),
        '    requires: { memory: 512Mi }',
        '    children:',
        '      - name: db',
        '        command: [d]',
        '        requires: { memory: 256Mi }',
      );
    const errors = rejected(text(false), noMemory);
    assert.equal(errors.length, 1);
    const e = errors[0]!;
    // The node is rejected first; its child has no grant to be checked against.
    assert.equal(e.path, '/shop/sub');
    assert.equal(e.field, 'requires.memory');
    assert.match(e.message, /cannot enforce it \(missing: memoryLimits\)/);
    assert.deepEqual({ line: e.line, col: e.col }, posOf(text(false), '512Mi'));

    const r = admitText(text(true), noMemory);
    if (!r.ok) assert.fail(r.errors.map(formatError).join('\n'));
    assert.deepEqual(r.grants.get('/shop/sub')!.advisory, ['memoryLimits']);
    assert.deepEqual(r.grants.get('/shop/sub/db')!.advisory, ['memoryLimits']);
    assert.equal(r.grants.get('/shop/sub/db')!.memory.reserved, 256 * 2 ** 20);
  });
});

describe('hostCapabilitiesFrom', () => {
  const limit = (enforced: boolean) => ({
    enforced,
    via: enforced ? ('cgroup v2' as const) : ('none' as const),
    detail: '',
  });
  const report = (files: Record<string, string>): [HostReport, (f: string) => string | null] => [
    {
      kernel: '6.1',
      arch: 'x64',
      uid: 0,
      root: true,
      cgroups: {
        layout: 'v2',
        driver: 'v2',
        reason: null,
        unified: {
          kind: 'v2',
          mountPoint: '/sys/fs/cgroup',
          controllers: ['cpu', 'memory', 'pids'],
          selfPath: '/x',
          selfDir: '/sys/fs/cgroup/x',
        },
        v1: [],
        limits: { cpu: limit(true), cpuWeight: limit(true), memory: limit(false), pids: limit(true) },
        accounting: { cpu: 'cgroup v2', memory: 'cgroup v2', pids: 'cgroup v2' },
        cgroupKill: true,
        cgroupEvents: true,
      },
      namespaces: {
        net: { available: true, detail: '' },
        mount: { available: false, detail: '' },
        pid: { available: true, detail: '' },
        user: { available: true, detail: '' },
      },
      unshare: { present: true, path: '/usr/bin/unshare', version: null },
      bwrap: { present: false, path: null, version: null },
      compiler: { present: true, path: '/usr/bin/cc', version: null },
    },
    (f) => files[f] ?? null,
  ];

  it('caps the totals by our own cgroup and copies the enforcement flags', () => {
    const [r, readFile] = report({
      '/sys/fs/cgroup/x/memory.max': '1073741824\n',
      '/sys/fs/cgroup/x/pids.max': '500\n',
      '/sys/fs/cgroup/x/cpu.max': '150000 100000\n',
    });
    const host = hostCapabilitiesFrom(
      r,
      { cpus: 4, memory: 8 * 2 ** 30, pidMax: 32768, readFile },
      {
        env: ['B', 'A'],
      },
    );
    assert.deepEqual(host, {
      cpu: 1.5,
      memory: 2 ** 30,
      pids: 500,
      cpuLimits: true,
      memoryLimits: false,
      pidsLimits: true,
      netNamespaces: true,
      mountNamespaces: false,
      env: ['A', 'B'],
    });
  });

  it('uses the machine totals when the cgroup is unlimited', () => {
    const [r, readFile] = report({
      '/sys/fs/cgroup/x/memory.max': 'max\n',
      '/sys/fs/cgroup/x/pids.max': 'max\n',
      '/sys/fs/cgroup/x/cpu.max': 'max 100000\n',
    });
    const host = hostCapabilitiesFrom(r, { cpus: 4, memory: 8 * 2 ** 30, pidMax: 32768, readFile });
    assert.equal(host.cpu, 4);
    assert.equal(host.memory, 8 * 2 ** 30);
    assert.equal(host.pids, 32768);
  });
});
