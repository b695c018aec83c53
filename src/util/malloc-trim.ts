import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ownPackageRoot } from './package-root.js';

/** Where `npm run build` puts the helper (native/build.mjs), under the package root. */
export const MALLOC_TRIM_HELPER = join('dist', 'native', 'malloc-trim.node');

/** Gives freed malloc memory back to the system; true when some went back. */
export type MallocTrim = () => boolean;

/**
 * glibc's malloc_trim(0) through the helper addon (native/malloc-trim.c), or null when the helper
 * was not built (no C compiler at build time) or does not load (a libc without malloc_trim).
 */
export function loadMallocTrim(): MallocTrim | null {
  return loadMallocTrimFrom(ownPackageRoot());
}

/** loadMallocTrim for the package at `root` (null when there is no root). */
export function loadMallocTrimFrom(root: string | undefined): MallocTrim | null {
  if (root === undefined) return null;
  const helperPath = join(root, MALLOC_TRIM_HELPER);
  if (!existsSync(helperPath)) return null;
  try {
    const helper = createRequire(import.meta.url)(helperPath) as { mallocTrim?: unknown };
    if (typeof helper.mallocTrim !== 'function') return null;
    const mallocTrim = helper.mallocTrim as () => unknown;
    return () => mallocTrim() === true;
  } catch {
    return null;
  }
}
