import type { Logger } from 'pino';

/** A child logger, made on first use. */
export type LazyLog = () => Logger;

/**
 * Per-connection context for log lines, without pino's child() on every connection: child()
 * serializes its bindings (and runs redaction) at once, which was ~5% of the agent's CPU at
 * ~900 new connections per second, while most connections never log a line.
 */
export function lazyChild(parent: Logger | LazyLog, bindings: () => Record<string, unknown>): LazyLog {
  let child: Logger | undefined;
  return () => (child ??= (typeof parent === 'function' ? parent() : parent).child(bindings()));
}
