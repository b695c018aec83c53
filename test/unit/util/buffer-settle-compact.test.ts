import { describe, expect, it, vi } from 'vitest';
import { observeForcedFullCollections } from './forced-full-collections.js';

// Every V8 flag buffer-reclaim sets goes through to V8 as before, and is recorded with the time.
const flagCalls = vi.hoisted(() => [] as { flag: string; at: number }[]);
vi.mock('node:v8', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:v8')>();
  const setFlagsFromString = (flag: string): void => {
    flagCalls.push({ flag, at: performance.now() });
    actual.setFlagsFromString(flag);
  };
  return { ...actual, default: { ...actual, setFlagsFromString }, setFlagsFromString };
});

const { keepsFreedPagesPooled, loadMajorCollect } = await import('../../../src/util/buffer-reclaim.js');

/**
 * The settle's compaction, as a mechanism: whether V8 compacts a page on its own depends on how
 * fragmented the heap is, so buffer-settle.test.ts's measurement of the effect can pass without
 * the flag on a heap V8 compacts anyway. Here: the second of the two forced full collections, and
 * only it, runs with --compact-on-every-full-gc on. On Node 22 and 24 the settle is V8's
 * memory-reducing collection, which compacts by itself (buffer-settle.test.ts).
 */
describe.runIf(!keepsFreedPagesPooled())('buffer settle compaction (Node 20)', () => {
  it('switches --compact-on-every-full-gc on for the second full collection only', async () => {
    const settle = loadMajorCollect()!;
    const observed = observeForcedFullCollections();
    const forced = observed.entries;
    flagCalls.length = 0;
    settle();
    await observed.waitFor(2);
    observed.stop();
    expect(flagCalls.map((c) => c.flag)).toEqual(['--compact-on-every-full-gc', '--no-compact-on-every-full-gc']);
    expect(forced).toHaveLength(2);
    const on = flagCalls[0]!;
    const off = flagCalls[1]!;
    expect(forced[0]!.startTime).toBeLessThan(on.at);
    expect(forced[1]!.startTime).toBeGreaterThan(on.at);
    expect(forced[1]!.startTime).toBeLessThan(off.at);
  });
});
