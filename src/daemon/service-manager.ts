/**
 * The daemon under systemd (`captree unit`: Type=notify, NotifyAccess=main): READY=1 once the
 * tree is up, STOPPING=1 when it begins to stop, on `$NOTIFY_SOCKET` (sd_notify(3)).
 *
 * Node has no unix datagram sockets, so the datagram is sent by `systemd-notify` (installed
 * wherever systemd is), run by the daemon itself: as root it sends in the name of its parent,
 * the daemon, so systemd attributes the message to the unit's main process (NotifyAccess=main
 * accepts nothing else). It runs from the daemon, not the launcher, for that reason.
 * `$NOTIFY_SOCKET` is taken out of the daemon's environment: a child given `inheritEnv: true`
 * must not speak to the service manager in the tree's name.
 */
import { execFile } from 'node:child_process';

export interface ServiceManager {
  /** The socket given by the service manager. */
  readonly socket: string;
  /** Sends `fields` (READY=1, STATUS=...); resolves with null, or with why it could not. */
  notify(fields: readonly string[]): Promise<string | null>;
}

/** The service manager that started this process, or null when none asked to be told. */
export function serviceManager(env: NodeJS.ProcessEnv = process.env): ServiceManager | null {
  const socket = env.NOTIFY_SOCKET;
  if (socket === undefined || socket === '') return null;
  delete env.NOTIFY_SOCKET;
  delete process.env.NOTIFY_SOCKET;
  return {
    socket,
    notify: (fields) =>
      new Promise((resolve) => {
        execFile(
          'systemd-notify',
          // No barrier: the message is attributed to this process, which outlives the sender.
          ['--no-block', ...fields],
          { env: { PATH: env.PATH ?? '/usr/bin:/bin', NOTIFY_SOCKET: socket }, timeout: 10_000 },
          (err, _stdout, stderr) => {
            if (!err) return resolve(null);
            const code = (err as NodeJS.ErrnoException).code;
            resolve(
              code === 'ENOENT'
                ? `cannot tell ${socket} ${fields[0]}: systemd-notify is not installed`
                : `cannot tell ${socket} ${fields[0]}: ${stderr.trim() || err.message}`,
            );
          },
        );
      }),
  };
}
