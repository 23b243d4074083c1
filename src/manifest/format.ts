/** How manifest errors are printed; imports nothing, so any layer may use it. */
import type { ManifestError } from './types.ts';

/** `file:line:col: /path field: message`, one error per line. */
export function formatError(error: ManifestError): string {
  const subject = [error.path, error.field].filter((part) => part !== '').join(' ');
  return `${error.file}:${error.line}:${error.col}: ${subject ? `${subject}: ` : ''}${error.message}`;
}

export function formatErrors(errors: readonly ManifestError[]): string {
  return errors.map(formatError).join('\n');
}
