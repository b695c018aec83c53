import type { IncomingMessage, Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { createServer } from '../util/http.js';
import { defaultTunnelConfig } from './config.js';
import { listenTcp } from './listen.js';
import { AddressRateLimiter, sourceKey } from './rate-limiter.js';
import { NOISE_MAX_MESSAGE } from '../wire/index.js';

/**
 * The tunnel port: an HTTP server that upgrades exactly two paths to WebSocket (tunnel and join)
 * and answers everything else with a short refusal. Random bytes make node's HTTP parser fail and
 * the socket is destroyed; no request ever reaches the mesh before a Noise handshake.
 *
 * In front of it, per TCP connection (issue 5, hostile input): a token bucket per source address
 * and a bound on the connections one source has in their handshake (both 429, before any parsing),
 * and a deadline for becoming a WebSocket (SPEC §4's 10 s; node's own headersTimeout is checked
 * only every 30 s). Every refusal is reported to `onRefused` with its reason.
 */
export interface TunnelServerInit {
  host: string;
  port: number;
  /** path → handler for the upgraded socket */
  routes: Record<string, (ws: WebSocket, request: IncomingMessage) => void>;
  maxPendingHandshakes: number;
  /** How many upgraded sockets are still in their handshake (owned by the caller's handlers). */
  pendingHandshakes(): number;
  logger: Logger;
  /**
   * A connection that has not become a WebSocket (or been answered) this long after it was
   * accepted is cut (SPEC §4: the handshake must finish in 10 s; the Noise part has its own
   * deadline once upgraded). Default: defaultTunnelConfig.handshakeTimeoutMs.
   */
  handshakeTimeoutMs?: number;
  /** Per-source connection rate (AddressRateLimiter); defaults: defaultTunnelConfig. */
  handshakeRatePerSecond?: number;
  handshakeBurst?: number;
  /**
   * Connections one source may have open that are younger than handshakeTimeoutMs (so possibly
   * still in their handshake). Keeps one address from taking the global maxPendingHandshakes
   * slots that real peers need to reconnect. Default: defaultTunnelConfig.maxPendingPerSource.
   */
  maxPendingPerSource?: number;
  clock?: Clock;
  /** Called once for every connection refused before its handshake, e.g. to count it in metrics. */
  onRefused?(reason: TunnelRefusal, remoteAddress: string | undefined): void;
}

/**
 * Why a connection was refused before reaching the Noise handshake: `rate-limited` (429, its
 * source opened too many connections), `source-busy` (429, its source already has
 * maxPendingPerSource connections in their handshake), `busy` (503, too many handshakes in
 * progress), `not-found` (404, another upgrade path), `not-websocket` (426, plain HTTP),
 * `malformed-request` (400, bytes that are not HTTP) and `request-timeout` (no upgrade within the
 * deadline).
 */
export type TunnelRefusal = 'rate-limited' | 'source-busy' | 'busy' | 'not-found' | 'not-websocket' | 'malformed-request' | 'request-timeout';

/** Accept queue of the tunnel port (the kernel caps it at net.core.somaxconn, 4096 by default). */
export const TUNNEL_ACCEPT_BACKLOG = 4096;

export class TunnelServer {
  readonly #init: TunnelServerInit;
  /**
   * Accepts TCP connections and admits them to #http (which never listens itself): a refused
   * connection costs an accept, a write and a close, never an HTTP parser.
   */
  readonly #front: NetServer;
  readonly #http: Server;
  /** Every admitted socket until it closes (the HTTP server does not track injected ones). */
  readonly #sockets = new Set<Socket>();
  readonly #wss: WebSocketServer;
  readonly #clock: Clock;
  readonly #handshakeTimeoutMs: number;
  readonly #limiter: AddressRateLimiter;
  readonly #maxPendingPerSource: number;
  /** Each accepted socket's deadline: handshakeTimeoutMs after accept, cleared on close. */
  readonly #deadlines = new WeakMap<Duplex, TimerHandle>();
  /** Sockets accepted less than handshakeTimeoutMs ago, by source (sourceKey); empty sets are dropped. */
  readonly #young = new Map<string, Set<Duplex>>();
  readonly #upgraded = new WeakSet<Duplex>();
  readonly #refusals = new Map<TunnelRefusal, number>();
  #refusedBySource = 0;
  #isClosed = false;
  rejectedRequests = 0;

  constructor(init: TunnelServerInit) {
    this.#init = init;
    this.#clock = init.clock ?? systemClock;
    this.#handshakeTimeoutMs = init.handshakeTimeoutMs ?? defaultTunnelConfig.handshakeTimeoutMs;
    this.#limiter = new AddressRateLimiter(this.#clock, {
      ratePerSecond: init.handshakeRatePerSecond ?? defaultTunnelConfig.handshakeRatePerSecond,
      burst: init.handshakeBurst ?? defaultTunnelConfig.handshakeBurst,
    });
    this.#maxPendingPerSource = init.maxPendingPerSource ?? defaultTunnelConfig.maxPendingPerSource;
    this.#wss = new WebSocketServer({
      noServer: true,
      // One WebSocket message is one Noise message (≤ 65535 bytes); ws closes with 1009 above this
      // before buffering it (SPEC §4: bounded everything).
      maxPayload: NOISE_MAX_MESSAGE,
      perMessageDeflate: false,
      skipUTF8Validation: true,
    });
    this.#http = createServer((req, res) => {
      // A plain HTTP request on the tunnel port: say what this port is, accept nothing.
      this.#refused('not-websocket', req.socket);
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close', upgrade: 'websocket' });
      res.end('osmoda-mesh tunnel port: WebSocket upgrade required\n');
      req.socket.unref();
    });
    // No headersTimeout/requestTimeout here: node checks them only every connectionsCheckingInterval
    // (30 s), so half a header sent and then left hanging stayed open 30 s (SPEC §4 says 10 s), and
    // for connections injected by #front not at all. The deadline set in #onConnection is exact.
    this.#http.keepAliveTimeout = 1_000;
    this.#http.maxHeadersCount = 64;
    this.#front = createNetServer((socket) => this.#onConnection(socket));
    this.#http.on('clientError', (err, socket) => {
      this.#refused('malformed-request', socket);
      init.logger.debug({ err: err.message }, 'malformed request on the tunnel port');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      socket.destroy();
    });
    this.#http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
  }

  /**
   * Every TCP connection is a handshake attempt: it takes a token from its source's bucket, counts
   * against its source's pending connections (429 and close when either is used up), and gets a
   * deadline: not upgraded to a WebSocket by then, it is cut (once upgraded, the Noise handshake's
   * own deadline applies).
   */
  #onConnection(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    if (this.#isClosed) {
      socket.destroy();
      return;
    }
    const source = sourceKey(socket.remoteAddress);
    const young = this.#young.get(source);
    const refusal: TunnelRefusal | undefined = !this.#limiter.tryTake(socket.remoteAddress)
      ? 'rate-limited'
      : (young?.size ?? 0) >= this.#maxPendingPerSource
        ? 'source-busy'
        : undefined;
    if (refusal !== undefined) {
      this.#refused(refusal, socket);
      this.#refusedBySource++;
      if (this.#refusedBySource % 1000 === 1) {
        this.#init.logger.warn({ from: socket.remoteAddress, reason: refusal, refused: this.#refusedBySource }, 'too many connections from one source: refusing (429)');
      }
      // read and drop what the client sends, so the close is a FIN after the answer, not a reset
      socket.resume();
      socket.end('HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n', () => socket.destroy());
      return;
    }
    if (young === undefined) this.#young.set(source, new Set([socket]));
    else young.add(socket);
    this.#sockets.add(socket);
    const timer = this.#clock.setTimeout(() => {
      this.#deadlines.delete(socket);
      this.#forgetYoung(socket, source);
      if (this.#upgraded.has(socket)) return;
      this.#refused('request-timeout', socket);
      this.#init.logger.debug({ from: socket.remoteAddress, timeoutMs: this.#handshakeTimeoutMs }, 'no WebSocket upgrade within the handshake deadline: closing');
      socket.destroy();
    }, this.#handshakeTimeoutMs);
    this.#deadlines.set(socket, timer);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      const t = this.#deadlines.get(socket);
      if (t !== undefined) this.#clock.clearTimeout(t);
      this.#deadlines.delete(socket);
      this.#forgetYoung(socket, source);
    });
    this.#http.emit('connection', socket);
  }

  #forgetYoung(socket: Duplex, source: string): void {
    const young = this.#young.get(source);
    if (young === undefined) return;
    young.delete(socket);
    if (young.size === 0) this.#young.delete(source);
  }

  #refused(reason: TunnelRefusal, socket: Duplex): void {
    this.rejectedRequests++;
    this.#refusals.set(reason, (this.#refusals.get(reason) ?? 0) + 1);
    try {
      this.#init.onRefused?.(reason, (socket as Partial<Socket>).remoteAddress);
    } catch (err) {
      this.#init.logger.error({ err: (err as Error).message }, 'onRefused handler threw');
    }
  }

  /** Connections refused before their handshake, by reason (also reported through onRefused). */
  refusals(): Record<TunnelRefusal, number> {
    const out: Record<TunnelRefusal, number> = { 'rate-limited': 0, 'source-busy': 0, busy: 0, 'not-found': 0, 'not-websocket': 0, 'malformed-request': 0, 'request-timeout': 0 };
    for (const [reason, n] of this.#refusals) out[reason] = n;
    return out;
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    // from here the Noise handshake's own deadline applies (the route handler's)
    this.#upgraded.add(socket);
    const path = (req.url ?? '').split('?')[0] ?? '';
    const handler = this.#init.routes[path];
    if (handler === undefined) {
      this.#refused('not-found', socket);
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
      socket.destroy();
      return;
    }
    if (this.#init.pendingHandshakes() >= this.#init.maxPendingHandshakes) {
      this.#refused('busy', socket);
      this.#init.logger.warn({ pending: this.#init.pendingHandshakes() }, 'too many handshakes in progress: refusing a connection');
      socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\n\r\n');
      socket.destroy();
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      if (this.#isClosed) {
        ws.terminate();
        return;
      }
      handler(ws, req);
    });
  }

  listen(): Promise<{ host: string; port: number }> {
    // A deep accept queue: during a connection flood the event loop may fall behind for a moment,
    // and a full queue drops the handshakes of real peers too, which then wait out TCP's retry
    // backoff (seconds to a minute, seen in test/integration/abuse.test.ts on a loaded machine).
    // 4096 holds four seconds of a 1,000/s flood.
    return listenTcp(this.#front, this.#init.host, this.#init.port, 'tunnel listener', TUNNEL_ACCEPT_BACKLOG);
  }


  address(): { host: string; port: number } | undefined {
    const address = this.#front.address();
    if (address === null || typeof address === 'string') return undefined;
    return { host: address.address, port: address.port };
  }

  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    for (const client of this.#wss.clients) client.terminate();
    this.#wss.close();
    await new Promise<void>((resolve) => {
      this.#front.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
      this.#sockets.clear();
    });
  }
}
