/**
 * Units a manifest writes as text: durations, byte sizes and CPU amounts. Each has a pattern
 * (shared with the JSON Schema, so editors flag the same strings the loader rejects) and a
 * parser that turns an already-matching value into the number the tree carries: milliseconds,
 * bytes, cores.
 */

/** `5s`, `500ms`, `1.5s`, `2m`, `1h`, `1d`, compounds like `1m30s`, or a bare number of ms. */
export const DURATION_PATTERN = '^(?:(?:\\d+(?:\\.\\d+)?(?:ms|s|m|h|d))+|\\d+(?:\\.\\d+)?)$';
const DURATION_RE = new RegExp(DURATION_PATTERN);
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Both SI (`1G` = 10^9) and binary (`1Gi` = 2^30) suffixes, as Kubernetes accepts them. */
export const SIZE_PATTERN = '^\\d+(?:\\.\\d+)?\\s*(?:[kKMGTP]i?B?|B)?$';
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(?:([kKMGTP])(i?)B?|B)?$/;
const SIZE_POWER: Record<string, number> = { k: 1, K: 1, M: 2, G: 3, T: 4, P: 5 };

/** `20%` of one core, `200m` millicores (Kubernetes style), or a number of cores as text. */
export const CPU_PATTERN = '^\\d+(?:\\.\\d+)?(?:%|m)?$';
const CPU_RE = /^(\d+(?:\.\d+)?)(%|m)?$/;

/** Milliseconds in a duration; `undefined` when the value is not a duration. */
export function parseDuration(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  const text = value.trim();
  if (!DURATION_RE.test(text)) return undefined;
  if (/^\d+(?:\.\d+)?$/.test(text)) return Math.round(Number(text));
  let ms = 0;
  for (const match of text.matchAll(DURATION_PART))
    ms += Number(match[1]) * (DURATION_UNIT_MS[match[2]!] ?? 0);
  return Math.round(ms);
}

/** Bytes in a size; `undefined` when the value is not a size. */
export function parseSize(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  const match = SIZE_RE.exec(value.trim());
  if (!match) return undefined;
  const [, amount, prefix, binary] = match;
  const power = prefix ? (SIZE_POWER[prefix] ?? 0) : 0;
  const base = binary ? 1024 : 1000;
  return Math.round(Number(amount) * base ** power);
}

/** Cores in a CPU amount; `undefined` when the value is not one. */
export function parseCpu(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  const match = CPU_RE.exec(value.trim());
  if (!match) return undefined;
  const amount = Number(match[1]);
  // Dividing introduces float noise (0.1 + 0.2 style); rounding to micro-cores keeps 20% === 0.2.
  if (match[2] === '%') return Math.round(amount * 10_000) / 1_000_000;
  if (match[2] === 'm') return Math.round(amount * 1000) / 1_000_000;
  return amount;
}
