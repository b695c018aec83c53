import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadMallocTrim, type MallocTrim } from './malloc-trim.js';

/**
 * Frees the Buffers the data path has dropped, often, instead of when V8 gets round to it.
 *
 * Every 64 KiB the agent relays allocates a few Buffers (socket reads, AEAD output, WebSocket
 * reassembly) that are garbage a moment later. Their memory lives outside V8's heap, and V8 only
 * collects for it after about 64 MB more of it has piled up, so an agent under load sat 40-60 MB
 * above its idle size, all of it dead Buffers (osmoda_mesh_process_external_memory_bytes). A minor
 * collection (scavenge) frees them: the Buffers are young, and the young generation of a relay is
 * small, so one costs well under a millisecond. Asking for one every RECLAIM_EVERY_BYTES relayed
 * kept each agent near 85-90 MB instead of 125-140 at ~200 MB/s on loopback, at the same speed.
 * Not less than the 4 MiB of a stream's largest window: a chunk waiting in a local socket's write
 * queue lives while up to a window's worth of bytes pass, and one that outlives two minor
 * collections is promoted to the old generation, where only a full collection frees it. With one
 * every 2 MiB (tried on 2026-11-27; it lowered the peak of three 1 GiB transfers to a fast
 * JavaScript reader by 4-10 MB), iperf3 -R through two loopback agents took the agent writing to
 * the iperf3 client to 162-196 MB, its dead Buffers piling up outside the heap until V8's own
 * full collection; with 4 MiB it stayed at 70-94 MB (3 runs each on Node 20 and 22).
 */
export const RECLAIM_EVERY_BYTES = 4 * 1024 * 1024;
/**
 * After traffic, once the event loop has been at most QUIET_LOOP_UTILIZATION busy for this long,
 * the agent settles (full collections, see checkSettle). Buffers that were still queued when a
 * minor collection ran have moved to the old generation, which V8 shrinks only much later: after
 * a 1 GiB transfer on loopback an agent stayed at 86 MB for the 4 s watched; with one full
 * collection it was at 76-77 MB one second after.
 */
export const SETTLE_AFTER_QUIET_MS = 1_000;
/**
 * A quiet agent whose V8 heap grew this much since the last settle is settled too, even if it
 * relayed few bytes: 5 s of new connections (each a socket, a stream and their events) grew the
 * heap from 28 to 50 MB and it stayed there.
 */
export const SETTLE_HEAP_GROWTH_BYTES = 8 * 1024 * 1024;
/**
 * Quiet means the event loop was busy at most this fraction of the last period. Bytes relayed are
 * no measure of it: new connections carrying a byte each kept the loop busy while moving ~50 KB/s.
 */
export const QUIET_LOOP_UTILIZATION = 0.05;
/**
 * A quiet agent whose resident memory grew this much since the last settle is settled too: new
 * connections grow glibc's heap (sockets, their read buffers) more than V8's.
 */
export const SETTLE_RSS_GROWTH_BYTES = 16 * 1024 * 1024;
/**
 * A check period in which the event loop was busy at least this fraction is a busy spell, and the
 * next quiet period settles, whatever was relayed or grew. Round trips and new connections move
 * few bytes and grow the heap and resident memory by less than the thresholds above: after 20k
 * round trips and 5 s of new connections on loopback, 4 agents in 7 were never settled and idled
 * at 70-75 MB; with this rule 6 in 6 settled, to 66-67 MB. A request now and then keeps the loop
 * far below this, so light traffic never sets off a full collection.
 */
export const BUSY_SPELL_LOOP_UTILIZATION = 0.2;

export type Collect = () => void;

