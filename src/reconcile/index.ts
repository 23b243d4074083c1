/**
 * Reconciliation: desired (a manifest) against actual (the running tree), the plan between them
 * with the fewest restarts, drift and recommendations. Pure: no I/O, no clock; the daemon feeds
 * it and carries its steps out (src/daemon/reconcile-*.ts).
 */
export { canonicalJson, digestText, specDigest } from './canonical.ts';
export { contractOf, contractsOf } from './contracts.ts';
export { changedFields, classify, type FieldChange, type FieldClass } from './fields.ts';
export { hasChanges, indexTree, plan } from './plan.ts';
export * from './types.ts';
