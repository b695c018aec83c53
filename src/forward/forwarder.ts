import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { ErrorCodes, toMeshError } from '../errors.js';
import type { MeshMetrics, MeshNode, Provider } from '../mesh/index.js';
import { EARLY_DATA_BYTES, type MuxStream } from '../mux/index.js';
import { findListeningProcess } from './process-finder.js';
import type { LocalServices } from './local-services.js';
import { lazyChild } from './lazy-log.js';
import { splice } from './splice.js';
import type { NatTable } from './nat-table.js';

/**
 * The client side of forward (SPEC §2, §4a bind mode): one listener on VIP:port for every port of
 * every mesh service; a connection opens a mux stream to a provider, which dials its target.
 * Several providers: spread round robin over the ones whose tunnel is up, and fail over to the
 * next when a provider rejects the stream (its target is down) or the tunnel is gone.
 */

/** Longer than the provider's own connect timeout (5 s), so its refusal normally arrives first. */
const ACCEPT_TIMEOUT_MS = 8_000;

export interface ForwarderInit {
  node: MeshNode;
  local: LocalServices;
  logger: Logger;
  metrics: MeshMetrics;
  /** nat mode (SPEC §4a): listen on 127.0.0.1 and DNAT VIP:port there; absent: bind mode. */
  nat?: NatTable;
}

interface Listener {
  key: string;
  service: string;
  vip: string;
  port: number;
  server: Server | undefined;
  /** nat mode: the 127.0.0.1 port the server listens on, which VIP:port is DNATed to. */
  localPort: number | null;
  problem: string | null;
  sockets: Set<Socket>;
}

export class Forwarder {
  readonly #init: ForwarderInit;
  readonly #listeners = new Map<string, Listener>();
  readonly #roundRobin = new Map<string, number>();
  #isClosed = false;
  /** nat mode: the last rule-set failure, shown as every listener's problem until a sync works. */
  #natProblem: string | null = null;

  constructor(init: ForwarderInit) {
    this.#init = init;
  }

