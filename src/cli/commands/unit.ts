/**
 * `captree unit [FILE]`: a systemd unit that runs the tree at boot. `captree up` in the
 * foreground is the unit's main process and tells systemd READY=1 itself once the tree is up
 * (Type=notify); systemd delegates its cgroup (Delegate=yes), under which captree creates the
 * children's; `captree down` stops it in order, and KillMode=mixed sends the final SIGTERM to the
 * main process alone, so the children are stopped by captree, not killed around it.
 */
import { realpathSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stateDirFor } from '../../daemon/state.ts';
import { formatErrors } from '../../manifest/format.ts';
import type { ChildSpec, ManifestTree, NodeSpec, ProcessSpec } from '../../manifest/index.ts';
import { CliError, type Command } from '../cli.ts';

/** The sum over a subtree, or Infinity when a part waits for ever. */
function total(spec: NodeSpec | ChildSpec, of: (c: ProcessSpec) => number): number {
  if (spec.kind === 'process') return of(spec);
  return spec.children.reduce((sum, c) => sum + total(c, of), 0);
}

/** Seconds for TimeoutStartSec/TimeoutStopSec: what the tree may take, 30 s of margin, 90 at least. */
function seconds(ms: number): string {
  return Number.isFinite(ms) ? String(Math.max(90, Math.ceil(ms / 1000) + 30)) : 'infinity';
}

/** A systemd word: quoted when it holds a space, `$` and `%` escaped (systemd.syntax(7)). */
function word(s: string): string {
  const escaped = s.replaceAll('\\', '\\\\').replaceAll('%', '%%').replaceAll('$', '$$');
  return /[\s"']/.test(s) ? `"${escaped.replaceAll('"', '\\"')}"` : escaped;
}

/** This install's CLI: the Node.js running now and the entry point it runs (absolute, resolved). */
function thisInstall(): { node: string; entry: string } {
  const built = import.meta.url.endsWith('.js');
  const entry = fileURLToPath(new URL(built ? '../main.js' : '../main.ts', import.meta.url));
  return { node: realpathSync(process.execPath), entry: realpathSync(entry) };
}

export function unitText(tree: ManifestTree, file: string, stateDir: string): string {
  const { node, entry } = thisInstall();
  const cli = (...args: string[]) => [node, entry, ...args].map(word).join(' ');
  // Children start one after the other, each ready before the next; they stop the same way.
  const start = total(tree.root, (c) => c.ready?.timeout ?? 0);
  const stop = total(tree.root, (c) =>
    c.shutdown === 'infinity' ? Number.POSITIVE_INFINITY : c.shutdown === 'brutal' ? 0 : c.shutdown,
  );
  const unitName = `captree-${tree.root.name}.service`;
  return `# ${unitName}: the captree tree ${tree.root.path} of ${file}, started at boot.
# Install it with:
#   captree unit ${file} > /etc/systemd/system/${unitName}
#   systemctl daemon-reload && systemctl enable --now ${unitName}
# Then: systemctl status ${unitName}; captree ps --state ${stateDir}
[Unit]
Description=captree tree ${tree.root.path} (${file})
After=network.target

[Service]
# captree up tells systemd READY=1 itself once every child is up.
Type=notify
NotifyAccess=main
WorkingDirectory=${word(path.dirname(file))}
Environment=NO_COLOR=1
ExecStart=${cli('up', file, '--state', stateDir)}
ExecStop=${cli('down', '--state', stateDir)}
# systemd hands its cgroup to captree, which puts each child in a cgroup of its own below it.
Delegate=yes
# captree stops the children in order; the final SIGTERM goes to captree alone.
KillMode=mixed
TimeoutStartSec=${seconds(start)}
TimeoutStopSec=${seconds(stop)}
# The tree gave up (its root's restart intensity was exceeded): start it again, after a pause.
Restart=on-failure
RestartSec=5s

[Install]
WantedBy=multi-user.target
`;
}

export const unit: Command = {
  name: 'unit',
  summary: 'print a systemd unit that runs the tree at boot',
  usage: 'captree unit [FILE] [--state DIR]',
  help: `
Checks the manifest (default: captree.yaml) and prints a systemd service unit for its tree:
Type=notify (captree up tells systemd READY=1 itself once every child is up, and STOPPING=1
when it begins to stop), ExecStart and ExecStop with absolute paths to this install's Node.js
and captree (captree up in the foreground is the unit's main process; captree down stops the
tree in order), Delegate=yes (captree creates the children's cgroups inside the unit's),
KillMode=mixed (systemd's final SIGTERM goes to captree alone, never around it to the
children), start and stop timeouts from the children's ready timeouts and shutdown
deadlines, and Restart=on-failure for a tree that gave up. Redirect it to a file in
/etc/systemd/system and enable it; the first lines say how.

Example:
  captree unit > /etc/systemd/system/captree-shop.service
  systemctl daemon-reload && systemctl enable --now captree-shop`,
  options: {
    state: {
      type: 'string',
      description: 'state directory of the tree (default: .captree beside the manifest)',
    },
  },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    const shown = positionals[0] ?? 'captree.yaml';
    const file = path.resolve(io.cwd, shown);
    const { validate } = await import('./check.ts');
    // Errors name the file as the user wrote it, as up's do.
    const result = await validate(io.cwd === process.cwd() ? shown : file);
    if (!result.tree) {
      io.stderr.write(`${formatErrors(result.errors)}\n`);
      throw new CliError(`${result.errors.length} error(s) in ${shown}; no unit printed`);
    }
    const stateDir =
      typeof values.state === 'string' ? path.resolve(io.cwd, values.state) : stateDirFor(file);
    io.stdout.write(unitText(result.tree, file, stateDir));
    return 0;
  },
};
