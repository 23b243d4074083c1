#!/usr/bin/env node
/**
 * The `captree` command: dispatches to one module per command under `commands/`. Exit codes:
 * 0 ok, 1 failure (one line on stderr saying what to do), 2 usage error.
 */
import { ApiResponseError, StateDirBusyError } from '../daemon/index.ts';
import { CliError, type Command, helpText, type Io, parseCommand, UsageError } from './cli.ts';
import { admit } from './commands/admit.ts';
import { check } from './commands/check.ts';
import { doctor } from './commands/doctor.ts';
import { down } from './commands/down.ts';
import { events } from './commands/events.ts';
import { logs } from './commands/logs.ts';
import { ps } from './commands/ps.ts';
import { restart } from './commands/restart.ts';
import { revoke } from './commands/revoke.ts';
import { shell } from './commands/shell.ts';
import { start } from './commands/start.ts';
import { stop } from './commands/stop.ts';
import { up } from './commands/up.ts';

export const commands: readonly Command[] = [
  up,
  down,
  ps,
  logs,
  start,
  stop,
  restart,
  events,
  check,
  doctor,
  admit,
  revoke,
  shell,
];

function overview(): string {
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
    const topic = name === 'help' ? commands.find((c) => c.name === rest[0]) : undefined;
    io.stdout.write(topic ? helpText(topic) : overview());
    return 0;
  }
  if (name === '--version' || name === '-V') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    io.stdout.write(`captree ${pkg.version}\n`);
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    io.stderr.write(`captree: unknown command '${name}' (see: captree --help)\n`);
    return 2;
  }
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

if (import.meta.main) {
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
