import { fileURLToPath } from 'node:url';
import { findPackageRoot, packageVersionAt } from '../util/package-root.js';

/**
 * The version from the package's own package.json, found by walking up from this module (the same
 * code runs from src/ under tests and from dist/ when installed). Read when the CLI is built, not
 * at import.
 */
export function readPackageVersion(): string {
  return packageVersionAt(findPackageRoot(fileURLToPath(import.meta.url)));
}
