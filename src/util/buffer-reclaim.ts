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

export type Collect = () => void;

let collect: Collect | null = null;
let everyBytes = RECLAIM_EVERY_BYTES;
let bytesSinceCollect = 0;
let isScheduled = false;

/**
 * V8's minor collection, or null when this Node offers none. `--expose-gc` set at run time puts
 * `gc` into contexts created afterwards (not the main one, which exists already), so no launcher
 * has to pass the flag and nothing else in the process sees the function.
 */
export function loadMinorCollect(): Collect | null {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc !== 'function') return null;
    return () => (gc as (options: { type: 'minor' | 'major' }) => void)({ type: 'minor' });
  } catch {
    return null;
  }
}

/** Turns reclaiming on for this process (the agent does, at start); false when no collector exists. */
export function enableBufferReclaim(options: { collect?: Collect | null; everyBytes?: number } = {}): boolean {
  collect = options.collect === undefined ? loadMinorCollect() : options.collect;
  everyBytes = options.everyBytes ?? RECLAIM_EVERY_BYTES;
  bytesSinceCollect = 0;
  return collect !== null;
}

export function disableBufferReclaim(): void {
  collect = null;
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
  });
}
