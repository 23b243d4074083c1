/**
 * Privileges as capabilities: running as uid 0 (`root`), Linux capabilities (`net_bind_service`,
 * `sys_admin`, ...) and running as another user or group (`user:postgres`, `group:www-data`,
 * `user:*` for any) are held like secrets: the root holds what the host gives, every other node
 * holds what its `requires.privileges` names (a node that names none inherits its parent's; a
 * process child is given an explicit list by the manifest layer, so naming nothing is holding
 * nothing), and each must be held by the parent.
 *
 * Capability names are the kernel's, lower case without `cap_` (`CAP_NET_BIND_SERVICE`,
 * `cap_net_bind_service` and `net_bind_service` are the same privilege); their numbers are the
 * bit positions the launcher keeps.
 */

/** `linux/capability.h`, index = CAP_* number. */
export const linuxCapabilities = [
  'chown',
  'dac_override',
  'dac_read_search',
  'fowner',
  'fsetid',
  'kill',
  'setgid',
  'setuid',
  'setpcap',
  'linux_immutable',
  'net_bind_service',
  'net_broadcast',
  'net_admin',
  'net_raw',
  'ipc_lock',
  'ipc_owner',
  'sys_module',
  'sys_rawio',
  'sys_chroot',
  'sys_ptrace',
  'sys_pacct',
  'sys_admin',
  'sys_boot',
  'sys_nice',
  'sys_resource',
  'sys_time',
  'sys_tty_config',
  'mknod',
  'lease',
  'audit_write',
  'audit_control',
  'setfcap',
  'mac_override',
  'mac_admin',
  'syslog',
  'wake_alarm',
  'block_suspend',
  'audit_read',
  'perfmon',
  'bpf',
  'checkpoint_restore',
] as const;

const capabilityNumber: ReadonlyMap<string, number> = new Map(linuxCapabilities.map((c, i) => [c, i]));

export type PrivilegeParse = { ok: true; privilege: string } | { ok: false; message: string };

const identityName = /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/;

/**
 * The canonical form of one privilege: `root`, a capability name, `user:NAME`, `group:NAME`,
 * `user:*`, `group:*`; or why it is not one (with the nearest capability name when it looks like
 * a misspelt one).
 */
export function parsePrivilege(raw: unknown): PrivilegeParse {
  if (typeof raw !== 'string' || raw === '') {
    return { ok: false, message: `a privilege is a name, got ${JSON.stringify(raw)}` };
  }
  if (raw === 'root') return { ok: true, privilege: 'root' };
  const colon = raw.indexOf(':');
  if (colon > 0) {
    const kind = raw.slice(0, colon);
    const name = raw.slice(colon + 1);
    if ((kind === 'user' || kind === 'group') && (name === '*' || identityName.test(name))) {
      return {
        ok: true,
        privilege: name === '0' || (kind === 'user' && name === 'root') ? 'root' : `${kind}:${name}`,
      };
    }
    return { ok: false, message: `unknown privilege ${raw} (user:NAME, group:NAME, user:* or group:*)` };
  }
  const cap = raw.toLowerCase().replace(/^cap_/, '');
  if (capabilityNumber.has(cap)) return { ok: true, privilege: cap };
  const near = nearestCapability(cap);
  return {
    ok: false,
    message: `unknown privilege ${raw}${near ? ` (did you mean ${near}?)` : ''}; privileges are root, user:NAME, group:NAME or a Linux capability (net_bind_service, chown, setuid, ...)`,
  };
}

/** The CAP_* number of a canonical capability privilege, or undefined for root/user/group. */
export function capabilityOf(privilege: string): number | undefined {
  return capabilityNumber.get(privilege);
}

/** Whether a set of held privileges covers one (a `user:*` or `group:*` covers every name). */
export function holdsPrivilege(held: ReadonlySet<string>, privilege: string): boolean {
  if (held.has(privilege)) return true;
  if (privilege.startsWith('user:')) return held.has('user:*');
  if (privilege.startsWith('group:')) return held.has('group:*');
  return false;
}

/** Everything: what a root-run daemon holds. */
export function allPrivileges(): string[] {
  return ['root', 'user:*', 'group:*', ...linuxCapabilities];
}

function nearestCapability(word: string): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of linuxCapabilities) {
    const d = distance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
