/**
 * An admission-token holder gets no more than the node's template grants: every field that
 * carries authority is bounded by it (user, group, inheritEnv, env, listen, paths, secrets,
 * services, net, supervisor, priority). Each attack is a request a token holder can send; each
 * is checked from the host side: the answer names the field, and nothing changed (caps, ps, no
 * socket file created, no cgroup directory left). A refused, failed or revoked admission leaves
 * no cgroup behind, and the 201 says exactly what was granted.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { snapshot as capsSnapshot } from '../../src/caps/index.ts';
import type { RunningTree } from '../../src/daemon/build-tree.ts';
import type { Daemon, PsEntry } from '../../src/daemon/index.ts';
import { cgroupsNamed } from '../cli/helpers.ts';
import { apiCall, daemonOn } from '../support/daemon.ts';

interface Reason {
  path: string;
  field: string;
  message: string;
}

describe('admission is bounded by the node template (token holder as attacker)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-bounds-'));
  const name = `bnd${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const token = 'bounds-token-secret';
  const hostSock = join(dir, 'planted.sock');
  let daemon: Daemon;

  const call = (method: string, path: string, body?: unknown) =>
    apiCall(daemon.paths.socket, method, path, body, { authorization: `Bearer ${token}` });
  const post = (node: string, requestId: string, spec: unknown) =>
    call('POST', `/v1/nodes/${name}/${node}/children`, { requestId, spec });
  const ps = async (): Promise<PsEntry[]> => (await call('GET', '/v1/tree')).body as PsEntry[];
  const caps = () => (daemon.tree as unknown as RunningTree).caps;
  const state = async () => ({
    ps: (await ps()).map((e) => [e.path, e.state, e.pid]),
    caps: JSON.stringify(capsSnapshot(caps())),
  });
  /** The cgroup directories of a tree path (relative to the root), in every hierarchy. */
  const cgroupsOf = (rel: string) =>
    cgroupsNamed(name)
      .filter((d) => /\/captree-[^/]+$/.test(d))
      .map((root) => join(root, rel))
      .filter((d) => existsSync(d));
  const sleeper = (n: string, extra: Record<string, unknown> = {}) => ({
    name: n,
    command: ['sleep', 'infinity'],
    ...extra,
  });

  before(async () => {
    writeFileSync(join(dir, 'lab.token'), `${token}\n`);
    mkdirSync(join(dir, 'secrets'));
    writeFileSync(join(dir, 'secrets', 'A'), 'secret-a\n');
    writeFileSync(join(dir, 'secrets', 'B'), 'secret-b\n');
    mkdirSync(join(dir, 'data', 'ro'), { recursive: true });
    mkdirSync(join(dir, 'data', 'rw'), { recursive: true });
    daemon = await daemonOn(
      dir,
      `name: ${name}
requires: { cpu: 1.0, memory: 256Mi, pids: 512 }
children:
  - name: db
    command: [sleep, infinity]
    provides: { db.kv: { tcp: 127.0.0.1:1 } }
  - name: cache
    command: [sleep, infinity]
    provides: { cache.kv: { tcp: 127.0.0.1:2 } }
  - name: lab
    strategy: dynamic
    requires: { cpu: 0.4, pids: 100, secrets: [A, B], services: [db.kv, cache.kv] }
    admission:
      tokens: [{ name: lab, file: lab.token }]
      template:
        user: nobody
        env: { MODE: sandbox }
        requires:
          net: none
          secrets: [A]
          services: [db.kv]
          paths: [{ path: data/ro, mode: ro }, { path: data/rw, mode: rw }]
          listen: { sock: { unix: lab.sock } }
    children: []
  - name: open
    strategy: dynamic
    requires: { cpu: 0.2, pids: 50, net: none }
    admission: { tokens: [{ name: lab, file: lab.token }] }
    children: []
`,
    );
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
  });

  test('every field beyond the template is refused with the field named, and nothing changes', async () => {
    const start = await state();
    const cases: [string, string, Record<string, unknown>, string][] = [
      ['user root over the template’s nobody', 'lab', sleeper('u', { user: 'root' }), 'user'],
      ['a group the template does not grant', 'lab', sleeper('g', { group: 'root' }), 'group'],
      ['the daemon’s whole environment', 'lab', sleeper('ie', { inheritEnv: true }), 'inheritEnv'],
      ['a daemon variable by name', 'lab', sleeper('ie2', { inheritEnv: ['SSH_AUTH_SOCK'] }), 'inheritEnv'],
      ['a variable the template fixes', 'lab', sleeper('e', { env: { MODE: 'prod' } }), 'env.MODE'],
      ['a second secret', 'lab', sleeper('s', { requires: { secrets: ['A', 'B'] } }), 'requires.secrets'],
      [
        'another service',
        'lab',
        sleeper('sv', { requires: { services: ['cache.kv'] } }),
        'requires.services',
      ],
      ['the host network', 'lab', sleeper('n', { requires: { net: 'host' } }), 'requires.net'],
      [
        'rw where the template says ro',
        'lab',
        sleeper('p', { requires: { paths: [{ path: 'data/ro', mode: 'rw' }] } }),
        'requires.paths',
      ],
      ['the whole view back', 'lab', sleeper('p2', { requires: { paths: [] } }), 'requires.paths'],
      [
        'a unix socket planted on the host',
        'lab',
        sleeper('l', { requires: { listen: { sock: { unix: hostSock } } } }),
        'requires.listen.sock',
      ],
      [
        'a unix socket under a net: none node with no template',
        'open',
        sleeper('l2', { requires: { listen: { evil: { unix: hostSock } } } }),
        'requires.listen.evil',
      ],
      ['a supervisor channel', 'open', sleeper('sup', { supervisor: true }), 'supervisor'],
      ['a higher priority', 'open', sleeper('pr', { priority: 'high' }), 'priority'],
      ['a user on an open node', 'open', sleeper('u2', { user: 'root' }), 'user'],
      [
        'a Linux capability the template does not grant',
        'lab',
        sleeper('cap', { requires: { privileges: ['sys_admin'] } }),
        'requires.privileges',
      ],
      [
        'uid 0 on an open node',
        'open',
        sleeper('root', { requires: { privileges: ['root'] } }),
        'requires.privileges',
      ],
    ];
    for (const [what, node, spec, field] of cases) {
      const r = await post(node, `attack-${spec.name}`, spec);
      assert.equal(r.status, 422, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'exceeds_template', what);
      const fields = (r.body.reasons as Reason[]).map((x) => x.field);
      assert.ok(fields.includes(field), `${what}: ${JSON.stringify(r.body.reasons)}`);
      const reason = (r.body.reasons as Reason[]).find((x) => x.field === field);
      assert.match(reason?.message ?? '', /template of \/.* (fixes|grants no)/, what);
      assert.deepEqual(cgroupsOf(`${node}/${spec.name}`), [], `${what}: no cgroup left`);
    }
    assert.equal(existsSync(hostSock), false, 'no socket was created on the host');
    assert.deepEqual(await state(), start);
  });

  test('a request that narrows the template is admitted, and the 201 says exactly what it got', async () => {
    const r = await post(
      'lab',
      'narrow-1',
      sleeper('ok', {
        cwd: 'data/rw',
        env: { MODE: 'sandbox', EXTRA: '1' },
        requires: { secrets: [], paths: [{ path: 'data/rw', mode: 'ro' }] },
      }),
    );
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.deepEqual(r.body.identity, {
      user: 'nobody',
      group: null,
      inheritEnv: [],
      env: ['MODE', 'EXTRA'],
      supervisor: false,
      priority: 'normal',
    });
    assert.deepEqual(r.body.capabilities.net, [], JSON.stringify(r.body.capabilities));
    assert.deepEqual(r.body.capabilities.secrets, []);
    // The unix socket the template grants is made for the child, and reported.
    assert.deepEqual(r.body.capabilities.listen, { sock: `unix:${join(dir, 'lab.sock')}` });
    const entry = (await ps()).find((e) => e.path === `/${name}/lab/ok`);
    assert.ok(entry?.pid, 'the admitted child runs');
    assert.ok(cgroupsOf('lab/ok').length > 0, 'it has its cgroups while it runs');
    const gone = await call('DELETE', `/v1/children/${name}/lab/ok`);
    assert.equal(gone.status, 200, JSON.stringify(gone.body));
    assert.deepEqual(cgroupsOf('lab/ok'), [], 'a revoked child leaves no cgroup directory');
  });

  test('a failed start and a revocation leave no cgroup; the same name is admitted afresh', async () => {
    const failed = await post('open', 'fail-1', { name: 'nocmd', command: ['/nonexistent/binary'] });
    assert.equal(failed.status, 422, JSON.stringify(failed.body));
    assert.deepEqual(cgroupsOf('open/nocmd'), [], 'a failed start leaves no cgroup');
    for (const round of [1, 2]) {
      const r = await post('open', `again-${round}`, sleeper('again'));
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.ok(cgroupsOf('open/again').length > 0, 'it has its cgroups while it runs');
      const gone = await call('DELETE', `/v1/children/${name}/open/again`);
      assert.equal(gone.status, 200);
      assert.deepEqual(cgroupsOf('open/again'), [], `round ${round}: removed with the revocation`);
    }
  });
});