let collect: Collect | null = null;
let settle: Collect | null = null;
let everyBytes = RECLAIM_EVERY_BYTES;
let quietMs = SETTLE_AFTER_QUIET_MS;
let bytesSinceCollect = 0;
let isScheduled = false;
let settleTimer: NodeJS.Timeout | undefined;
let isSettleDue = false;
let heapBytes: () => number = () => getHeapStatistics().total_heap_size;
let heapAfterSettle = 0;
let rssBytes: () => number = () => process.memoryUsage.rss();
let rssAfterSettle = 0;
let trim: MallocTrim | null = null;
let loopBusy: () => number = () => 0;

/** The event loop's busy fraction (0-1) since the previous call. */
function loopUtilizationSinceLastCall(): () => number {
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    return busy;
  };
}

/**
 * V8's minor collection, or null when this Node offers none. `--expose-gc` set at run time puts
 * `gc` into contexts created afterwards (not the main one, which exists already), so no launcher
 * has to pass the flag and nothing else in the process sees the function.
 */
export function loadMinorCollect(): Collect | null {
  return loadCollect('minor');
}

/**
 * Whether this V8 keeps the pages its collections free in a pool, still committed, and hands them
 * back to the system only in a memory-reducing collection: V8 12 and later (Node 22 and 24), where
 * Node 20's V8 11 decommits a freed page soon after the collection that freed it. An ordinary full
 * collection therefore shrinks the heap without shrinking the process: a test heap churned to
 * 61 MB and collected held 146 MB of pooled pages on Node 22 (195 MB resident) and 233 on Node 24
 * (289 MB), against 4.6 MB on Node 20 (49 MB resident).
 */
export function keepsFreedPagesPooled(v8Version: string = process.versions.v8): boolean {
  return Number.parseInt(v8Version, 10) >= 12;
}

/** The settle's collection for this V8 (see keepsFreedPagesPooled), or null; see loadMinorCollect. */
export function loadMajorCollect(): Collect | null {
  return loadCollect('major');
}

type GcOptions = { type: 'minor' } | { type: 'major'; execution: 'sync'; flavor: 'last-resort' };

function loadCollect(type: 'minor' | 'major'): Collect | null {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc !== 'function') return null;
    const gcWith = gc as (options?: GcOptions) => void;
    if (type === 'minor') return () => gcWith({ type });
    if (keepsFreedPagesPooled()) {
      // The last-resort flavour is V8's memory-reducing collection (CollectAllAvailableGarbage):
      // full collections until nothing more is freed, compacting, and then the page pool is
      // released. Two agents on loopback 8 s after bulk, round trips and new connections: 104-108
      // MB with the two collections below, 72-74 with this one (74-76 fresh) on Node 22; 93-96
      // against 73-76 on Node 24. It takes about 80 ms, only when the agent is quiet.
      return () => gcWith({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    }
    // Node 20: gc() with no options is the full collection that also compacts and gives pages back
    // (the old generation of a test heap went from 125 MB to 4 MB, against 31 MB with {type:
    // 'major'}; given the options above, this V8 runs a minor collection). Twice: what the first
    // one frees lets go of more (sockets' handles and their buffers are released by callbacks
    // after it), which only a second one collects. After round trips and new connections on
    // loopback, 4 agents settled with two idled at 64-68 MB, 4 with one at 64-71.
    // The second one evacuates every fragmented page (--compact-on-every-full-gc, only for that
    // call): V8 compacts a page only when it judges that worth it, and after a bench-like round on
    // loopback (iperf3 1 stream, -R, 4 streams, round trips, new connections) the agents' old
    // space kept 9.2-9.7 MB of pages for 7.0-7.2 MB of objects; compacted, 7.2-8.0 for 7.1-7.8,
    // and between workloads the agents settled at 59-61 and 62-64 MB instead of 61-63 and 63-66
    // (two runs each). It runs only when the agent is quiet, like the rest of the settle.
    return () => {
      gcWith();
      setFlagsFromString('--compact-on-every-full-gc');
      try {
        gcWith();
      } finally {
        setFlagsFromString('--no-compact-on-every-full-gc');
      }
    };
  } catch {
    return null;
  }
}

