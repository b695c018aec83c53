import { fileURLToPath } from 'node:url';
import { findPackageRoot, packageVersionAt } from '../util/package-root.js';

/** The package version, read from the nearest osmoda-mesh package.json above this module (src/ or dist/). */
export function packageVersion(): string {
  return packageVersionAt(findPackageRoot(fileURLToPath(import.meta.url)));
}