  /** Makes the listeners match `wanted` (service → vip and ports); returns when binds settled. */
  async reconcile(wanted: { service: string; vip: string; ports: number[] }[]): Promise<void> {
    if (this.#isClosed) return;
    const keep = new Set<string>();
    const binds: Promise<void>[] = [];
    for (const entry of wanted) {
      for (const port of entry.ports) {
        const key = `${entry.vip}:${port}`;
        keep.add(key);
        const existing = this.#listeners.get(key);
        if (existing !== undefined && existing.service === entry.service && (existing.server !== undefined || existing.problem === null)) continue;
        if (existing !== undefined) this.#closeListener(existing);
        binds.push(this.#listen(entry.service, entry.vip, port));
      }
    }
    for (const [key, listener] of this.#listeners) if (!keep.has(key)) this.#closeListener(listener);
    await Promise.all(binds);
    await this.#syncNat();
  }

  /** nat mode: makes the DNAT rules match the bound listeners (one atomic nft run). */
  async #syncNat(): Promise<void> {
    const nat = this.#init.nat;
    if (nat === undefined || this.#isClosed) return;
    const rules = [...this.#listeners.values()]
      .filter((l) => l.localPort !== null)
      .map((l) => ({ vip: l.vip, port: l.port, localPort: l.localPort! }));
    try {
      await nat.apply(rules);
      if (this.#natProblem !== null) this.#init.logger.info({ table: nat.table, rules: rules.length }, 'nat rules installed again');
      this.#natProblem = null;
    } catch (err) {
      const message = toMeshError(err).message;
      if (this.#natProblem !== message) this.#init.logger.error({ table: nat.table, err: message }, 'nat rules not installed: mesh services unreachable by VIP on this node');
      this.#natProblem = message;
      this.#init.metrics.count('listener_failed_total', ErrorCodes.NAT_SETUP);
    }
  }

  /** Retries listeners that failed to bind (the port may have been freed). */
  async retryFailed(): Promise<void> {
    const failed = [...this.#listeners.values()].filter((l) => l.server === undefined);
    await Promise.all(
      failed.map((l) => {
        this.#listeners.delete(l.key);
        return this.#listen(l.service, l.vip, l.port);
      }),
    );
    if (failed.length > 0 || this.#natProblem !== null) await this.#syncNat();
  }

  problemsOf(service: string): string[] {
    const out: string[] = [];
    for (const l of this.#listeners.values()) {
      if (l.service !== service) continue;
      if (l.problem) out.push(l.problem);
      else if (this.#natProblem !== null && l.localPort !== null) out.push(`${l.vip}:${l.port}: ${this.#natProblem}`);
    }
    return out;
  }

  #listen(service: string, vip: string, port: number): Promise<void> {
    const key = `${vip}:${port}`;
    const listener: Listener = { key, service, vip, port, server: undefined, localPort: null, problem: null, sockets: new Set() };
    this.#listeners.set(key, listener);
    // allowHalfOpen: a client's FIN travels to the target as a fin and the answer still flows back
    // (splice); without it node ends our side at once and the stream is never consumed to its end
    const server = createServer({ noDelay: true, pauseOnConnect: true, allowHalfOpen: true }, (socket) => this.#onConnection(listener, socket));
    // nat mode: any free port on 127.0.0.1, which the DNAT rule (installed by #syncNat) points at
    const isNat = this.#init.nat !== undefined;
    const bindHost = isNat ? '127.0.0.1' : vip;
    return new Promise((resolve) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE' && !isNat) {
          const owner = findListeningProcess(port);
          listener.problem = `port ${port} on ${vip} is in use${owner ? ` by ${owner}` : ' by another process'} (it listens on 0.0.0.0:${port} or this VIP); ${service}:${port} is unreachable on this node`;
        } else {
          listener.problem = isNat ? `cannot listen on 127.0.0.1 for ${vip}:${port}: ${err.message}` : `cannot listen on ${vip}:${port}: ${err.message}`;
        }
        this.#init.metrics.count('listener_failed_total', err.code ?? 'error');
        this.#init.logger.warn({ service, vip, port, err: listener.problem }, 'service listener failed');
        resolve();
      });
      server.listen({ host: bindHost, port: isNat ? 0 : port, exclusive: true }, () => {
        listener.server = server;
        if (isNat) listener.localPort = (server.address() as { port: number }).port;
        this.#init.logger.debug({ service, vip, port, localPort: listener.localPort ?? undefined }, 'service listener up');
        resolve();
      });
    });
  }

  #closeListener(listener: Listener): void {
    this.#listeners.delete(listener.key);
    listener.server?.close();
    for (const socket of listener.sockets) socket.destroy();
  }

  /** Providers to try, in order: a local one first, then the up ones rotated for spread. */
  #candidates(service: string, port: number): Provider[] {
    const all = this.#init.node.providersOf(service).filter((p) => p.ports.includes(port));
    const local = all.filter((p) => p.isLocal);
    const up = all.filter((p) => !p.isLocal && p.state === 'up');
    const key = `${service}:${port}`;
    const turn = this.#roundRobin.get(key) ?? 0;
    this.#roundRobin.set(key, (turn + 1) % 1_000_000);
    const rotated = up.length === 0 ? [] : [...up.slice(turn % up.length), ...up.slice(0, turn % up.length)];
    return [...local, ...rotated];
  }

  #onConnection(listener: Listener, socket: Socket): void {
    listener.sockets.add(socket);
    socket.once('close', () => listener.sockets.delete(socket));
    socket.on('error', () => undefined);
    const log = lazyChild(this.#init.logger, () => ({ service: listener.service, port: listener.port }));
    const candidates = this.#candidates(listener.service, listener.port);
    // Early data: what the client sends before a provider accepts goes out with the open (no round
    // trip), and is kept (at most EARLY_DATA_BYTES, the early credit) so that it can be sent again
    // to the next provider if this one refuses.
    const early: Buffer[] = [];
    let earlyBytes = 0;
    let isClientEnded = false;
    let current: MuxStream | undefined;
    const onEarlyData = (chunk: Buffer): void => {
      early.push(chunk);
      earlyBytes += chunk.length;
      current?.write(chunk);
      if (earlyBytes >= EARLY_DATA_BYTES) socket.pause(); // more waits for the accept
    };
    const onEarlyEnd = (): void => {
      isClientEnded = true;
      current?.end();
    };
    let isReadingEarly = false;
    const startEarly = (): void => {
      if (isReadingEarly) return;
      isReadingEarly = true;
      socket.on('data', onEarlyData);
      socket.on('end', onEarlyEnd);
      socket.resume();
    };
    const stopEarly = (): void => {
      socket.off('data', onEarlyData);
      socket.off('end', onEarlyEnd);
    };
    const attempt = (index: number, lastError: string): void => {
      if (socket.destroyed) return;
      const provider = candidates[index];
      if (provider === undefined) {
        stopEarly();
        this.#init.metrics.count('forward_failed_total', ErrorCodes.NO_PROVIDER);
        log().warn({ reason: lastError }, 'no provider could take the connection: reset');
        socket.resetAndDestroy();
        return;
      }
      if (provider.isLocal) {
        if (early.length > 0 || isClientEnded) return attempt(index + 1, 'local provider skipped: the client already sent data to a remote one');
        const target = this.#init.local.target(listener.service, listener.port);
        if (target === undefined) return attempt(index + 1, 'not exposed locally on this port');
        const upstream = this.#init.local.dial(target);
        upstream.once('connect', () => {
          upstream.removeAllListeners('error');
          upstream.on('error', () => socket.resetAndDestroy());
          socket.on('error', () => upstream.destroy());
          socket.pipe(upstream).pipe(socket);
          socket.resume();
        });
        upstream.once('error', (err) => attempt(index + 1, err.message));
        return;
      }
      let stream: MuxStream;
      try {
        stream = this.#init.node.openStream(provider.nodeIdHex, listener.service, listener.port);
      } catch (err) {
        return attempt(index + 1, toMeshError(err).message);
      }
      current = stream;
      for (const chunk of early) stream.write(chunk);
      if (isClientEnded) stream.end();
      // after the replay, so a chunk read now is written once
      startEarly();
      let isAccepted = false;
      // a provider that neither accepts nor refuses (its target hangs in connect) is skipped
      const acceptTimer = setTimeout(() => stream.destroy(new Error(`no answer from ${provider.name} within ${ACCEPT_TIMEOUT_MS} ms`)), ACCEPT_TIMEOUT_MS);
      acceptTimer.unref();
      const onEarlyError = (err: Error): void => {
        clearTimeout(acceptTimer);
        if (isAccepted) return;
        if (current === stream) current = undefined;
        log().debug({ peer: provider.name, err: err.message }, 'provider refused the stream: trying the next');
        attempt(index + 1, err.message);
      };
      stream.once('error', onEarlyError);
      stream.once('accepted', () => {
        clearTimeout(acceptTimer);
        isAccepted = true;
        stream.off('error', onEarlyError);
        stopEarly();
        early.length = 0;
        this.#init.metrics.count('forward_streams_total', listener.service);
        splice(socket, stream, lazyChild(log, () => ({ peer: provider.name, streamId: stream.id })), isClientEnded);
      });
      socket.once('close', () => {
        if (!isAccepted) stream.destroy();
      });
    };
    attempt(0, 'no provider known');
  }

  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    for (const listener of [...this.#listeners.values()]) this.#closeListener(listener);
    if (this.#init.nat !== undefined) {
      try {
        await this.#init.nat.remove();
      } catch (err) {
        this.#init.logger.warn({ table: this.#init.nat.table, err: toMeshError(err).message }, 'nat table not removed');
      }
    }
  }
}
