/**
 * Admission latency: `POST /v1/nodes/{node}/children` → `201` (the child is running: a trivial
 * `sleep infinity` with no readiness check) for N sequential admissions into a node of an
 * in-process daemon on the real runtime (launcher, cgroups, state.json fsync, journal), each
 * revoked after (not timed). Printed beside the spawn-only cost of the same process through the
 * launcher, the physical floor, as a ratio.
 *
 *   node_modules/.bin/node bench/admit.ts [N=1000]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from '../src/daemon/index.ts';
import { loadManifest } from '../src/manifest/index.ts';
import { Launcher } from '../src/runtime/launcher/client.ts';

const n = Number(process.argv[2] ?? 1000);
const dir = mkdtempSync(join(tmpdir(), 'captree-bench-admit-'));
const name = `bench${process.pid}`;
writeFileSync(
  join(dir, 'captree.yaml'),
  `name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 1024 }
children:
  - name: pool
    strategy: dynamic
    requires: { cpu: 0.5, memory: 256Mi, pids: 256 }
    admission: {}
    children: []
`,
);

function call(socket: string, method: string, path: string, body?: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, path, method, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

const parsed = await loadManifest(join(dir, 'captree.yaml'));
if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
const daemon = await startDaemon({ manifest: parsed.tree, stateDir: join(dir, '.captree') });
await daemon.started;
const socket = daemon.paths.socket;
const admitOnce = async (i: number): Promise<number> => {
  const t0 = performance.now();
  const status = await call(socket, 'POST', `/v1/nodes/${name}/pool/children`, {
    requestId: `bench-${i}`,
    spec: { name: `c${i}`, command: ['sleep', 'infinity'], requires: { cpu: 0.01, memory: '1Mi' } },
  });
  const ms = performance.now() - t0;
  if (status !== 201) throw new Error(`admission ${i} answered ${status}`);
  const revoked = await call(socket, 'DELETE', `/v1/children/${name}/pool/c${i}`);
  if (revoked !== 200) throw new Error(`revoke ${i} answered ${revoked}`);
  return ms;
};
for (let i = 0; i < 20; i++) await admitOnce(-1 - i); // warm up
const admitMs: number[] = [];
for (let i = 0; i < n; i++) admitMs.push(await admitOnce(i));
await daemon.stop();
await daemon.finished;

const launcher = await Launcher.start();
const env = { PATH: '/usr/bin:/bin' };
const spawnOnce = async (): Promise<number> => {
  const t0 = performance.now();
  const child = await launcher.spawn({ argv: ['sleep', 'infinity'], env });
  const ms = performance.now() - t0;
  await launcher.kill(child.pid, 'SIGKILL');
  await child.exited;
  return ms;
};
for (let i = 0; i < 20; i++) await spawnOnce();
const spawnMs: number[] = [];
for (let i = 0; i < n; i++) spawnMs.push(await spawnOnce());
await launcher.close();
rmSync(dir, { recursive: true, force: true });

admitMs.sort((a, b) => a - b);
spawnMs.sort((a, b) => a - b);
const row = (label: string, xs: number[]) =>
  `${label.padEnd(44)}${pct(xs, 50).toFixed(2).padStart(9)}${pct(xs, 99).toFixed(2).padStart(9)}`;
console.log(`node ${process.version}, ${n} sequential admissions of sleep infinity (each revoked after)`);
console.log(`${'case'.padEnd(44)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}`);
console.log(row('admission: POST → 201 (child running)', admitMs));
console.log(row('spawn only: launcher spawn → pid', spawnMs));
console.log(
  `ratio admission/spawn: p50 ${(pct(admitMs, 50) / pct(spawnMs, 50)).toFixed(1)}x, p99 ${(pct(admitMs, 99) / pct(spawnMs, 99)).toFixed(1)}x`,
);
