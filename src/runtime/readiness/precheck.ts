/**
 * Ready means *this* child: a tcp or http readiness target that already answers before the child
 * is started is served by someone else (a stale instance of the program, another tree, a system
 * service), and probing it would declare the child ready in milliseconds while the child itself
 * fails to bind. Checked once before the spawn; the listener is named from /proc where it can be.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect } from 'node:net';

/** True if something accepts a TCP connection at host:port right now. */
export function answers(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Socket inodes listening on `port` (any address), from /proc/net/tcp and tcp6. */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; st 0A is LISTEN; the inode is the 10th field.
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9]) inodes.add(f[9]);
    }
  }
  return inodes;
}

/** `pid 1234 (redis-server)` for the process holding a listening socket on `port`, or null. */
export function listenerOf(port: number): string | null {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return null;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m && inodes.has(m[1]!)) {
        let comm = '?';
        try {
          comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
        } catch {
          // gone meanwhile
        }
        return `pid ${pid} (${comm})`;
      }
    }
  }
  return null;
}

export type ProbeTarget = { type: 'tcp'; host: string; port: number } | { type: 'http'; url: string };

/** Why the target cannot tell this child's readiness (someone already serves it), or null. */
export async function servedByAnother(target: ProbeTarget): Promise<string | null> {
  let host: string;
  let port: number;
  if (target.type === 'tcp') {
    host = target.host;
    port = target.port;
  } else {
    const url = new URL(target.url);
    host = url.hostname.replace(/^\[|\]$/g, '');
    port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  }
  if (!(await answers(host, port))) return null;
  const who = listenerOf(port);
  return `its readiness target ${host}:${port} is already served by ${who ?? 'another process'} before it started: free the port or change ready:`;
}
