/**
 * A fast-check property through the real bin, on real processes: over random trees (strategy,
 * children) and random edits (command, env, cpu), the children `apply` restarts, seen by pid,
 * are exactly the ones `plan` announced; and with the daemon killed (-9) at a random moment of
 * the apply and `up` run again, still exactly those, none of them restarted twice (two pids at
 * most per child: the one before, the one the plan gave it). Few runs (each is a real tree, ~10 s):
 * CAPTREE_PROPERTY_RUNS=50 for a longer search.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isAlive } from '../../src/daemon/index.ts';
import { bin, node } from '../cli/helpers.ts';
import { changedPids, journalOf, liveTree, until } from './support.ts';

interface Child {
  cpu: number;
  command: string;
  mode: string;
}

function manifest(strategy: string, children: Child[]): string {
  return `
name: @NAME@
strategy: ${strategy}
intensity: 1
requires: { cpu: 1, memory: 512Mi, pids: 128 }
children:
${children
  .map(
    (c, i) => `  - name: c${i}
    command: [sleep, '${c.command}']
    env: { MODE: ${c.mode} }
    ready: { exec: [sleep, '0.15'] }
    requires: { cpu: ${c.cpu}, memory: 32Mi }
`,
  )
  .join('')}`;
}

const childArb = fc.record({
  cpu: fc.constantFrom(0.05, 0.1),
  command: fc.constantFrom('1000', '1001'),
  mode: fc.constantFrom('a', 'b'),
});
const caseArb = fc.record({
  strategy: fc.constantFrom('one_for_one', 'one_for_all', 'rest_for_one'),
  before: fc.array(childArb, { minLength: 2, maxLength: 4 }),
  edits: fc.array(childArb, { minLength: 4, maxLength: 4 }),
  kill: fc.option(fc.integer({ min: 0, max: 900 }), { nil: null }),
});

describe('apply restarts what plan announced (property, real processes)', () => {
  it('with or without a kill -9 of the daemon mid-apply', { timeout: 600_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ strategy, before, edits, kill }) => {
        const after = before.map((_, i) => edits[i] as Child);
        const t = await liveTree('prop', manifest(strategy, before));
        try {
          const root = `/${t.name}`;
          const pids0 = await t.pids();
          t.write(manifest(strategy, after));
          const plan = JSON.parse((await t.run(['plan', '--json'])).stdout) as {
            actions: { restarts: string[] }[];
          };
          const announced = [...new Set(plan.actions.flatMap((a) => a.restarts))]
            .filter((p) => p !== root)
            .sort();
          if (kill === null) {
            const r = await t.run(['apply', '--yes']);
            assert.equal(r.code, 0, r.stderr + r.stdout);
          } else {
            const applying = spawn(node, [bin, 'apply', '--yes'], { cwd: t.dir, stdio: 'ignore' });
            const exited = new Promise((resolve) => applying.on('exit', resolve));
            const daemon = t.daemonPid() as number;
            let done = false;
            void exited.then(() => {
              done = true;
            });
            await until(
              'the apply to begin',
              async () => done || journalOf(t.dir, 'reconcile_apply').length > 0,
            );
            // The kill lands at a random moment of the apply: a delay is the point here.
            await new Promise((r) => setTimeout(r, kill));
            process.kill(daemon, 'SIGKILL');
            await until('the daemon to die', async () => !isAlive(daemon));
            await exited;
            const up = await t.run(['up', '--detach']);
            assert.equal(up.code, 0, up.stderr);
          }
          const pids1 = await t.pids();
          assert.deepEqual(changedPids(pids0, pids1), announced);
          for (const path of Object.keys(pids0)) {
            const seen = new Set(
              journalOf(t.dir, 'started')
                .filter((r) => r.path === path)
                .map((r) => r.pid),
            );
            assert.ok(seen.size <= 2, `${path} ran as ${[...seen].join(', ')}`);
          }
        } finally {
          await t.down();
        }
      }),
      { numRuns: Number(process.env.CAPTREE_PROPERTY_RUNS ?? 3), endOnFailure: true },
    );
  });
});
