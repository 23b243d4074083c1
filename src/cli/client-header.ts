/** Who is asking, for the daemon's journal: the command, the user and the pid of this CLI. */
import { userInfo } from 'node:os';

export function clientHeader(command: string): Record<string, string> {
  let user = String(process.getuid?.() ?? '?');
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry: the uid alone
  }
  return { 'x-captree-client': `captree ${command} (user ${user}, pid ${process.pid})` };
}