export interface BufferReclaimOptions {
  collect?: Collect | null;
  settle?: Collect | null;
  everyBytes?: number;
  quietMs?: number;
  /**
   * Runs after each settle: gives the memory that `free()` kept back to the system (glibc's
   * malloc_trim through the helper addon; null: none).
   */
  trim?: MallocTrim | null;
  /** The V8 heap's size now (injectable for tests). */
  heapBytes?: () => number;
  /** The process's resident memory now (injectable for tests). */
  rssBytes?: () => number;
  /** The event loop's busy fraction since the previous call (injectable for tests). */
  loopBusy?: () => number;
}

/**
 * Turns reclaiming on for this process (the agent does, at start); false when no collector exists.
 * `collect` runs every `everyBytes` relayed; `settle` once the event loop has been quiet for
 * `quietMs` after a collect, or after the heap grew by SETTLE_HEAP_GROWTH_BYTES.
 */
export function enableBufferReclaim(options: BufferReclaimOptions = {}): boolean {
  disableBufferReclaim();
  collect = options.collect === undefined ? loadMinorCollect() : options.collect;
  settle = options.settle === undefined ? loadMajorCollect() : options.settle;
  everyBytes = options.everyBytes ?? RECLAIM_EVERY_BYTES;
  quietMs = options.quietMs ?? SETTLE_AFTER_QUIET_MS;
  trim = options.trim === undefined ? loadMallocTrim() : options.trim;
  heapBytes = options.heapBytes ?? (() => getHeapStatistics().total_heap_size);
  rssBytes = options.rssBytes ?? (() => process.memoryUsage.rss());
  loopBusy = options.loopBusy ?? loopUtilizationSinceLastCall();
  bytesSinceCollect = 0;
  isSettleDue = false;
  if (settle !== null) {
    heapAfterSettle = heapBytes();
    rssAfterSettle = rssBytes();
    loopBusy();
    // one check a second for the life of the agent; it never keeps the process alive
    settleTimer = setInterval(checkSettle, quietMs);
    settleTimer.unref();
  }
  return collect !== null;
}

export function disableBufferReclaim(): void {
  collect = null;
  settle = null;
  trim = null;
  if (settleTimer !== undefined) clearInterval(settleTimer);
  settleTimer = undefined;
}

/**
 * The data path reports bytes it moved; once RECLAIM_EVERY_BYTES have passed, one collection runs
 * after the current I/O callbacks (setImmediate), never inside a caller's stack.
 */
export function noteRelayedBytes(bytes: number): void {
  if (collect === null) return;
  bytesSinceCollect += bytes;
  if (bytesSinceCollect < everyBytes || isScheduled) return;
  isScheduled = true;
  setImmediate(() => {
    isScheduled = false;
    bytesSinceCollect = 0;
    collect?.();
    isSettleDue = true;
  });
}

/**
 * Settles once traffic is quiet, if a collect ran, the loop had a busy spell, or the V8 heap or the
 * resident memory grew since the last settle: two full collections, then (when the helper is
 * there) malloc_trim, which hands back the freed memory glibc keeps in the middle of its heap. All
 * run only while the agent is idle, so their 25-60 ms never sit on the data path.
 */
function checkSettle(): void {
  if (settle === null) return;
  const busy = loopBusy();
  if (busy >= BUSY_SPELL_LOOP_UTILIZATION) isSettleDue = true;
  if (busy > QUIET_LOOP_UTILIZATION) return;
  if (!isSettleDue && heapBytes() - heapAfterSettle < SETTLE_HEAP_GROWTH_BYTES && rssBytes() - rssAfterSettle < SETTLE_RSS_GROWTH_BYTES) return;
  isSettleDue = false;
  settle();
  trim?.();
  heapAfterSettle = heapBytes();
  rssAfterSettle = rssBytes();
}

/** Whether settling also hands freed malloc memory back (the helper addon loaded). */
export function isMallocTrimEnabled(): boolean {
  return trim !== null;
}
