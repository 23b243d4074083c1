/**
 * captree capabilities: grants carved from a parent's holdings, contracts, admission, policy
 * and contract-graph ordering. Pure and deterministic: no I/O, no clock.
 */
export { type Checked, checkTree } from './check.ts';
export { type ChildOrder, type OrderOptions, orderChildren, type ParentOffer } from './order.ts';
export {
  allPrivileges,
  capabilityOf,
  holdsPrivilege,
  linuxCapabilities,
  parsePrivilege,
} from './privileges.ts';
export { coresToMilli, formatBytes, formatCores, type Quantity, quantities } from './quantity.ts';
export {
  type AdmitOptions,
  admit,
  type CapTree,
  childrenOf,
  createTree,
  type Granted,
  grantOf,
  labelKinds,
  type NodeSnapshot,
  normalizePath,
  paths,
  type Released,
  release,
  remainingOf,
  renegotiate,
  requirementKinds,
  snapshot,
} from './tree.ts';
export type {
  Contract,
  CpuRequirement,
  Enforcement,
  Grant,
  HostCapabilities,
  NetRequirement,
  PathMode,
  Policy,
  Provides,
  QuantityDetail,
  QuantityGrant,
  Reason,
  ReasonCode,
  Rejected,
  Requires,
  ServiceEndpoint,
  ServiceGrant,
  ServiceRequirement,
  TreeSpec,
} from './types.ts';
export { enforcements } from './types.ts';
