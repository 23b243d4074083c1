/**
 * Signal names as `captree signal` and the API take them: `SIGHUP`, `HUP`, `hup` or a number
 * (`1`), always answered with the canonical name. Linux's list, from Node's `os.constants`.
 */
import { constants } from 'node:os';

export const SIGNAL_NAMES: readonly string[] = Object.keys(constants.signals);

const byNumber = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/** The canonical name, or null when `text` names no signal of this system. */
export function signalNamed(text: string): NodeJS.Signals | null {
  const t = text.trim();
  if (/^\d+$/.test(t)) return (byNumber.get(Number(t)) as NodeJS.Signals | undefined) ?? null;
  const upper = t.toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  return SIGNAL_NAMES.includes(name) ? (name as NodeJS.Signals) : null;
}
