import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { listenTcp } from './listen.js';
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
}

export class TunnelServer {
  readonly #init: TunnelServerInit;
  readonly #http: Server;
  readonly #wss: WebSocketServer;
  #isClosed = false;
  rejectedRequests = 0;

  constructor(init: TunnelServerInit) {
    this.#init = init;
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
      this.rejectedRequests++;
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close', upgrade: 'websocket' });
      res.end('osmoda-mesh tunnel port: WebSocket upgrade required\n');
      req.socket.unref();
    });
    this.#http.headersTimeout = 10_000;
    this.#http.requestTimeout = 10_000;
    this.#http.keepAliveTimeout = 1_000;
    this.#http.maxHeadersCount = 64;
    this.#http.on('clientError', (err, socket) => {
      this.rejectedRequests++;
      init.logger.debug({ err: err.message }, 'malformed request on the tunnel port');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      socket.destroy();
    });
    this.#http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '').split('?')[0] ?? '';
    const handler = this.#init.routes[path];
    if (handler === undefined) {
      this.rejectedRequests++;
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
      socket.destroy();
      return;
    }
    if (this.#init.pendingHandshakes() >= this.#init.maxPendingHandshakes) {
      this.rejectedRequests++;
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
