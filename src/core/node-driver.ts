/**
 * The nested-supervisor driver: a child that is itself a supervisor. It is ready once all its
 * children have started; it exits when it stops, when it auto-shuts down (`shutdown`), or when it
 * exceeds its restart intensity (`escalated`), which its parent treats as a crash: escalation.
 */
import type { ChildDriver, ChildHandle } from './driver.ts';
import { checkSupervisorSpec, InvalidSpecError } from './spec.ts';
import { crashOf, Supervisor, type SupervisorOptions } from './supervisor.ts';
import type { ExitReason, SupervisorSpec } from './types.ts';

export function node(
  spec: SupervisorSpec,
  options: Pick<SupervisorOptions, 'checkpoints' | 'holds'> = {},
): ChildDriver {
  // Reject a bad nested spec when it is given, not when the parent first starts it.
  const problems = checkSupervisorSpec(spec);
  if (problems.length > 0) throw new InvalidSpecError(`supervisor spec ${spec.name}`, problems);
  return {
    kind: 'node',
    spec,
    start(ctx, events): ChildHandle {
      const sup = new Supervisor(spec, { ...options, clock: ctx.clock, sink: ctx.sink, path: ctx.path });
      let reported = false;
      let stopRequested = false;
      const report = (reason: ExitReason) => {
        if (reported) return;
        reported = true;
        events.exited(reason);
      };
      sup.onExit(report);
      sup.start().then(
        () => events.ready(true),
        (err: unknown) => {
          if (!stopRequested) report(crashOf(err));
        },
      );
      return {
        pid: null,
        node: sup,
        stop: () => {
          stopRequested = true;
          void sup.stop();
        },
        kill: () => {
          stopRequested = true;
          void sup.kill();
        },
      };
    },
  };
}
