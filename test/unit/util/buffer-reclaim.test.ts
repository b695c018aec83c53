import { afterEach, describe, expect, it } from 'vitest';
import { disableBufferReclaim, enableBufferReclaim, noteRelayedBytes, RECLAIM_EVERY_BYTES, SETTLE_AFTER_QUIET_MS, SETTLE_HEAP_GROWTH_BYTES, QUIET_LOOP_UTILIZATION } from '../../../src/util/buffer-reclaim.js';

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

afterEach(() => disableBufferReclaim());

describe('buffer reclaim', () => {
  it('collects once per everyBytes relayed, after the current callbacks, never inside the caller', async () => {
    let calls = 0;
    expect(enableBufferReclaim({ collect: () => calls++, everyBytes: 1000 })).toBe(true);
    noteRelayedBytes(999);
    await nextTurn();
    expect(calls).toBe(0);
    noteRelayedBytes(1);
    expect(calls).toBe(0); // deferred
    await nextTurn();
    expect(calls).toBe(1);
    // many notes in one turn: one collection
    for (let i = 0; i < 50; i++) noteRelayedBytes(1000);
    await nextTurn();
    expect(calls).toBe(2);
    // the count starts again after a collection
    noteRelayedBytes(500);
    await nextTurn();
    expect(calls).toBe(2);
  });

  it('does nothing when off, or when no collector exists', async () => {
    let calls = 0;
    enableBufferReclaim({ collect: () => calls++, everyBytes: 10 });
    disableBufferReclaim();
    noteRelayedBytes(1_000_000);
    await nextTurn();
    expect(calls).toBe(0);
    expect(enableBufferReclaim({ collect: null })).toBe(false);
    noteRelayedBytes(1_000_000);
    await nextTurn();
    expect(calls).toBe(0);
  });

  it('uses 4 MiB, 1 s and 8 MiB by default', () => {
    expect(RECLAIM_EVERY_BYTES).toBe(4 * 1024 * 1024);
    expect(SETTLE_AFTER_QUIET_MS).toBe(1000);
    expect(SETTLE_HEAP_GROWTH_BYTES).toBe(8 * 1024 * 1024);
    expect(QUIET_LOOP_UTILIZATION).toBe(0.05);
  });

  it('settles once the loop goes quiet after a collect, not while it is busy, and not without a collect', async () => {
    let minor = 0;
    let major = 0;
    let busy = 0.5;
    enableBufferReclaim({ collect: () => minor++, settle: () => major++, everyBytes: 1000, quietMs: 30, heapBytes: () => 50e6, loopBusy: () => busy });
    busy = 0;
    await sleep(120);
    expect(major).toBe(0); // quiet, but nothing to settle: no collect, no growth
    busy = 0.5;
    noteRelayedBytes(1000);
    await nextTurn();
    expect(minor).toBe(1);
    await sleep(120);
    expect(major).toBe(0); // busy
    busy = QUIET_LOOP_UTILIZATION;
    await sleep(120);
    expect(major).toBe(1);
    await sleep(120);
    expect(major).toBe(1); // once
  });

  it('settles a quiet agent whose heap grew, once per growth', async () => {
    let major = 0;
    let heap = 30e6;
    let busy = 0;
    enableBufferReclaim({ collect: () => undefined, settle: () => major++, quietMs: 30, heapBytes: () => heap, loopBusy: () => busy });
    heap += SETTLE_HEAP_GROWTH_BYTES - 1;
    await sleep(120);
    expect(major).toBe(0); // not grown enough
    heap += 2;
    busy = 0.2;
    await sleep(120);
    expect(major).toBe(0); // busy
    busy = 0;
    await sleep(120);
    expect(major).toBe(1);
    await sleep(120);
    expect(major).toBe(1); // the size after the settle is the new baseline
    heap += SETTLE_HEAP_GROWTH_BYTES;
    await sleep(120);
    expect(major).toBe(2);
  });

  it("measures the loop's own busy time when nothing is injected", async () => {
    let major = 0;
    enableBufferReclaim({ collect: () => undefined, settle: () => major++, quietMs: 50, heapBytes: () => 0 });
    noteRelayedBytes(RECLAIM_EVERY_BYTES);
    await nextTurn();
    // keep the loop busy (~90%) for 300 ms: no settle
    const until = performance.now() + 300;
    while (performance.now() < until) {
      const spin = performance.now() + 9;
      while (performance.now() < spin);
      await sleep(1);
    }
    expect(major).toBe(0);
    await sleep(200);
    expect(major).toBe(1);
  });
});
