import { ErrorCodes, MeshError } from '../errors.js';
import type { Clock } from '../util/clock.js';

/**
 * Per-source token bucket for new connections on the tunnel port (SPEC §4 "bounded everything";
 * docs/SECURITY.md "Who can reach the tunnel port"). Every TCP connection is one handshake attempt:
 * it takes a token from its source's bucket, which refills at `ratePerSecond` up to `burst`. An
 * empty bucket refuses the connection before any HTTP parsing, WebSocket upgrade or Noise work, so a
 * flood from one address costs the agent an accept and a close, never an X25519 operation, and
 * cannot fill the global pending-handshake bound that real peers need.
 *
 * Sources are keyed by IPv4 address, and by /64 for IPv6 (one host usually owns a whole /64, so a
 * per-address key would give it 2^64 buckets). The table is bounded (`maxSources`): when full, the
 * least recently seen source is forgotten, which can only make the limiter more lenient to it.
 */

export interface RateLimiterConfig {
  /** Tokens added per second to each source's bucket. */
  ratePerSecond: number;
  /** Bucket size: how many attempts a source may make at once after being quiet. */
  burst: number;
  /** Sources tracked at once; the least recently seen is evicted beyond this. */
  maxSources: number;
}

export const defaultRateLimiterConfig: RateLimiterConfig = {
  // A node dials each peer once per reconnect (backoff 1-30 s), so 20 new connections a second
  // with a burst of 40 leaves room for a whole NATed site of nodes restarting at once.
  ratePerSecond: 20,
  burst: 40,
  maxSources: 10_000,
};

interface Bucket {
  tokens: number;
  lastMs: number;
}

export class AddressRateLimiter {
  readonly config: RateLimiterConfig;
  readonly #clock: Pick<Clock, 'monotonicMs'>;
  /** Insertion order is recency order: a touched source is moved to the end (LRU). */
  readonly #buckets = new Map<string, Bucket>();
  #refused = 0;

  constructor(clock: Pick<Clock, 'monotonicMs'>, partial: Partial<RateLimiterConfig> = {}) {
    const config = { ...defaultRateLimiterConfig, ...partial };
    for (const [key, value] of Object.entries(config)) {
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
        throw new MeshError(ErrorCodes.INVALID_CONFIG, `handshake rate limit ${key}: expected a positive number, got ${String(value)}`);
      }
    }
    this.config = config;
    this.#clock = clock;
  }

  /** Takes one token for `address`; false when its bucket is empty (refuse the attempt). */
  tryTake(address: string | undefined): boolean {
    const key = sourceKey(address);
    const nowMs = this.#clock.monotonicMs();
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.config.maxSources) {
        const oldest = this.#buckets.keys().next().value;
        if (oldest !== undefined) this.#buckets.delete(oldest);
      }
      bucket = { tokens: this.config.burst, lastMs: nowMs };
    } else {
      this.#buckets.delete(key);
      const refill = ((nowMs - bucket.lastMs) / 1000) * this.config.ratePerSecond;
      bucket.tokens = Math.min(this.config.burst, bucket.tokens + Math.max(0, refill));
      bucket.lastMs = nowMs;
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) {
      this.#refused++;
      return false;
    }
    bucket.tokens -= 1;
    return true;
  }

  /** Attempts refused so far. */
  get refused(): number {
    return this.#refused;
  }

  /** Sources currently tracked (bounded by maxSources). */
  get size(): number {
    return this.#buckets.size;
  }
}

/** IPv4 (also when IPv4-mapped) as is; IPv6 reduced to its /64 prefix. */
export function sourceKey(address: string | undefined): string {
  if (address === undefined || address.length === 0) return '?';
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(':')) return address;
  const zoneless = address.split('%')[0]!.toLowerCase();
  const [head = '', tail] = zoneless.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? headGroups : [...headGroups, ...new Array<string>(Math.max(0, 8 - headGroups.length - tailGroups.length)).fill('0'), ...tailGroups];
  return `${groups
    .slice(0, 4)
    .map((g) => (g === '' ? '0' : g.replace(/^0+(?=.)/, '')))
    .join(':')}::/64`;
}
