import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { writeFileAtomicRaw } from '../util/atomic-file.js';
import { ErrorCodes, MeshError } from '../errors.js';

/**
 * Files in the state dir. Writes go to a temp file, are fsynced, then renamed over the target, so a
 * crash or a full disk never leaves a half-written key or a lost token use (SPEC §3: uses counted
 * durably before the answer is sent). Everything is 0600 inside a 0700 dir.
 */

export function ensureStateDir(dir: string): void {
  try {
    makeDir(dir);
    const st = statSync(dir);
    if (!st.isDirectory()) throw new Error('not a directory');
    if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  } catch (err) {
    throw new MeshError(ErrorCodes.STATE_DIR, `state dir ${dir}: ${(err as Error).message} (check that it exists, is a directory and is writable by the agent)`, { cause: err });
  }
}

/**
 * `mkdir -p`, but with the real reason when it fails: Node 20's recursive mkdirSync reports ENOENT
 * when the parent is on a read-only file system (EROFS), which sent users looking for a missing
 * directory. Creating the missing components one by one surfaces the kernel's own error.
 */
function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const missing: string[] = [];
    for (let d = resolve(dir); !existsSync(d) && dirname(d) !== d; d = dirname(d)) missing.unshift(d);
    // throws the kernel's error; if every component could be made after all, the dir is there
    for (const d of missing) mkdirSync(d, { mode: 0o700 });
  }
}

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  try {
    writeFileAtomicRaw(path, data, 0o600);
  } catch (err) {
    throw new MeshError(ErrorCodes.STATE_DIR, `cannot write ${path}: ${(err as Error).message} (is the state dir writable and the disk not full?)`, { cause: err });
  }
}

/** Reads a file that holds secrets; refuses one that group or others can read (SPEC §2 identity). */
export function readSecretFile(path: string): string | undefined {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MeshError(ErrorCodes.STATE_DIR, `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  if ((st.mode & 0o077) !== 0) {
    throw new MeshError(
      ErrorCodes.KEY_FILE_PERMISSIONS,
      `${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}); run \`chmod 600 ${path}\``,
    );
  }
  return readFileSync(path, 'utf8');
}

export function readJsonFile<T>(path: string, isSecret: boolean): T | undefined {
  const text = isSecret ? readSecretFile(path) : readOptional(path);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new MeshError(ErrorCodes.STATE_DIR, `${path} is not valid JSON (${(err as Error).message}); restore it from backup or remove it`, { cause: err });
  }
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MeshError(ErrorCodes.STATE_DIR, `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export function writeJsonFile(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + '\n');
}
