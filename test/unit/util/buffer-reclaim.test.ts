import { afterEach, describe, expect, it } from 'vitest';
import { defaultMuxConfig } from '../../../src/mux/config.js';
import {
  disableBufferReclaim,
  enableBufferReclaim,
  isMallocTrimEnabled,
  noteRelayedBytes,
  RECLAIM_EVERY_BYTES,
  SETTLE_AFTER_QUIET_MS,
  SETTLE_HEAP_GROWTH_BYTES,
  SETTLE_RSS_GROWTH_BYTES,
  QUIET_LOOP_UTILIZATION,
  BUSY_SPELL_LOOP_UTILIZATION,
} from '../../../src/util/buffer-reclaim.js';

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

  it('uses 4 MiB, 1 s, 8 MiB, 16 MiB, 5 % and 20 % by default', () => {
    expect(RECLAIM_EVERY_BYTES).toBe(4 * 1024 * 1024);
    expect(SETTLE_AFTER_QUIET_MS).toBe(1000);
    expect(SETTLE_HEAP_GROWTH_BYTES).toBe(8 * 1024 * 1024);
    expect(SETTLE_RSS_GROWTH_BYTES).toBe(16 * 1024 * 1024);
    expect(QUIET_LOOP_UTILIZATION).toBe(0.05);
    expect(BUSY_SPELL_LOOP_UTILIZATION).toBe(0.2);
  });

  it("collects no more often than a stream's largest window passes (a queued chunk must not outlive two)", () => {
    expect(RECLAIM_EVERY_BYTES).toBeGreaterThanOrEqual(defaultMuxConfig.maxWindowBytes);
  });

  it('settles once the loop goes quiet after a busy spell, with nothing relayed and nothing grown', async () => {
    let major = 0;
    let busy = 0;
    enableBufferReclaim({ collect: () => undefined, settle: () => major++, quietMs: 30, heapBytes: () => 20e6, rssBytes: () => 60e6, loopBusy: () => busy });
    // light traffic: busy, but below a spell, then quiet
    busy = BUSY_SPELL_LOOP_UTILIZATION - 0.01;
    await sleep(120);
    busy = 0;
    await sleep(120);
    expect(major).toBe(0);
    // a busy spell: nothing while it lasts, one settle once quiet
    busy = BUSY_SPELL_LOOP_UTILIZATION;
    await sleep(120);
    expect(major).toBe(0);
    busy = 0;
    await sleep(120);
    expect(major).toBe(1);
    await sleep(120);
    expect(major).toBe(1); // once per spell
    busy = 0.9;
    await sleep(120);
    busy = 0;
    await sleep(120);
    expect(major).toBe(2);
  });

  it('settles once the loop goes quiet after a collect, not while it is busy, and not without a collect', async () => {
    let minor = 0;
    let major = 0;
    let busy = 0.5;
    enableBufferReclaim({ collect: () => minor++, settle: () => major++, everyBytes: 1000, quietMs: 30, heapBytes: () => 50e6, rssBytes: () => 0, loopBusy: () => busy });
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
    enableBufferReclaim({ collect: () => undefined, settle: () => major++, quietMs: 30, heapBytes: () => heap, rssBytes: () => 0, loopBusy: () => busy });
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

  it('settles a quiet agent whose resident memory grew, and trims malloc after every settle only', async () => {
    const events: string[] = [];
    let rss = 80e6;
    let busy = 0;
    enableBufferReclaim({
      collect: () => events.push('minor'),
      settle: () => events.push('settle'),
      trim: () => events.push('trim') > 0,
      quietMs: 30,
      heapBytes: () => 20e6,
      rssBytes: () => rss,
      loopBusy: () => busy,
    });
    expect(isMallocTrimEnabled()).toBe(true);
    rss += SETTLE_RSS_GROWTH_BYTES - 1;
    await sleep(120);
    expect(events).toEqual([]); // not grown enough
    rss += 2;
    busy = 0.3;
    await sleep(120);
    expect(events).toEqual([]); // busy
    busy = 0;
    await sleep(120);
    expect(events).toEqual(['settle', 'trim']);
    rss -= 20e6; // what the trim gave back: the new baseline
    await sleep(120);
    expect(events).toEqual(['settle', 'trim']);
    // a collect after traffic settles (and trims) again; the collect alone never trims
    busy = 0.5;
    noteRelayedBytes(RECLAIM_EVERY_BYTES);
    await nextTurn();
    expect(events).toEqual(['settle', 'trim', 'minor']);
    busy = 0;
    await sleep(120);
    expect(events).toEqual(['settle', 'trim', 'minor', 'settle', 'trim']);
  });

  it('settles without a trim when there is no helper', async () => {
    let major = 0;
    enableBufferReclaim({ collect: () => undefined, settle: () => major++, trim: null, quietMs: 30, heapBytes: () => 0, rssBytes: () => 0, loopBusy: () => 0 });
    expect(isMallocTrimEnabled()).toBe(false);
    noteRelayedBytes(RECLAIM_EVERY_BYTES);
    await nextTurn();
    await sleep(120);
    expect(major).toBe(1);
  });

  it("measures the loop's own busy time when nothing is injected", async () => {
    let major = 0;
    enableBufferReclaim({ collect: () => undefined, settle: () => major++, quietMs: 50, heapBytes: () => 0, rssBytes: () => 0 });
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
