/**
 * Finds or builds the launcher binary. The C source ships with the package and is compiled on
 * first use into a per-user cache, keyed by the source's hash, so an upgrade rebuilds and
 * concurrent first uses never see a half-written binary (compile to a temporary name, rename).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, constants, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Same relative path from `src/runtime/launcher/` and from `dist/runtime/launcher/`. */
export const launcherSource: string = fileURLToPath(new URL('../../../native/launcher.c', import.meta.url));

export function launcherCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CAPTREE_CACHE_DIR) return env.CAPTREE_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'captree');
  return join(homedir(), '.cache', 'captree');
}

export interface BuildOptions {
  cacheDir?: string;
  /** C compiler; default `$CC` or `cc`. */
  cc?: string;
}

const building = new Map<string, Promise<string>>();

/** Path to the launcher binary for the current source, compiling it if the cache lacks it. */
export function launcherBinary(opts: BuildOptions = {}): Promise<string> {
  return nativeBinary(launcherSource, 'captree-launcher', 'launcher', opts);
}

/**
 * The same for any single-file C program shipped in `native/` (the shell's `ptyrelay`):
 * `<cache>/<name>-<hash of the source>`, built once, concurrent first uses safe.
 */
export function nativeBinary(
  source: string,
  name: string,
  what: string,
  opts: BuildOptions = {},
): Promise<string> {
  const dir = opts.cacheDir ?? launcherCacheDir();
  const cc = opts.cc ?? process.env.CC ?? 'cc';
  const key = `${dir}\0${cc}\0${source}`;
  let p = building.get(key);
  if (!p) {
    p = build(dir, cc, source, name, what);
    building.set(key, p);
    // A failed build (no compiler yet) may succeed later: do not cache the failure.
    p.catch(() => building.delete(key));
  }
  return p;
}

async function build(
  dir: string,
  cc: string,
  sourceFile: string,
  name: string,
  what: string,
): Promise<string> {
  let source: Buffer;
  try {
    source = await readFile(sourceFile);
  } catch (err) {
    throw new Error(`captree ${what} source missing at ${sourceFile}: ${(err as Error).message}`);
  }
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 12);
  const bin = join(dir, `${name}-${hash}`);
  try {
    await access(bin, constants.X_OK);
    return bin;
  } catch {
    // not built yet
  }
  await mkdir(dir, { recursive: true });
  const tmp = `${bin}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(cc, ['-O2', '-o', tmp, sourceFile], (err, _stdout, stderr) => {
        if (!err) return resolve();
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          return reject(
            new Error(
              `captree needs a C compiler to build its ${what}, and '${cc}' was not found on PATH. ` +
                'Install one (e.g. `apt-get install gcc`) or set CC to a compiler.',
            ),
          );
        }
        reject(new Error(`compiling the captree ${what} with ${cc} failed:\n${stderr || err.message}`));
      });
    });
    await rename(tmp, bin);
  } finally {
    await rm(tmp, { force: true });
  }
  return bin;
}
