import { afterEach, describe, expect, it } from 'vitest';
import { disableBufferReclaim, enableBufferReclaim, loadMinorCollect, noteRelayedBytes, RECLAIM_EVERY_BYTES, SETTLE_AFTER_QUIET_MS } from '../../../src/util/buffer-reclaim.js';

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

  it('uses 4 MiB and 1 s by default', () => {
    expect(RECLAIM_EVERY_BYTES).toBe(4 * 1024 * 1024);
    expect(SETTLE_AFTER_QUIET_MS).toBe(1000);
  });

  it('settles once after traffic goes quiet, not while it flows, and not without traffic', async () => {
    let minor = 0;
    let major = 0;
    enableBufferReclaim({ collect: () => minor++, settle: () => major++, everyBytes: 1600, quietMs: 40 });
    await sleep(150);
    expect(major).toBe(0); // nothing relayed: no timer, no collection
    // 300 ms of traffic at well over everyBytes/16 per quiet period
    const until = performance.now() + 300;
    while (performance.now() < until) {
      noteRelayedBytes(400);
      await sleep(5);
    }
    expect(minor).toBeGreaterThan(5);
    expect(major).toBe(0);
    await sleep(200);
    expect(major).toBe(1);
    // a trickle under everyBytes/16 per period does not re-arm it
    for (let i = 0; i < 10; i++) {
      noteRelayedBytes(10);
      await sleep(10);
    }
    await sleep(150);
    expect(major).toBe(1);
  });

  it("this Node's minor collection frees dropped Buffers (CI runs this file under Node 20 and 24)", async () => {
    const collect = loadMinorCollect();
    expect(collect).toBeTypeOf('function');
    collect!();
    await sleep(20);
    const before = process.memoryUsage().external;
    for (let i = 0; i < 256; i++) Buffer.allocUnsafeSlow(64 * 1024).fill(i); // 16 MiB, dropped at once
    const grown = process.memoryUsage().external;
    expect(grown - before).toBeGreaterThan(12 * 2 ** 20);
    collect!();
    // the backing stores may be freed by a sweeper task just after the collection
    let after = process.memoryUsage().external;
    for (let i = 0; i < 100 && after - before > 4 * 2 ** 20; i++) {
      await sleep(10);
      after = process.memoryUsage().external;
    }
    expect(after - before).toBeLessThan(4 * 2 ** 20);
  });
});
