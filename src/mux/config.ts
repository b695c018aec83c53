import { ErrorCodes, MeshError } from '../errors.js';
import { MAX_DATA_FRAME } from '../wire/index.js';

/** Largest value a window or credit field can carry on the wire (`uint32` in proto/mesh.proto). */
export const MAX_WIRE_WINDOW_BYTES = 0xffff_ffff;

/**
 * Early data (protocol): the opener of a stream may send this many data bytes right after `open`,
 * before `accept` arrives, so a new connection costs no round trip. The acceptor buffers them
 * (they count against its window) and either accepts (its `accept.window` then grants the credit
 * beyond these bytes) or rejects (they are dropped). 64 KiB: a request or a TLS client hello fits.
 */
export const EARLY_DATA_BYTES = 64 * 1024;

/**
 * Limits of one mux session (the streams of one tunnel). Every limit states what happens when it is
 * reached (STYLE "Bounded everything").
 */
export interface MuxConfig {
  /**
   * Receive window each stream starts with: the most a peer may send before we have seen the
   * reader take anything. Default 256 KiB (yamux's initial window).
   */
  initialWindowBytes: number;
  /**
   * The receive window doubles, up to this, each time a window update is due while the reader keeps
   * up (yamux auto-tuning). Bounds what one stream can buffer when its reader stops. Default 4 MiB.
   */
  maxWindowBytes: number;
  /**
   * Windows stop growing when the sum of all streams' receive windows would pass this; the sum is the
   * most the peer can make us buffer (shown in status as per-peer buffering). Initial windows are
   * always granted, so with many streams the sum can exceed it; growth cannot. Default 64 MiB.
   */
  sessionMaxBufferedBytes: number;
  /**
   * Open streams per session (both directions). An incoming open over it is answered with a reset
   * MESH_ERR_STREAM_LIMIT (the tunnel stays up); a local open() over it throws. Default 1024.
   */
  maxStreams: number;
  /**
   * When the tunnel's bufferedBytes() is above this, streams hold their writes (backpressure reaches
   * the TCP sockets) until onTunnelDrain(). Control frames (window, fin, reset) are still sent.
   * Default 1 MiB.
   */
  tunnelHighWaterBytes: number;
  /**
   * An attached socket (MuxStream.attach) yields after each this many bytes it read: it pauses
   * and reads on at the next turn of the event loop, after the other sockets that were ready, in
   * the order the sockets yielded. libuv reads up to 32 x 64 KiB from a socket per readiness
   * event, so without it the socket that came first in a turn filled the tunnel and the others
   * found it congested: with `iperf3 -P 4` through loopback agents the first stream moved 1.5-2x
   * the fourth (10-23 % from a fair share); yielding every 512 KiB put them within 1-4 % of it in 3
   * alternating pairs, at the same total and one-stream throughput within the noise. Default 512
   * KiB.
   */
  socketReadQuotaBytes: number;
  /** Largest data payload this side puts in one frame. Default MAX_DATA_FRAME (fits one Noise message). */
  maxFrameDataBytes: number;
  /** close() waits this long for streams to finish, then destroys the session. Default 5000 ms. */
  closeTimeoutMs: number;
  /**
   * Hand written chunks to send() without copying them, and call the write callback one microtask
   * later. Only when no writer reuses a chunk's memory after its callback: the tunnel may still
   * hold the chunk, unsealed, until the end of the event-loop turn. The agent's writers are
   * net.Socket reads (a fresh buffer each) and the forwarder's early-data copies of them. Default
   * false (copy: any writer is safe).
   */
  isZeroCopySend: boolean;
}

export const defaultMuxConfig: Readonly<MuxConfig> = Object.freeze({
  initialWindowBytes: 256 * 1024,
  maxWindowBytes: 4 * 1024 * 1024,
  sessionMaxBufferedBytes: 64 * 1024 * 1024,
  maxStreams: 1024,
  tunnelHighWaterBytes: 1024 * 1024,
  socketReadQuotaBytes: 512 * 1024,
  maxFrameDataBytes: MAX_DATA_FRAME,
  closeTimeoutMs: 5000,
  isZeroCopySend: false,
});

/** Below this a window costs a round trip per few hundred bytes; no real deployment wants that. */
const MIN_WINDOW_BYTES = 1024;
/** Each side has half of the uint32 id space (odd/even). */
const MAX_STREAMS_LIMIT = 0x7fff_ffff;
/** Node's setTimeout fires at once for larger delays. */
const MAX_TIMEOUT_MS = 0x7fff_ffff;

function check(field: keyof MuxConfig, value: unknown, min: number, max: number, why = ''): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const got = typeof value === 'number' ? String(value) : typeof value;
    throw new MeshError(
      ErrorCodes.INVALID_CONFIG,
      `mux config: ${field}: expected an integer in ${min}..${max}${why}, got ${got}`,
    );
  }
}

/** Validates a complete config; throws MESH_ERR_INVALID_CONFIG naming the first bad field. */
export function verifyMuxConfig(config: MuxConfig): MuxConfig {
  check('maxWindowBytes', config.maxWindowBytes, MIN_WINDOW_BYTES, MAX_WIRE_WINDOW_BYTES, ' (uint32 on the wire)');
  check('initialWindowBytes', config.initialWindowBytes, MIN_WINDOW_BYTES, config.maxWindowBytes, ' (at most maxWindowBytes)');
  check(
    'sessionMaxBufferedBytes',
    config.sessionMaxBufferedBytes,
    config.initialWindowBytes,
    Number.MAX_SAFE_INTEGER,
    ' (at least initialWindowBytes)',
  );
  check('maxStreams', config.maxStreams, 1, MAX_STREAMS_LIMIT);
  check('tunnelHighWaterBytes', config.tunnelHighWaterBytes, 1, Number.MAX_SAFE_INTEGER);
  check('socketReadQuotaBytes', config.socketReadQuotaBytes, 1, Number.MAX_SAFE_INTEGER);
  check('maxFrameDataBytes', config.maxFrameDataBytes, 1, MAX_DATA_FRAME, ' (MAX_DATA_FRAME)');
  check('closeTimeoutMs', config.closeTimeoutMs, 0, MAX_TIMEOUT_MS);
  if (typeof config.isZeroCopySend !== 'boolean') {
    throw new MeshError(ErrorCodes.INVALID_CONFIG, `mux config: isZeroCopySend: expected true or false, got ${typeof config.isZeroCopySend}`);
  }
  return config;
}

/** Defaults overlaid with the given fields (undefined fields keep their default), then validated. */
export function resolveMuxConfig(partial: Partial<MuxConfig> = {}): MuxConfig {
  const merged: MuxConfig = { ...defaultMuxConfig };
  // Only known fields: a stray key from a JSON config must not ride along unvalidated.
  for (const key of Object.keys(defaultMuxConfig) as (keyof MuxConfig)[]) {
    const value = partial[key];
    if (value !== undefined) (merged as unknown as Record<string, unknown>)[key] = value;
  }
  return verifyMuxConfig(merged);
}
