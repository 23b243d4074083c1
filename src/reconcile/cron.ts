/**
 * Cron expressions for reconciliation windows (`allow`/`deny`: a cron expression + a duration):
 * the five classic fields `minute hour day-of-month month day-of-week`, each `*`, a number, a
 * range `a-b`, a step `*\/n` or `a-b/n`, or a comma list of those. Times are UTC, so a window
 * means the same thing on every host. Day of week: 0-7, both 0 and 7 Sunday. As in Vixie cron,
 * when both day fields are restricted a day matches if either does.
 * Pure: a window is open at `t` if some minute `s` with `t - duration < s <= t` matches.
 */

export interface Cron {
  /** As written. */
  source: string;
  minutes: ReadonlySet<number>;
  hours: ReadonlySet<number>;
  days: ReadonlySet<number>;
  months: ReadonlySet<number>;
  weekdays: ReadonlySet<number>;
  /** True when that field was restricted (not `*`): decides how the two day fields combine. */
  daysRestricted: boolean;
  weekdaysRestricted: boolean;
}

const FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
] as const;

const MINUTE = 60_000;
/** The longest window a duration may describe: a week (a scan of 10,080 minutes at most). */
export const MAX_WINDOW_MS = 7 * 24 * 60 * MINUTE;

/** Parses a cron expression; throws an Error that says which field is wrong and why. */
export function parseCron(source: string): Cron {
  const parts = source.trim().split(/\s+/);
  if (parts.length !== 5 || parts[0] === '')
    throw new Error(
      `'${source}' has ${parts[0] === '' ? 0 : parts.length} field(s); a cron expression has 5: minute hour day-of-month month day-of-week (e.g. '0 2 * * *')`,
    );
  const sets = parts.map((text, i) => field(text, FIELDS[i] as (typeof FIELDS)[number]));
  const weekdays = new Set([...(sets[4] as Set<number>)].map((d) => (d === 7 ? 0 : d)));
  return {
    source,
    minutes: sets[0] as Set<number>,
    hours: sets[1] as Set<number>,
    days: sets[2] as Set<number>,
    months: sets[3] as Set<number>,
    weekdays,
    daysRestricted: parts[2] !== '*',
    weekdaysRestricted: parts[4] !== '*',
  };
}

function field(text: string, f: (typeof FIELDS)[number]): Set<number> {
  const out = new Set<number>();
  for (const item of text.split(',')) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(item);
    if (!m) throw new Error(`${f.name} '${item}' is not *, N, A-B, */N or A-B/N`);
    const star = m[1] === '*';
    const lo = star ? f.min : Number(m[2]);
    const hi = star ? f.max : m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? f.max : lo;
    const step = m[4] !== undefined ? Number(m[4]) : 1;
    if (lo < f.min || hi > f.max || lo > hi)
      throw new Error(`${f.name} '${item}' is outside ${f.min}-${f.max} (or its range is reversed)`);
    if (step < 1) throw new Error(`${f.name} '${item}': the step must be at least 1`);
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

/** True when the minute starting at `t` (ms epoch, UTC) matches. */
export function cronMatches(cron: Cron, t: number): boolean {
  const d = new Date(t);
  if (!cron.minutes.has(d.getUTCMinutes()) || !cron.hours.has(d.getUTCHours())) return false;
  if (!cron.months.has(d.getUTCMonth() + 1)) return false;
  const day = cron.days.has(d.getUTCDate());
  const weekday = cron.weekdays.has(d.getUTCDay());
  if (cron.daysRestricted && cron.weekdaysRestricted) return day || weekday;
  return day && weekday;
}

/**
 * The start (ms epoch) of the occurrence of the window `cron` + `duration` that contains `t`,
 * or null when `t` is outside every occurrence. The latest matching minute wins.
 */
export function windowStart(cron: Cron, duration: number, t: number): number | null {
  const span = Math.min(duration, MAX_WINDOW_MS);
  const minute = Math.floor(t / MINUTE) * MINUTE;
  for (let s = minute; s > t - span; s -= MINUTE) if (cronMatches(cron, s)) return s;
  return null;
}

/** The first minute at or after `t` at which the window opens, scanning at most `horizon` ms. */
export function nextOpening(
  cron: Cron,
  t: number,
  horizon = MAX_WINDOW_MS + 24 * 60 * MINUTE,
): number | null {
  for (let s = Math.ceil(t / MINUTE) * MINUTE; s <= t + horizon; s += MINUTE)
    if (cronMatches(cron, s)) return s;
  return null;
}
