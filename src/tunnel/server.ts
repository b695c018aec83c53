import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { defaultTunnelConfig } from './config.js';
import { listenTcp } from './listen.js';
import { AddressRateLimiter } from './rate-limiter.js';
import { NOISE_MAX_MESSAGE } from '../wire/index.js';

/**
 * The tunnel port: an HTTP server that upgrades exactly two paths to WebSocket (tunnel and join)
 * and answers everything else with a short refusal. Random bytes make node's HTTP parser fail and
 * the socket is destroyed; no request ever reaches the mesh before a Noise handshake.
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
  clock?: Clock;
  /** Called once for every connection refused before its handshake, e.g. to count it in metrics. */
  onRefused?(reason: TunnelRefusal, remoteAddress: string | undefined): void;
}

/**
 * Why a connection was refused before reaching the Noise handshake: `rate-limited` (429, its
 * source opened too many connections), `busy` (503, too many handshakes in progress),
 * `not-found` (404, another upgrade path), `not-websocket` (426, plain HTTP), `malformed-request`
 * (400, bytes that are not HTTP) and `request-timeout` (no upgrade within the deadline).
 */
export type TunnelRefusal = 'rate-limited' | 'busy' | 'not-found' | 'not-websocket' | 'malformed-request' | 'request-timeout';

export class TunnelServer {
  readonly #init: TunnelServerInit;
  readonly #http: Server;
  readonly #wss: WebSocketServer;
  readonly #clock: Clock;
  readonly #handshakeTimeoutMs: number;
  readonly #limiter: AddressRateLimiter;
  /** The HTTP-phase deadline of each accepted socket, until it is upgraded or closed. */
  readonly #deadlines = new WeakMap<Duplex, TimerHandle>();
  /** Sockets refused at accept: whatever the HTTP parser still makes of their bytes is ignored. */
  readonly #refusedSockets = new WeakSet<Duplex>();
  readonly #refusals = new Map<TunnelRefusal, number>();
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
    this.#wss = new WebSocketServer({
      noServer: true,
      // One WebSocket message is one Noise message (≤ 65535 bytes); ws closes with 1009 above this
      // before buffering it (SPEC §4: bounded everything).
      maxPayload: NOISE_MAX_MESSAGE,
      perMessageDeflate: false,
      skipUTF8Validation: true,
    });
    this.#http = createServer((req, res) => {
      if (this.#refusedSockets.has(req.socket)) {
        req.socket.destroy();
        return;
      }
      // A plain HTTP request on the tunnel port: say what this port is, accept nothing.
      this.#refused('not-websocket', req.socket);
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close', upgrade: 'websocket' });
      res.end('osmoda-mesh tunnel port: WebSocket upgrade required\n');
      req.socket.unref();
    });
    // node checks these only every connectionsCheckingInterval (30 s): a header sent byte by byte
    // then left hanging stayed open 30 s. The per-socket deadline set in #onConnection is exact.
    this.#http.headersTimeout = this.#handshakeTimeoutMs;
    this.#http.requestTimeout = this.#handshakeTimeoutMs;
    this.#http.keepAliveTimeout = 1_000;
    this.#http.maxHeadersCount = 64;
    this.#http.on('connection', (socket: Socket) => this.#onConnection(socket));
    this.#http.on('clientError', (err, socket) => {
      if (this.#refusedSockets.has(socket)) {
        socket.destroy();
        return;
      }
      this.#refused('malformed-request', socket);
      init.logger.debug({ err: err.message }, 'malformed request on the tunnel port');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      socket.destroy();
    });
    this.#http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
  }

  /**
   * Every TCP connection is a handshake attempt: it takes a token from its source's bucket (429
   * and close when there is none) and gets a deadline for becoming a WebSocket.
   */
  #onConnection(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    if (!this.#limiter.tryTake(socket.remoteAddress)) {
      this.#refusedSockets.add(socket);
      this.#refused('rate-limited', socket);
      if (this.#limiter.refused % 1000 === 1) {
        this.#init.logger.warn({ from: socket.remoteAddress, refused: this.#limiter.refused }, 'too many connections from one source: refusing (429)');
      }
      socket.end('HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n', () => socket.destroy());
      return;
    }
    const timer = this.#clock.setTimeout(() => {
      this.#deadlines.delete(socket);
      this.#refused('request-timeout', socket);
      this.#init.logger.debug({ from: socket.remoteAddress, timeoutMs: this.#handshakeTimeoutMs }, 'no WebSocket upgrade within the handshake deadline: closing');
      socket.destroy();
    }, this.#handshakeTimeoutMs);
    this.#deadlines.set(socket, timer);
    socket.once('close', () => this.#clearDeadline(socket));
  }

  #clearDeadline(socket: Duplex): void {
    const timer = this.#deadlines.get(socket);
    if (timer === undefined) return;
    this.#clock.clearTimeout(timer);
    this.#deadlines.delete(socket);
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
    const out: Record<TunnelRefusal, number> = { 'rate-limited': 0, busy: 0, 'not-found': 0, 'not-websocket': 0, 'malformed-request': 0, 'request-timeout': 0 };
    for (const [reason, n] of this.#refusals) out[reason] = n;
    return out;
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    if (this.#refusedSockets.has(socket)) {
      socket.destroy();
      return;
    }
    // from here the Noise handshake's own deadline applies (the route handler's)
    this.#clearDeadline(socket);
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
    return listenTcp(this.#http, this.#init.host, this.#init.port, 'tunnel listener');
  }


  address(): { host: string; port: number } | undefined {
    const address = this.#http.address();
    if (address === null || typeof address === 'string') return undefined;
    return { host: address.address, port: address.port };
  }

  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    for (const client of this.#wss.clients) client.terminate();
    this.#wss.close();
    await new Promise<void>((resolve) => {
      this.#http.close(() => resolve());
      this.#http.closeAllConnections();
    });
  }
}
