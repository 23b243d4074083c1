/**
 * `--since` values: a duration back from now (`30s`, `5m`, `1h30m`), an ISO-8601 time, or
 * milliseconds since the epoch (what the CLI sends to the API).
 */
import { parseDuration } from '../manifest/units.ts';

/** ms epoch, or undefined if `value` is none of the accepted forms. */
export function parseSince(value: string, now = Date.now()): number | undefined {
  const text = value.trim();
  if (/^\d{10,}$/.test(text)) return Number(text);
  // A bare small number is ambiguous (seconds? ms?): ask for a unit instead of guessing.
  if (/^[\d.]+(?:ms|s|m|h|d)/.test(text)) {
    const ms = parseDuration(text);
    if (ms !== undefined) return now - ms;
  }
  if (/^\d{4}-\d\d-\d\d/.test(text)) {
    const t = Date.parse(text);
    if (!Number.isNaN(t)) return t;
  }
  return undefined;
}

/** `850ms`, `42s`, `3m05s`, `2h07m`, `3d04h`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}
