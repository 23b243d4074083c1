/** `captree doctor`: what this host can enforce, and whether the launcher works here. */
import { describeHost, formatHostReport, probeHost } from '../../runtime/host-probe.ts';
import { launcherHealth } from '../../runtime/launcher/client.ts';
import { type Command, jsonOption } from '../cli.ts';

export const doctor: Command = {
  name: 'doctor',
  summary: 'report what this host can enforce (cgroups, namespaces, launcher)',
  usage: 'captree doctor [--json]',
  help: `
Probes this host: kernel, cgroup layout and which limits are enforced, namespaces, bubblewrap,
the C compiler, and builds and starts the launcher to spawn one process through it. Exits 1 if
the launcher cannot be used (nothing could run), 0 otherwise; missing confinement is reported,
and admission refuses trees that need it. With --json: {host, launcher}.

Example:
  captree doctor`,
  options: { ...jsonOption },
  positionals: [0, 0],
  async run({ values }, io) {
    const [report, launcher] = await Promise.all([probeHost(), launcherHealth()]);
    if (values.json) {
      io.stdout.write(`${JSON.stringify({ host: describeHost(report).json, launcher }, null, 2)}\n`);
      return launcher.ok ? 0 : 1;
    }
    io.stdout.write(formatHostReport(report));
    if (launcher.ok) {
      io.stdout.write(
        `launcher: ok (${launcher.binary}; ping ${launcher.pingMs?.toFixed(2)} ms, spawn ${launcher.spawnMs?.toFixed(2)} ms)\n`,
      );
      return 0;
    }
    io.stdout.write(`launcher: NOT WORKING: ${launcher.error ?? 'unknown error'}\n`);
    return 1;
  },
};
