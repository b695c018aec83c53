import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'osmoda-mesh';
/** src/<concern>/x.ts or dist/src/<concern>/x.js sit at most a few levels below the root. */
const MAX_LEVELS = 8;

/**
 * The osmoda-mesh package's root directory (the one holding its package.json, proto/ and dist/),
 * found by walking up from `fromFile`: the same code runs from src/ under the tests and from dist/
 * when installed. Undefined when no such package.json is above it.
 */
export function findPackageRoot(fromFile: string): string | undefined {
  let dir = dirname(fromFile);
  for (let i = 0; i < MAX_LEVELS; i++) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      try {
        const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: unknown };
        if (pkg.name === PACKAGE_NAME) return dir;
      } catch {
        // unreadable or not JSON: not ours, keep walking
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
  return undefined;
}

/** The package's version from its package.json, or 'unknown'. */
export function packageVersionAt(root: string | undefined): string {
  if (root === undefined) return 'unknown';
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Found on first use: the walk reads package.json files on the way up. */
let ownRoot: { dir: string | undefined } | undefined;
let ownVersion: string | undefined;

/**
 * This package's root: every module of it (src/ or dist/src/) sits below the same one. Looked up
 * once per process (proto/, the helper, and every status request and CLI run ask for it).
 */
export function ownPackageRoot(): string | undefined {
  ownRoot ??= { dir: findPackageRoot(fileURLToPath(import.meta.url)) };
  return ownRoot.dir;
}

/**
 * This package's version, read on first use (not at import) and kept: the version of the code
 * that is running, even if an upgrade replaces package.json meanwhile. 'unknown' without it.
 */
export function ownPackageVersion(): string {
  ownVersion ??= packageVersionAt(ownPackageRoot());
  return ownVersion;
}
