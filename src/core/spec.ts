/**
 * Spec checks, run before any side effect (OTP's `check_childspec`): every invalid field is
 * reported with its name, the value given and what is expected, so a bad spec changes nothing.
 *
 * Rules beyond field types, from OTP:
 * - child ids are unique within a supervisor (`duplicate_child_name`);
 * - `significant: true` is invalid with `restart: permanent` (`bad_combination`);
 * - `significant: true` is invalid in a supervisor whose `autoShutdown` is `never`;
 * - `maxChildren` and `template` apply to `dynamic` supervisors only.
 */
import { autoShutdowns, type ChildSpec, restartTypes, type SupervisorSpec, strategies } from './types.ts';

export class SpecError extends Error {
  readonly field: string;
  readonly value: unknown;
  constructor(field: string, value: unknown, expected: string) {
    super(`Expected \`${field}\` ${expected}, got \`${show(value)}\``);
    this.name = 'SpecError';
    this.field = field;
    this.value = value;
  }
}

/** All problems of a spec at once, thrown as one error. */
export class InvalidSpecError extends Error {
  readonly problems: readonly SpecError[];
  constructor(what: string, problems: readonly SpecError[]) {
    super(`invalid ${what}: ${problems.map((p) => p.message).join('; ')}`);
    this.name = 'InvalidSpecError';
    this.problems = problems;
  }
}

function show(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

const idPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function isPositive(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}

export function checkChildSpec(
  spec: ChildSpec,
  supervisor: Pick<SupervisorSpec, 'autoShutdown'> = {},
  prefix = '',
): SpecError[] {
  const errors: SpecError[] = [];
  const f = (name: string) => (prefix ? `${prefix}.${name}` : name);
  if (typeof spec.id !== 'string' || !idPattern.test(spec.id)) {
    errors.push(new SpecError(f('id'), spec.id, 'to be a name of letters, digits, `_`, `.` or `-`'));
  }
  if (!spec.driver || typeof spec.driver.start !== 'function') {
    errors.push(
      new SpecError(f('driver'), typeof spec.driver, 'to be a child driver (task, node or process)'),
    );
  }
  const restart = spec.restart ?? 'permanent';
  if (!restartTypes.includes(restart)) {
    errors.push(new SpecError(f('restart'), spec.restart, `to be one of ${restartTypes.join(' | ')}`));
  }
  const shutdown = spec.shutdown;
  if (shutdown !== undefined && shutdown !== 'brutal' && shutdown !== 'infinity' && !isNonNegInt(shutdown)) {
    errors.push(new SpecError(f('shutdown'), shutdown, 'to be milliseconds ≥ 0, `brutal` or `infinity`'));
  }
  if (spec.significant !== undefined && typeof spec.significant !== 'boolean') {
    errors.push(new SpecError(f('significant'), spec.significant, 'to be a boolean'));
  }
  if (spec.significant === true && restart === 'permanent') {
    errors.push(
      new SpecError(
        f('significant'),
        true,
        'to be false for a permanent child (make it transient or temporary)',
      ),
    );
  }
  if (spec.significant === true && (supervisor.autoShutdown ?? 'never') === 'never') {
    errors.push(
      new SpecError(
        f('significant'),
        true,
        'to be false when the supervisor has autoShutdown `never` (set autoShutdown)',
      ),
    );
  }
  const limited = spec.driver?.kind === 'task' || spec.driver?.kind === 'worker';
  for (const field of ['maxSteps', 'maxRuntime'] as const) {
    const v = spec[field];
    if (v === undefined) continue;
    if (!limited) {
      errors.push(new SpecError(f(field), v, 'only on a task or worker child'));
    } else if (!(isNonNegInt(v) && v > 0)) {
      errors.push(new SpecError(f(field), v, field === 'maxSteps' ? 'to be an integer > 0' : 'to be ms > 0'));
    }
  }
  const b = spec.backoff;
  if (b !== undefined && b !== false) {
    if (!isNonNegInt(b.initial)) errors.push(new SpecError(f('backoff.initial'), b.initial, 'to be ms ≥ 0'));
    if (!isNonNegInt(b.max) || (isNonNegInt(b.initial) && b.max < b.initial)) {
      errors.push(new SpecError(f('backoff.max'), b.max, 'to be ms ≥ backoff.initial'));
    }
    if (b.factor !== undefined && !(typeof b.factor === 'number' && b.factor >= 1)) {
      errors.push(new SpecError(f('backoff.factor'), b.factor, 'to be a number ≥ 1'));
    }
    if (b.resetAfter !== undefined && !isNonNegInt(b.resetAfter)) {
      errors.push(new SpecError(f('backoff.resetAfter'), b.resetAfter, 'to be ms ≥ 0'));
    }
  }
  return errors;
}

export function checkSupervisorSpec(spec: SupervisorSpec): SpecError[] {
  const errors: SpecError[] = [];
  if (typeof spec.name !== 'string' || !idPattern.test(spec.name)) {
    errors.push(new SpecError('name', spec.name, 'to be a name of letters, digits, `_`, `.` or `-`'));
  }
  const strategy = spec.strategy ?? 'one_for_one';
  if (!strategies.includes(strategy)) {
    errors.push(new SpecError('strategy', spec.strategy, `to be one of ${strategies.join(' | ')}`));
  }
  if (spec.intensity !== undefined && !isNonNegInt(spec.intensity)) {
    errors.push(new SpecError('intensity', spec.intensity, 'to be an integer ≥ 0'));
  }
  if (spec.period !== undefined && !isPositive(spec.period)) {
    errors.push(new SpecError('period', spec.period, 'to be ms > 0'));
  }
  if (spec.autoShutdown !== undefined && !autoShutdowns.includes(spec.autoShutdown)) {
    errors.push(
      new SpecError('autoShutdown', spec.autoShutdown, `to be one of ${autoShutdowns.join(' | ')}`),
    );
  }
  if (spec.maxChildren !== undefined) {
    if (strategy !== 'dynamic') {
      errors.push(new SpecError('maxChildren', spec.maxChildren, 'only on a `dynamic` supervisor'));
    } else if (!isNonNegInt(spec.maxChildren)) {
      errors.push(new SpecError('maxChildren', spec.maxChildren, 'to be an integer ≥ 0'));
    }
  }
  if (spec.template !== undefined && strategy !== 'dynamic') {
    errors.push(new SpecError('template', 'template', 'only on a `dynamic` supervisor'));
  }
  const children = spec.children ?? [];
  if (!Array.isArray(children)) {
    errors.push(new SpecError('children', children, 'to be an array of child specs'));
    return errors;
  }
  if (strategy === 'dynamic' && spec.maxChildren !== undefined && children.length > spec.maxChildren) {
    errors.push(
      new SpecError('children', children.length, `to hold at most maxChildren (${spec.maxChildren})`),
    );
  }
  const seen = new Set<string>();
  children.forEach((child, i) => {
    errors.push(...checkChildSpec(child, spec, `children[${i}]`));
    if (seen.has(child.id))
      errors.push(new SpecError(`children[${i}].id`, child.id, 'to be unique (duplicate id)'));
    seen.add(child.id);
  });
  return errors;
}
