/** `captree down`: stops the running tree in order and waits until the daemon is gone. */
import { setTimeout as delay } from 'node:timers/promises';
import { eachLine, NotRunningError } from '../../daemon/client.ts';
import { isAlive, liveOwner } from '../../daemon/state.ts';
import {
  CliError,
  type Command,
  connect,
  display,
  findState,
  jsonOption,
  notRunning,
  stateOption,
} from '../cli.ts';

/** Waits for a process to disappear; after `down` answered, only its exit is left, so this is short. */
async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await delay(20);
  }
  return true;
}

export const down: Command = {
  name: 'down',
  summary: 'stop the running tree in order and wait until every process is gone',
  usage: 'captree down [--json] [--state DIR]',
  help: `
Asks the daemon to stop the tree: children stop in reverse start order (consumers before
providers), each per its shutdown policy; then cgroups are removed and the launcher stops.
Returns once the daemon process has exited. Works for a tree started with 'captree up' in
another terminal as well as with 'captree up --detach'.

Example:
  captree down`,
  options: { ...jsonOption, ...stateOption },
  positionals: [0, 0],
  async run({ values }, io) {
    let connection: Awaited<ReturnType<typeof connect>>;
    try {
      connection = await connect(values, io);
    } catch (err) {
      // Nothing to stop is what `down` wants: say so and succeed, as `docker compose down` does.
      const paths = findState(values, io);
      if (err instanceof CliError && liveOwner(paths) === null && !err.message.includes('running below')) {
        if (values.json) io.stdout.write(`${JSON.stringify({ stopped: false, running: false })}\n`);
        else io.stdout.write(`captree: nothing is running in ${display(paths.dir, io.cwd)}\n`);
        return 0;
      }
      throw err;
    }
    const { client, paths } = connection;
    // Local only (no --url): connect read the daemon's info.
    const info = connection.info!;
    let res: Awaited<ReturnType<typeof client.open>>;
    try {
      res = await client.open('/v1/down', { method: 'POST' });
    } catch (err) {
      if (err instanceof NotRunningError) throw notRunning(paths, io);
      throw err;
    }
    let stopped = false;
    // The daemon answers at once ("stopping") and ends the response once every process is gone.
    await eachLine(res, (line) => {
      if (line.includes('"stopped"')) stopped = true;
    });
    const gone = await waitGone(info.pid, 10_000);
    if (!gone) {
      throw new CliError(
        `daemon pid ${info.pid} is still running after stopping the tree (see ${display(paths.log, io.cwd)}; kill it with: kill ${info.pid})`,
      );
    }
    if (!stopped) {
      throw new CliError(
        `daemon pid ${info.pid} exited before confirming the stop; check for leftovers with: captree doctor, and ${display(paths.log, io.cwd)}`,
      );
    }
    if (values.json)
      io.stdout.write(`${JSON.stringify({ stopped: true, name: info.name, pid: info.pid })}\n`);
    else io.stdout.write(`captree: /${info.name} stopped (daemon pid ${info.pid} exited)\n`);
    return 0;
  },
};
