/**
 * Quantity units. Rules:
 * - cpu is carried internally in integer millicores; cores in, cores out. A value that is not
 *   a whole number of millicores is invalid (never rounded).
 * - memory (bytes) and pids (count) are safe integers.
 * - every carved amount is > 0; omitting a quantity is how a child shares instead of carving.
 * - messages print cpu as cores with at least one decimal (`1.0`, `0.25`), memory with the
 *   largest binary unit that divides it exactly (`256Mi`), pids as a count.
 */

export const quantities = ['cpu', 'memory', 'pids'] as const;
export type Quantity = (typeof quantities)[number];

/** Cores to millicores, or undefined when the value is not a positive whole number of millicores. */
export function coresToMilli(cores: number): number | undefined {
  if (typeof cores !== 'number' || !Number.isFinite(cores) || cores <= 0) return undefined;
  const milli = Math.round(cores * 1000);
  // Tolerance absorbs binary representation (0.3 * 1000 = 299.99999999999994), not user precision.
  if (Math.abs(milli - cores * 1000) > 1e-6 || !Number.isSafeInteger(milli) || milli === 0) return undefined;
  return milli;
}

/** Internal units to user units. */
export function toUser(q: Quantity, v: number): number {
  return q === 'cpu' ? v / 1000 : v;
}

const binaryUnits: readonly [string, number][] = [
  ['Ti', 1024 ** 4],
  ['Gi', 1024 ** 3],
  ['Mi', 1024 ** 2],
  ['Ki', 1024],
];

/** `64Mi`, `1.5Gi`; an amount no unit divides is rounded in the largest unit it reaches (`23.5Gi`, not `24683568Ki`). */
export function formatBytes(bytes: number): string {
  if (bytes === 0) return '0';
  for (const [unit, size] of binaryUnits) {
    if (bytes >= size && bytes % size === 0 && bytes / size < 1024) return `${bytes / size}${unit}`;
  }
  for (const [unit, size] of binaryUnits) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(1))}${unit}`;
  }
  return String(bytes);
}

export function formatCores(milli: number): string {
  const cores = milli / 1000;
  return Number.isInteger(cores) ? cores.toFixed(1) : String(cores);
}

/** Formats an internal amount for messages. */
export function formatQuantity(q: Quantity, v: number): string {
  if (q === 'cpu') return formatCores(v);
  if (q === 'memory') return formatBytes(v);
  return String(v);
}
