import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

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
 */
export const RECLAIM_EVERY_BYTES = 4 * 1024 * 1024;
/**
 * After traffic, once this long passes with less than RECLAIM_EVERY_BYTES / 16 relayed, one full
 * collection runs. Buffers that were still queued when a minor collection ran have moved to the old
 * generation, which V8 shrinks only much later: after a 1 GiB transfer on loopback an agent stayed
 * at 86 MB for the 4 s watched; with this it was at 76-77 MB one second after the transfer.
 */
export const SETTLE_AFTER_QUIET_MS = 1_000;

export type Collect = () => void;

let collect: Collect | null = null;
let settle: Collect | null = null;
let everyBytes = RECLAIM_EVERY_BYTES;
let quietMs = SETTLE_AFTER_QUIET_MS;
let bytesSinceCollect = 0;
let relayedBytes = 0;
let isScheduled = false;
let settleTimer: NodeJS.Timeout | undefined;
let relayedAtLastCheck = 0;

/**
 * V8's minor collection, or null when this Node offers none. `--expose-gc` set at run time puts
 * `gc` into contexts created afterwards (not the main one, which exists already), so no launcher
 * has to pass the flag and nothing else in the process sees the function.
 */
export function loadMinorCollect(): Collect | null {
  return loadCollect('minor');
}

/** V8's full (mark-compact) collection, or null; see loadMinorCollect. */
export function loadMajorCollect(): Collect | null {
  return loadCollect('major');
}

function loadCollect(type: 'minor' | 'major'): Collect | null {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc !== 'function') return null;
    // gc() with no options is the full collection that also compacts and gives pages back (the
    // old generation of a test heap went from 125 MB to 4 MB, against 31 MB with {type: 'major'})
    if (type === 'major') return () => (gc as () => void)();
    return () => (gc as (options: { type: 'minor' }) => void)({ type });
  } catch {
    return null;
  }
}

/**
 * Turns reclaiming on for this process (the agent does, at start); false when no collector exists.
 * `collect` runs every `everyBytes` relayed; `settle` once traffic has been quiet for `quietMs`.
 */
export function enableBufferReclaim(options: { collect?: Collect | null; settle?: Collect | null; everyBytes?: number; quietMs?: number } = {}): boolean {
  disableBufferReclaim();
  collect = options.collect === undefined ? loadMinorCollect() : options.collect;
  settle = options.settle === undefined ? loadMajorCollect() : options.settle;
  everyBytes = options.everyBytes ?? RECLAIM_EVERY_BYTES;
  quietMs = options.quietMs ?? SETTLE_AFTER_QUIET_MS;
  bytesSinceCollect = 0;
  return collect !== null;
}

export function disableBufferReclaim(): void {
  collect = null;
  settle = null;
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
  relayedBytes += bytes;
  if (bytesSinceCollect < everyBytes || isScheduled) return;
  isScheduled = true;
  setImmediate(() => {
    isScheduled = false;
    bytesSinceCollect = 0;
    collect?.();
    armSettle();
  });
}

/** Watches for the end of the traffic that made us collect; the timer runs only until it settles. */
function armSettle(): void {
  if (settle === null || settleTimer !== undefined) return;
  relayedAtLastCheck = relayedBytes;
  settleTimer = setInterval(() => {
    const recent = relayedBytes - relayedAtLastCheck;
    relayedAtLastCheck = relayedBytes;
    if (recent >= everyBytes / 16) return;
    clearInterval(settleTimer);
    settleTimer = undefined;
    settle?.();
  }, quietMs);
  settleTimer.unref();
}
