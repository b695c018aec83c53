import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { findPackageRoot, ownPackageRoot, ownPackageVersion, packageVersionAt } from '../../../src/util/package-root.js';

const dir = mkdtempSync(join(tmpdir(), 'osmoda-root-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('package root', () => {
  it("finds this repository's root from a module below it, with its version", () => {
    const root = findPackageRoot(fileURLToPath(import.meta.url));
    expect(root).toBeDefined();
    const pkg = JSON.parse(readFileSync(join(root!, 'package.json'), 'utf8')) as { name: string; version: string };
    expect(pkg.name).toBe('osmoda-mesh');
    expect(packageVersionAt(root)).toBe(pkg.version);
    // the modules' own lookup (proto/, the version, the malloc_trim helper) lands on the same root
    expect(ownPackageRoot()).toBe(root);
    expect(ownPackageVersion()).toBe(pkg.version);
  });

  it("walks past another package's package.json and an unreadable one, and gives up at the filesystem root", () => {
    const ours = join(dir, 'ours');
    const other = join(ours, 'node_modules', 'other');
    const broken = join(other, 'broken');
    mkdirSync(join(broken, 'src'), { recursive: true });
    writeFileSync(join(ours, 'package.json'), JSON.stringify({ name: 'osmoda-mesh', version: '9.8.7' }));
    writeFileSync(join(other, 'package.json'), JSON.stringify({ name: 'other', version: '1.0.0' }));
    writeFileSync(join(broken, 'package.json'), '{ not json');
    expect(findPackageRoot(join(broken, 'src', 'x.js'))).toBe(ours);
    expect(packageVersionAt(ours)).toBe('9.8.7');
    expect(findPackageRoot(join(dir, 'x.js'))).toBeUndefined();
    expect(packageVersionAt(undefined)).toBe('unknown');
    expect(packageVersionAt(broken)).toBe('unknown');
  });
});
