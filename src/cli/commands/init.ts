/** `captree init [FILE]`: writes a commented starter manifest that `captree check` accepts. */
import { existsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CliError, type Command } from '../cli.ts';

export const starter = `# captree.yaml: one supervision tree (reference: docs/manifest.md).
# Check it with: captree check    Run it with: captree up    See it: captree ps
name: app                      # the root node: paths are /app, /app/web, ...
strategy: one_for_one          # a crash restarts only that child (or rest_for_one, one_for_all)
intensity: 5                   # more than 5 restarts ...
period: 30s                    # ... within 30s and the tree gives up
requires: { cpu: 1, memory: 512Mi, pids: 256 }   # the budget the children share

children:
  - name: web
    command: [python3, -m, http.server, '8000', --bind, 127.0.0.1]
    # env: { LOG_LEVEL: info }   # or envFile: .env ; \${VAR} and \${VAR:-default} are substituted
    ready: { tcp: 127.0.0.1:8000, timeout: 10s }   # started = this port answers
    restart: permanent           # always restarted (transient: only after a crash; temporary: never)
    shutdown: 5s                 # SIGTERM, then SIGKILL after 5s
    # reload: SIGHUP             # what captree reload web does (or a command: [prog, args])
    requires: { cpu: 0.5, memory: 128Mi, pids: 64 }

  # - name: worker
  #   command: [node, worker.js]
  #   backoff: { initial: 200ms, max: 5s }
  #   requires: { cpu: 0.2, memory: 128Mi }
`;

export const init: Command = {
  name: 'init',
  summary: 'write a commented starter manifest (captree.yaml)',
  usage: 'captree init [FILE] [--force]',
  help: `
Writes a small commented manifest (default: captree.yaml in the current directory) with one
process child to edit: its command, readiness, restart policy and budget. Refuses to overwrite
an existing file unless --force.

Example:
  captree init && captree check && captree up`,
  options: { force: { type: 'boolean', description: 'overwrite an existing file' } },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    const shown = positionals[0] ?? 'captree.yaml';
    const file = path.resolve(io.cwd, shown);
    if (existsSync(file) && !values.force)
      throw new CliError(`${shown} already exists (keep it, or overwrite it with: captree init --force)`);
    writeFileSync(file, starter);
    io.stdout.write(`captree: wrote ${shown}; next: captree check ${shown} && captree up ${shown}\n`);
    return 0;
  },
};
