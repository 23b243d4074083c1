/** Finds or builds `ptyrelay` (native/ptyrelay.c), compiled on first use like the launcher. */
import { fileURLToPath } from 'node:url';
import { type BuildOptions, nativeBinary } from '../launcher/build.ts';

/** Same relative path from `src/runtime/pty/` and from `dist/runtime/pty/`. */
export const ptyrelaySource: string = fileURLToPath(new URL('../../../native/ptyrelay.c', import.meta.url));

export function ptyrelayBinary(opts: BuildOptions = {}): Promise<string> {
  return nativeBinary(ptyrelaySource, 'captree-ptyrelay', 'terminal relay (ptyrelay)', opts);
}
