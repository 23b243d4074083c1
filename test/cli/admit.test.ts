/**
 * `captree admit` / `captree revoke` through the real bin, and a `kill -9` of the daemon in the
 * middle of a burst of admissions: after `up --detach` again, every acknowledged admission is
 * there and running (adopted, same pid), and the budget held equals what `ps --json` shows:
 * nothing granted but unacknowledged leaks.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAlive, readPid, statePaths } from '../../src/daemon/index.ts';
import { alive, captree, cgroupsNamed, type Entry, killAll, psJson } from './helpers.ts';

function daemonPidOf(dir: string): number {
  const pid = readPid(statePaths(join(dir, '.captree')));
  assert.ok(pid !== null, 'daemon.pid is written');
  return pid;
}

/**
 * Every process on the host whose CAPTREE_PATH is in the tree `/name`: the programs, whose pids
 * `ps --json` shows (a confined child's program runs below its PID namespace's init and the outer
 * process the launcher reports; those two carry the launcher's environment, not CAPTREE_PATH).
 */
function processesOfTree(name: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      for (const v of readFileSync(`/proc/${e}/environ`, 'utf8').split('\0'))
        if (v === `CAPTREE_PATH=/${name}` || v.startsWith(`CAPTREE_PATH=/${name}/`)) {
          if (!out.includes(Number(e))) out.push(Number(e));
        }
    } catch {
      // gone, or not readable
    }
  }
  return out;
}

