import { ErrorCodes, MeshError } from '../errors.js';
import { defaultRateLimiterConfig } from './rate-limiter.js';

/** Tunnel limits and timers (SPEC §4), each with its default and the reason for it. */
export interface TunnelConfig {
  /** A handshake that has not finished in this time is abandoned and the socket closed (SPEC §4). */
  handshakeTimeoutMs: number;
  /** A ping goes out this often; any message from the peer counts as a heartbeat. */
  pingIntervalMs: number;
  /** A peer silent this long is down: its streams fail fast and the tunnel is closed. */
  deadAfterMs: number;
  /** Each direction rekeys after this many bytes (SPEC §4: at least every 2^30 bytes). */
  rekeyAfterBytes: number;
  /** … or after this long (SPEC §4: at least every hour). */
  rekeyAfterMs: number;
  /** Above this many queued bytes, bufferedBytes() tells writers to wait (backpressure). */
  highWaterBytes: number;
  /** Below this many queued bytes after having been above high water, drain handlers run. */
  lowWaterBytes: number;
  /** Handshakes in progress at once on the server; more are refused with 503 (bounded work). */
  maxPendingHandshakes: number;
  /**
   * New connections per second one source address (IPv6: one /64) may open on the tunnel port;
   * more are refused with 429 before any upgrade or Noise work (AddressRateLimiter).
   */
  handshakeRatePerSecond: number;
  /** How many connections a quiet source may open at once before the rate applies. */
  handshakeBurst: number;
  /**
   * Connections from one source younger than handshakeTimeoutMs (possibly still handshaking);
   * more are refused with 429, so one address cannot hold all maxPendingHandshakes slots.
   */
  maxPendingPerSource: number;
}

export const defaultTunnelConfig: TunnelConfig = {
  handshakeTimeoutMs: 10_000,
  pingIntervalMs: 10_000,
  deadAfterMs: 30_000,
  rekeyAfterBytes: 2 ** 30,
  rekeyAfterMs: 3_600_000,
  // The mux holds stream writes while bufferedBytes() is above its own high-water mark and
  // resumes them on drain, so the two marks must be the same number (PeerManager passes this one
  // to the mux): a tunnel mark above the mux's would never report the drain the mux waits for.
  highWaterBytes: 4 * 1024 * 1024,
  lowWaterBytes: 1024 * 1024,
  maxPendingHandshakes: 64,
  handshakeRatePerSecond: defaultRateLimiterConfig.ratePerSecond,
  handshakeBurst: defaultRateLimiterConfig.burst,
  maxPendingPerSource: 16,
};

export function verifyTunnelConfig(partial: Partial<TunnelConfig> = {}): TunnelConfig {
  const config = { ...defaultTunnelConfig, ...partial };
  for (const [key, value] of Object.entries(config)) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `tunnel ${key}: expected a positive number, got ${String(value)}`);
    }
  }
  if (config.lowWaterBytes > config.highWaterBytes) {
    throw new MeshError(ErrorCodes.INVALID_CONFIG, `tunnel lowWaterBytes (${config.lowWaterBytes}) must not exceed highWaterBytes (${config.highWaterBytes})`);
  }
  if (config.deadAfterMs <= config.pingIntervalMs) {
    throw new MeshError(ErrorCodes.INVALID_CONFIG, `tunnel deadAfterMs (${config.deadAfterMs}) must exceed pingIntervalMs (${config.pingIntervalMs})`);
  }
  return config;
}

/** WebSocket close codes used by the agent (4000-4999 are for applications, RFC 6455 §7.4.2). */
export const CloseCodes = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  TOO_BIG: 1009,
  PROTOCOL: 4000,
  HANDSHAKE_FAILED: 4001,
  UNTRUSTED_PEER: 4002,
  JOIN_REFUSED: 4003,
  DUPLICATE: 4004,
  DEAD_PEER: 4005,
  HANDSHAKE_TIMEOUT: 4006,
} as const;
