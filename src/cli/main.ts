#!/usr/bin/env node
/**
 * The `captree` command: dispatches to one module per command under `commands/`. Exit codes:
 * 0 ok, 1 failure (one line on stderr saying what to do), 2 usage error.
 */
import { realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { ApiResponseError } from '../daemon/client.ts';
import { StateDirBusyError } from '../daemon/state.ts';
import { CliError, type Command, helpText, type Io, parseCommand, UsageError } from './cli.ts';
import { didYouMean } from './suggest.ts';

/**
 * Each command's module, loaded only when it runs (or for help): `ps` or `down` need not load
 * the daemon, runtime and manifest layers that `up` brings with it. In the order of `--help`.
 */
const loaders = new Map<string, () => Promise<Command>>([
  ['up', async () => (await import('./commands/up.ts')).up],
  ['down', async () => (await import('./commands/down.ts')).down],
  ['ps', async () => (await import('./commands/ps.ts')).ps],
  ['logs', async () => (await import('./commands/logs.ts')).logs],
  ['start', async () => (await import('./commands/start.ts')).start],
  ['stop', async () => (await import('./commands/stop.ts')).stop],
  ['restart', async () => (await import('./commands/restart.ts')).restart],
  ['signal', async () => (await import('./commands/signal.ts')).signal],
  ['reload', async () => (await import('./commands/reload.ts')).reload],
  ['events', async () => (await import('./commands/events.ts')).events],
  ['top', async () => (await import('./commands/top.ts')).top],
  ['plan', async () => (await import('./commands/plan.ts')).plan],
  ['apply', async () => (await import('./commands/apply.ts')).apply],
  ['status', async () => (await import('./commands/status.ts')).status],
  ['reconcile', async () => (await import('./commands/reconcile.ts')).reconcile],
  ['hold', async () => (await import('./commands/hold.ts')).hold],
  ['release', async () => (await import('./commands/hold.ts')).release],
  ['check', async () => (await import('./commands/check.ts')).check],
  ['doctor', async () => (await import('./commands/doctor.ts')).doctor],
  ['admit', async () => (await import('./commands/admit.ts')).admit],
  ['revoke', async () => (await import('./commands/revoke.ts')).revoke],
  ['shell', async () => (await import('./commands/shell.ts')).shell],
  ['init', async () => (await import('./commands/init.ts')).init],
  ['unit', async () => (await import('./commands/unit.ts')).unit],
  [
    'completion',
    async () => {
      const m = await import('./commands/completion.ts');
      m.completionTable.commands = () => Promise.all([...loaders.values()].map((load) => load()));
      return m.completion;
    },
  ],
]);

async function overview(): Promise<string> {
  const commands = await Promise.all([...loaders.values()].map((load) => load()));
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'captree: a capability-based supervision tree for Linux',
    '',
    'Usage: captree COMMAND [OPTIONS]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'captree COMMAND --help' for a command's options and an example.",
    'Commands other than up, check and doctor find the running tree in ./.captree (or --state DIR).',
    '',
  ].join('\n');
}

export async function main(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const load = name === 'help' && rest[0] !== undefined ? loaders.get(rest[0]) : undefined;
    io.stdout.write(load ? helpText(await load()) : await overview());
    return 0;
  }
  if (name === '--version' || name === '-V') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    io.stdout.write(`captree ${pkg.version}\n`);
    return 0;
  }
  const load = loaders.get(name);
  if (!load) {
    const hint = didYouMean(name, [...loaders.keys()]);
    io.stderr.write(`captree: unknown command '${name}'${hint} (see: captree --help)\n`);
    return 2;
  }
  const cmd = await load();
  try {
    const parsed = parseCommand(cmd, rest);
    if (parsed.help) {
      io.stdout.write(helpText(cmd));
      return 0;
    }
    return await cmd.run(parsed, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`captree ${cmd.name}: ${err.message} (see: captree ${cmd.name} --help)\n`);
      return 2;
    }
    if (err instanceof CliError) {
      io.stderr.write(`captree: ${err.message}\n`);
      return err.exitCode;
    }
    if (err instanceof StateDirBusyError || err instanceof ApiResponseError) {
      io.stderr.write(`captree: ${err.message}\n`);
      return 1;
    }
    const e = err as NodeJS.ErrnoException;
    io.stderr.write(`captree: ${cmd.name} failed: ${e?.message ?? String(err)}\n`);
    if (process.env.CAPTREE_DEBUG && e?.stack) io.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

/** Runs `captree` with this process's arguments and streams, and sets the exit code. */
export async function cli(): Promise<void> {
  const code = await main(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
  });
  // `up` may leave handles (a closed launcher's pipes, a stdin in raw mode) that would keep the
  // process alive; every other command has finished its output synchronously by now.
  if (process.argv[2] === 'up') process.exit(code);
  process.exitCode = code;
}

/** `import.meta.main` is Node 24's; on an older Node, compare with the script it was given. */
function isEntry(): boolean {
  if (typeof import.meta.main === 'boolean') return import.meta.main;
  try {
    return realpathSync(process.argv[1] ?? '') === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntry()) {
  // Below the supported Node, the plain-JS bin shim finds the Node.js 24 `npm ci` brought, or
  // says what is needed: `node dist/cli/main.js` on the system Node works like the bin.
  const shim = createRequire(import.meta.url)('../../bin/captree.cjs') as {
    run(args: string[]): boolean;
    REQUIRED: number;
  };
  if (Number(process.versions.node.split('.')[0]) < shim.REQUIRED) shim.run(process.argv.slice(2));
  else await cli();
}
