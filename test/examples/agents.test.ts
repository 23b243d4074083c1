/**
 * examples/agents end to end, run as captree runs it (a `supervisor: true` child with its grant,
 * its parent channel and its own cgroup subtree): the story its README tells, asserted from the
 * events the user sees and from its status endpoint on loopback.
 * - the stuck agent is ended by its step limit and the replacement resumes from step 2;
 * - the scraper crashes on unexpected HTML and is restarted alone;
 * - the primary provider's outage makes the crew give up, and it comes back on the backup.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildTree, type RunningTree } from '../../src/daemon/build-tree.ts';
import { type ChannelEvent, Channels } from '../../src/daemon/channel.ts';
import { parseManifest } from '../../src/manifest/index.ts';
import { skipOrFail } from '../support/host.ts';

const example = join(import.meta.dirname, '..', '..', 'examples', 'agents', 'supervisor.ts');
const dir = mkdtempSync(join(tmpdir(), 'captree-agents-'));

interface Progress {
  id: string;
  steps: number;
  step: number;
  done: boolean;
  log: string[];
  notes: string[];
}
interface Status {
  provider: string;
  tasks: Progress[];
  tree: { path: string; kind: string; state: string; restarts: number; pid: number | null }[];
}

describe('examples/agents: the AI-agent tree under captree', () => {
  let tree: RunningTree | undefined;
  let channels: Channels | undefined;
  const lines: string[] = [];
  let status: Status | undefined;
  const name = `ag${process.pid}`;
  const sup = `/${name}/sup`;

  before(async (t) => {
    if (process.getuid?.() !== 0) return skipOrFail(t as never, 'needs root for cgroups');
    const parsed = parseManifest(
      `
name: ${name}
requires: { cpu: 1.0, memory: 1Gi, pids: 256 }
children:
  - name: sup
    command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(example)}]
    supervisor: true
    shutdown: 10s
    inheritEnv: [CAPTREE_CACHE_DIR, XDG_CACHE_HOME]
    requires: { cpu: 0.8, memory: 768Mi, pids: 128 }
`,
      join(dir, 'captree.yaml'),
      { baseDir: dir },
    );
    assert.ok(parsed.ok, parsed.ok ? '' : JSON.stringify(parsed.errors));
    let done!: () => void;
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    tree = await buildTree(parsed.tree, { stateDir: join(dir, 'state'), source: parsed.source });
    channels = await Channels.open(tree, {
      onEvent: (e: ChannelEvent) => {
        if (e.type !== 'channel' || e.path !== sup || e.from !== 'child') return;
        const m = e.message as { type?: string; text?: string };
        if (m.type !== 'status') return;
        lines.push(String(m.text));
        if (String(m.text).startsWith('all 3 tasks done')) done();
      },
    });
    await tree.supervisor.start();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      finished,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the story did not end in 60 s:\n${lines.join('\n')}`)),
          60_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const url = lines.find((l) => l.startsWith('comms: '))!.slice('comms: '.length);
    status = (await (await fetch(url)).json()) as Status;
  });

  after(async () => {
    await channels?.close();
    if (tree) {
      await tree.supervisor.stop().catch(() => {});
      await tree.runtime.close();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const entry = (path: string) => status!.tree.find((e) => e.path === `${sup}${path}`);
  const task = (id: string) => status!.tasks.find((t) => t.id === id)!;

  it('ends the stuck agent at its step limit, and its replacement resumes from step 2', (t) => {
    if (!status) return skipOrFail(t, 'needs root for cgroups');
    assert.ok(
      lines.includes(`${sup}/tasks/crew/stuck exited: crashed: step_limit: more than 20 steps`),
      lines.join('\n'),
    );
    const stuck = task('stuck');
    assert.equal(stuck.log[0], 'start at step 0 with acme');
    // With acme, unless the outage made crew give up first (then the loop recurs once on backup).
    assert.ok(
      stuck.log.some((l) => /^start at step 2 with \w+ after step_limit$/.test(l)),
      stuck.log.join('\n'),
    );
    assert.equal(stuck.step, 5);
    assert.equal(stuck.done, true);
  });

  it('restarts the scraper alone when unexpected HTML crashes it', (t) => {
    if (!status) return skipOrFail(t, 'needs root for cgroups');
    assert.ok(
      lines.some((l) => l.startsWith(`${sup}/tools/scraper exited: exit code 1`)),
      lines.join('\n'),
    );
    assert.ok(entry('/tools/scraper')!.restarts >= 1);
    assert.ok(entry('/tools/scraper')!.pid !== null);
    // Nothing else in tools, models or comms went down with it.
    for (const other of ['/models', '/models/acme', '/models/backup', '/tools', '/comms', '/comms/http']) {
      assert.equal(entry(other)?.restarts, 0, other);
      assert.ok(!lines.some((l) => l.startsWith(`${sup}${other} exited`)), other);
    }
    // The research agent skipped the page it could not read and went on.
    assert.ok(
      task('research').notes.some((n) => n.startsWith('promo: unreadable')),
      task('research').notes.join('\n'),
    );
    assert.equal(task('research').done, true);
  });

  it('fails the crew over to the backup provider when the primary fails for every agent', (t) => {
    if (!status) return skipOrFail(t, 'needs root for cgroups');
    assert.ok(
      lines.some((l) => l.startsWith(`${sup}/tasks/crew escalated: gave up`)),
      lines.join('\n'),
    );
    assert.ok(lines.includes(`${sup}/tasks/crew: provider backup replaces acme for every agent`));
    assert.equal(status.provider, 'backup');
    assert.ok(entry('/tasks/crew')!.restarts >= 1);
    for (const t of status.tasks) {
      assert.equal(t.done, true, t.id);
      assert.equal(t.step, t.steps, t.id);
    }
    // The agents still working at the outage resumed on the backup from their checkpoints.
    const resumedLater = status.tasks.filter((t) =>
      t.log.some((l) => /^start at step [1-9].* with backup/.test(l)),
    );
    assert.ok(resumedLater.length >= 1, JSON.stringify(status.tasks.map((t) => t.log)));
    t.diagnostic(lines.join('\n'));
  });
});
