import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { MALLOC_TRIM_HELPER, loadMallocTrim, loadMallocTrimFrom } from '../../../src/util/malloc-trim.js';
import { findPackageRoot } from '../../../src/util/package-root.js';

const root = findPackageRoot(fileURLToPath(import.meta.url));
const helperPath = root === undefined ? '' : join(root, MALLOC_TRIM_HELPER);
const isBuilt = existsSync(helperPath);
if (!isBuilt) {
  // `npm test` builds it first (native/build.mjs, needs a C compiler); CI must have it
  console.error(`!!!!! MALLOC_TRIM HELPER NOT BUILT (${MALLOC_TRIM_HELPER}): run npm run build with a C compiler — its test is skipped, not passed`);
}
const dir = mkdtempSync(join(tmpdir(), 'osmoda-trim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * A child Node process (so that its RSS is its own) that fragments glibc's heap: 600 Buffers of
 * 60 KiB, each followed by a small Buffer that stays alive, so that free() of the big ones leaves
 * holes glibc keeps. It prints its anonymous RSS with the Buffers alive, and before and after
 * mallocTrim().
 */
const CHILD = `
const { mallocTrim } = require(process.argv[2]);
const anon = () => +/RssAnon:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1] * 1024;
const keep = [];
let big = [];
for (let i = 0; i < 600; i++) { big.push(Buffer.allocUnsafeSlow(60 * 1024).fill(1)); keep.push(Buffer.allocUnsafeSlow(512).fill(2)); }
const peak = anon();
big = null;
gc();
gc();
const before = anon();
const released = mallocTrim();
const after = anon();
console.log(JSON.stringify({ peak, before, after, released, kept: keep.length }));
`;

describe('malloc trim helper', () => {
  it('is null for a package root without the helper, or no root', () => {
    expect(loadMallocTrimFrom(dir)).toBeNull();
    expect(loadMallocTrimFrom(undefined)).toBeNull();
  });

  it('is null when the file there is not a loadable addon', () => {
    const fake = mkdtempSync(join(dir, 'root-'));
    mkdirSync(join(fake, 'dist', 'native'), { recursive: true });
    writeFileSync(join(fake, MALLOC_TRIM_HELPER), 'not an ELF file');
    expect(loadMallocTrimFrom(fake)).toBeNull();
  });

  it.skipIf(!isBuilt && process.env['CI'] === undefined)('was built, and gives the memory free() kept back to the system', () => {
    expect(isBuilt, `${helperPath} must exist on CI (.ci/run installs gcc; npm run build compiles it)`).toBe(true);
    expect(loadMallocTrim()).toBeTypeOf('function');
    const script = join(dir, 'fragment.cjs');
    writeFileSync(script, CHILD);
    const out = execFileSync(process.execPath, ['--expose-gc', '--single-threaded-gc', script, helperPath], { encoding: 'utf8', timeout: 30_000 });
    const { peak, before, after, released, kept } = JSON.parse(out) as { peak: number; before: number; after: number; released: boolean; kept: number };
    expect(kept).toBe(600);
    expect(released).toBe(true);
    expect(after).toBeLessThanOrEqual(before);
    // ~35 MB of 60 KiB holes went back (44 -> 9 MB measured). glibc alone gives some back before
    // the trim when the frees happen to reach the top of its heap, which they did on a loaded
    // machine under Node 24 (44 -> 27-33 MB, then 9 after the trim): so the trim must take the
    // process at least 25 MB below the peak; glibc alone went at most 17 MB below it in 21 runs.
    expect(peak - after).toBeGreaterThan(25 * 1024 * 1024);
  });
});