/** A process we cannot subscribe to (not our child): bounded polling of /proc. */
async function gone(pids: number[], ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (alive(pids).length > 0) {
    if (Date.now() > deadline) throw new Error(`still alive: ${alive(pids).join(', ')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function post(
  socket: string,
  path: string,
  body: unknown,
): Promise<{ status: number; body: { path: string; error: { message: string } } }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath: socket,
        path,
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
          } catch (err) {
            reject(err);
          }
        });
        res.on('error', reject);
        res.on('aborted', () => reject(new Error('aborted')));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const pool = (name: string, e: Entry) => e.path.startsWith(`/${name}/pool/`);
/** Millicores, so sums are exact. */
const milli = (cores: number | null) => Math.round((cores ?? 0) * 1000);

describe('captree admit / revoke, and kill -9 mid-burst', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-admit-cli-'));
  const name = `ca${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const seen = new Set<number>();

  before(async () => {
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}
requires: { cpu: 1.5, memory: 512Mi, pids: 1024 }
children:
  - name: pool
    strategy: dynamic
    requires: { cpu: 1.0, memory: 256Mi, pids: 500 }
    admission: { maxGrant: { cpu: 0.5 }, template: { requires: { net: none } } }
    children: []
`,
    );
    writeFileSync(
      join(dir, 'job.yaml'),
      'name: job\ncommand: [sleep, infinity]\nrequires: { cpu: 0.1, memory: 16Mi }\n',
    );
    writeFileSync(
      join(dir, 'bad.yaml'),
      'name: bad\ncommand: [sleep, infinity]\nrequires:\n  cpu: 0.75\n  memroy: 16Mi\n',
    );
    const r = await captree(['up', '--detach'], dir);
    assert.equal(r.code, 0, r.stderr);
    seen.add(daemonPidOf(dir));
  });

  after(async () => {
    const daemon = readPid(statePaths(join(dir, '.captree')));
    if (daemon !== null && isAlive(daemon)) await captree(['down'], dir);
    killAll([...seen, ...processesOfTree(name)]);
    await gone([...seen]).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  test('admit prints the path and grant; a retry with the same id admits once; revoke returns the budget', async () => {
    const a = await captree(['admit', `/${name}/pool`, 'job.yaml', '--id', 'job-1'], dir);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, `admitted /${name}/pool/job (cpu 0.1, memory 16Mi, pids -; request job-1)\n`);
    const b = await captree(['admit', `/${name}/pool`, 'job.yaml', '--id', 'job-1', '--json'], dir);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(JSON.parse(b.stdout).path, `/${name}/pool/job`);
    const entries = (await psJson(dir)).filter((e) => pool(name, e));
    assert.deepEqual(
      entries.map((e) => [e.path, e.state, e.grant.cpu]),
      [[`/${name}/pool/job`, 'running', 0.1]],
    );
    seen.add(entries[0]!.pid!);
    const r = await captree(['revoke', `/${name}/pool/job`], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `revoked /${name}/pool/job (returned cpu 0.1, memory 16Mi, pids 0)\n`);
    assert.deepEqual(
      (await psJson(dir)).filter((e) => pool(name, e)),
      [],
    );
    const again = await captree(['revoke', `/${name}/pool/job`], dir);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no admitted child/);
  });

  test('a rejection prints every reason at its place in the spec file, and exits 1', async () => {
    const before1 = await psJson(dir);
    const r = await captree(['admit', `/${name}/pool`, 'bad.yaml'], dir);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      `bad.yaml:5:3: /${name}/pool/bad requires.memroy: unknown field; did you mean 'memory'?\n`,
    );
    writeFileSync(
      join(dir, 'bad.yaml'),
      'name: bad\ncommand: [sleep, infinity]\nrequires:\n  cpu: 0.75\n  secrets: [NOPE]\n',
    );
    const over = await captree(['admit', `/${name}/pool`, 'bad.yaml'], dir);
    assert.equal(over.code, 1);
    const lines = over.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 2, over.stderr);
    assert.match(
      lines[0]!,
      new RegExp(
        `^bad\\.yaml:4:8: /${name}/pool/bad requires\\.cpu: requires cpu 0\\.75, more than one request may reserve`,
      ),
    );
    assert.match(
      lines[1]!,
      new RegExp(`^bad\\.yaml:5:\\d+: /${name}/pool/bad requires\\.secrets\\[0\\]: requires secret NOPE`),
    );
    const usage = await captree(['admit', `/${name}/pool`], dir);
    assert.equal(usage.code, 2);
    const help = await captree(['revoke', '--help'], dir);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: captree revoke PATH/);
    const after1 = await psJson(dir);
    assert.deepEqual(
      after1.map((e) => [e.path, e.state, e.pid]),
      before1.map((e) => [e.path, e.state, e.pid]),
    );
  });

  test('kill -9 of the daemon mid-burst: every acknowledged admission survives, no budget leaks', async () => {
    const socket = statePaths(join(dir, '.captree')).socket;
    const daemon = daemonPidOf(dir);
    const acknowledged = new Set<string>();
    let killed = false;
    // 60 requests of 0.01 cores (room for 100), 6 at a time; the daemon dies after the 8th 201.
    let next = 0;
    const worker = async () => {
      while (next < 60) {
        const i = next++;
        try {
          const r = await post(socket, `/v1/nodes/${name}/pool/children`, {
            requestId: `burst-${i}`,
            spec: { name: `b${i}`, command: ['sleep', 'infinity'], requires: { cpu: 0.01 } },
          });
          if (r.status === 201) acknowledged.add(r.body.path);
          if (acknowledged.size >= 8 && !killed) {
            killed = true;
            process.kill(daemon, 'SIGKILL');
          }
        } catch {
          // The daemon died under this request: unacknowledged.
        }
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    assert.ok(killed, 'the daemon was killed mid-burst');
    await gone([daemon]);
    const left = processesOfTree(name);
    for (const p of left) seen.add(p);

    const up = await captree(['up', '--detach'], dir);
    assert.equal(up.code, 0, up.stderr);
    seen.add(daemonPidOf(dir));
    const entries = (await psJson(dir)).filter((e) => pool(name, e));
    for (const e of entries) if (e.pid) seen.add(e.pid);
    const present = new Set(entries.map((e) => e.path));
    for (const path of acknowledged) assert.ok(present.has(path), `acknowledged ${path} is back`);
    for (const e of entries) {
      assert.equal(e.state, 'running', `${e.path} runs`);
      assert.ok(e.pid !== null && isAlive(e.pid), `${e.path} has a live process`);
    }
    // Acknowledged children are adopted, not restarted: the processes from before the crash run
    // on. (A child granted durably but not started when the daemon died starts now.)
    for (const e of entries)
      if (acknowledged.has(e.path))
        assert.ok(left.includes(e.pid!), `${e.path} pid ${e.pid} is the one from before`);
    // Nothing else of the tree runs (children granted but never acknowledged were either
    // restored, and are listed, or swept).
    const running = processesOfTree(name).filter((p) => !entries.some((e) => e.pid === p));
    assert.deepEqual(running, []);

    // The budget held is exactly what ps shows: the remainder can be admitted to the last
    // millicore, and not one more.
    const held = entries.reduce((sum, e) => sum + milli(e.grant.cpu), 0);
    assert.equal(held, entries.length * 10);
    const rest = 1000 - held;
    let remaining = rest;
    for (let i = 0; remaining > 0; i++) {
      const cpu = Math.min(remaining, 500) / 1000;
      const r = await post(socket, `/v1/nodes/${name}/pool/children`, {
        requestId: `fill-${i}`,
        spec: { name: `fill${i}`, command: ['sleep', 'infinity'], requires: { cpu } },
      });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      remaining -= Math.round(cpu * 1000);
    }
    const over = await post(socket, `/v1/nodes/${name}/pool/children`, {
      requestId: 'one-more',
      spec: { name: 'onemore', command: ['sleep', 'infinity'], requires: { cpu: 0.001 } },
    });
    assert.equal(over.status, 422);
    assert.match(over.body.error.message, /has 0\.0 left of 1\.0/);
    // A retry of an acknowledged request after the crash answers the same, admitting nothing.
    const [first] = [...acknowledged];
    const i = Number(first!.split('/b').at(-1));
    const retry = await post(socket, `/v1/nodes/${name}/pool/children`, {
      requestId: `burst-${i}`,
      spec: { name: `b${i}`, command: ['sleep', 'infinity'], requires: { cpu: 0.01 } },
    });
    assert.equal(retry.status, 201);
    assert.equal(retry.body.path, first);

    for (const e of await psJson(dir)) if (e.pid) seen.add(e.pid);
    const down = await captree(['down'], dir);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(alive([...seen]), []);
    assert.deepEqual(processesOfTree(name), []);
    assert.deepEqual(cgroupsNamed(name), []);
  });
});
