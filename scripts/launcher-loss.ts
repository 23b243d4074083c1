/**
 * What a launcher loss costs: a tree of N `sleep` children (half of them confined: net none) is
 * started with the real bin, its launcher is killed (-9) from here, and the time from the kill to
 * the last child `started` again is read from the journal (wall-clock stamps, ms). Repeated
 * `--rounds` times on the same tree; the tree is taken down at the end.
 *
 *   node scripts/launcher-loss.ts [--children N] [--rounds R]
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const repo = resolve(import.meta.dirname, '..');
const bin = join(repo, 'src/cli/main.ts');

const { values } = parseArgs({
  options: { children: { type: 'string', default: '20' }, rounds: { type: 'string', default: '5' } },
});
const n = Number(values.children);
const rounds = Number(values.rounds);

function captree(args: string[], cwd: string): Promise<string> {
  return new Promise((res, rej) =>
    execFile(process.execPath, [bin, ...args], { cwd, maxBuffer: 64 << 20 }, (err, out, errOut) =>
      err ? rej(new Error(`captree ${args.join(' ')}: ${errOut || err.message}`)) : res(out),
    ),
  );
}

/** The daemon's child named captree-launche(r). */
export function launcherOf(daemon: number): number | undefined {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === daemon && comm.startsWith('captree-launche')) return Number(name);
    } catch {
      // Gone meanwhile.
    }
  }
  return undefined;
}

interface Rec {
  type: string;
  path: string;
  ts: number;
  seq: number;
  ms?: number;
}

function journal(dir: string): Rec[] {
  return readFileSync(join(dir, '.captree', 'journal.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Rec);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), 'captree-llbench-'));
const name = `llb${process.pid}`;
const children = Array.from({ length: n }, (_, i) =>
  i % 2 === 0
    ? `  - name: c${i}\n    command: [sleep, infinity]\n`
    : `  - name: c${i}\n    command: [sleep, infinity]\n    requires: { net: none }\n`,
).join('');
writeFileSync(join(dir, 'captree.yaml'), `name: ${name}\nintensity: 1\nchildren:\n${children}`);
const results: { toLauncher: number; toAll: number }[] = [];
try {
  await captree(['up', '--detach'], dir);
  const daemon = Number(readFileSync(join(dir, '.captree', 'daemon.pid'), 'utf8'));
  for (let round = 0; round < rounds; round++) {
    const launcher = launcherOf(daemon);
    if (launcher === undefined) throw new Error('no launcher found');
    const from = journal(dir).at(-1)?.seq ?? 0;
    const killedAt = Date.now();
    process.kill(launcher, 'SIGKILL');
    // Done once every child has a `started` record after the loss.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const recs = journal(dir).filter((r) => r.seq > from);
      const started = new Map(recs.filter((r) => r.type === 'started').map((r) => [r.path, r.ts]));
      const restarted = recs.find((r) => r.type === 'launcher_restarted');
      if (started.size >= n && restarted) {
        results.push({
          toLauncher: restarted.ts - killedAt,
          toAll: Math.max(...started.values()) - killedAt,
        });
        break;
      }
      if (Date.now() > deadline) throw new Error(`round ${round}: only ${started.size}/${n} restarted`);
      await sleep(20);
    }
    const state = JSON.parse(await captree(['ps', '--json'], dir)) as { path: string; state: string }[];
    const root = state.find((e) => e.path === `/${name}`);
    if (root?.state !== 'ready') throw new Error(`the root is ${root?.state}`);
  }
} finally {
  await captree(['down'], dir).catch((err) => console.error(err.message));
  rmSync(dir, { recursive: true, force: true });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(
  `${n} children, ${rounds} launcher kills: new launcher after ${median(results.map((r) => r.toLauncher))} ms, ` +
    `every child started again after ${median(results.map((r) => r.toAll))} ms (medians; ` +
    `all: ${results.map((r) => r.toAll).join(', ')} ms)`,
);
