/**
 * A supervisor written as application code, run by captree as a child (`supervisor: true`):
 * "start the database, wait until it answers, then the API", with OTP semantics inside its own
 * grant. Run with `captree up examples/app-supervisor/captree.yaml`.
 *
 * - `fromEnvironment()` finds its path, grant, delegated cgroup subtree and parent channel.
 * - `runtime()` starts its own launcher and creates its children's cgroups under its subtree, so
 *   the kernel keeps them inside its grant whatever they (or it) write into cgroup files.
 * - `rest_for_one`: if the database restarts, the API (which depends on it) restarts after it.
 * - Every event goes to the parent as a `status` line (`captree events` shows them); `ready`
 *   once both are up; `shutdown` from the parent (or SIGTERM) stops both in reverse order.
 */
import { join } from 'node:path';
import { fromEnvironment, processChild, Supervisor } from '../../src/index.ts';

const me = fromEnvironment();
const runtime = await me.runtime();
const here = import.meta.dirname;
const env = { DB_SOCKET: join(runtime.logsDir, 'db.sock') };
const ready = { type: 'notify', fd: 3, timeout: 10_000 } as const;
// The database gets at most half of this supervisor's cpu; the kernel would refuse more than all of it.
const dbLimits = me.grant.cpu === null ? undefined : { cpu: Math.max(0.01, me.grant.cpu / 2) };

const sup = new Supervisor(
  {
    name: 'app',
    strategy: 'rest_for_one',
    intensity: 3,
    period: 10_000,
    children: [
      processChild(runtime, {
        id: 'db',
        command: [process.execPath, join(here, 'db.js')],
        env,
        ready,
        limits: dbLimits,
      }),
      processChild(runtime, { id: 'api', command: [process.execPath, join(here, 'api.js')], env, ready }),
    ],
  },
  { path: me.path },
);
sup.subscribe((e) => {
  if (e.type === 'started' || e.type === 'ready' || e.type === 'exited' || e.type === 'restarting')
    me.channel.status(`${e.path} ${e.type}${e.type === 'started' && e.pid !== null ? ` pid ${e.pid}` : ''}`);
});

let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await sup.stop();
  await runtime.close();
  me.channel.close();
  process.exit(code);
};
me.channel.on('shutdown', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
// Given up (restart intensity exceeded): exit non-zero, and the parent applies its own strategy.
void sup.whenStopped().then(() => stop(1));

await sup.start();
me.channel.ready();
