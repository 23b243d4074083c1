/**
 * Reconciliation: desired (a manifest) against actual (the running tree), the plan between them
 * with the fewest restarts, drift and recommendations. Pure: no I/O, no clock; the daemon feeds
 * it and carries its steps out (src/daemon/reconcile-*.ts).
 */
export {
  AUTO_ACTIONS,
  type AutoAction,
  type AutoPolicy,
  checkInterval,
  DEFAULT_POLICY,
  decide,
  type Guard,
  type GuardState,
  type Mode,
  policyFor,
  type Verdict,
} from './auto.ts';
export { canonicalJson, digestText, specDigest } from './canonical.ts';
export { contractOf, contractsOf } from './contracts.ts';
export { type Cron, cronMatches, MAX_WINDOW_MS, nextOpening, parseCron, windowStart } from './cron.ts';
export { type AssessOptions, assess } from './drift.ts';
export { changedFields, classify, type FieldChange, type FieldClass, type Spec } from './fields.ts';
export { type Admitted, admitTree, hostFor } from './fit.ts';
export { hasChanges, indexTree, plan } from './plan.ts';
export * from './types.ts';
