/**
 * What `ps` shows: the engine's tree listing joined with grants and measured usage. Computed on
 * request from the live supervisor, never cached, so `ps` cannot disagree with the engine.
 */
import { describeExit } from '../core/index.ts';
import type { PsEntry, Resources, RunningTree } from './types.ts';

const unknown: Resources = {
  grant: { cpu: null, memory: null, pids: null },
  used: { cpu: null, memory: null },
};

/** `limit`: the first so many entries in tree order (only theirs are measured). */
export function snapshot(rt: RunningTree, limit = Number.POSITIVE_INFINITY): PsEntry[] {
  const sup = rt.supervisor;
  const now = sup.clock.now();
  const rootDepth = sup.path.split('/').length;
  const entries = sup.tree();
  return (limit < entries.length ? entries.slice(0, limit) : entries).map((e) => {
    let res: Resources;
    try {
      res = rt.resources(e.path);
    } catch {
      res = unknown;
    }
    return {
      path: e.path,
      depth: e.path.split('/').length - rootDepth,
      kind: e.kind,
      state: e.state,
      pid: e.pid,
      uptimeMs:
        e.startedAt === null || e.state === 'stopped' || e.state === 'failed'
          ? null
          : Math.max(0, Math.round(now - e.startedAt)),
      restarts: e.restarts,
      ready: e.state === 'ready' || e.state === 'running',
      grant: res.grant,
      used: res.used,
      lastExit: e.lastExit ? describeExit(e.lastExit) : null,
      ...(res.drift && res.drift.length > 0 ? { drift: res.drift } : {}),
    };
  });
}
