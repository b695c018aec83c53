import type WebSocket from 'ws';
import { ErrorCodes, MeshError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { CloseCodes } from './config.js';

/**
 * The handshake phase's view of a WebSocket: await the next binary message, with a deadline.
 * Holds at most a few messages (a handshake has three): a peer that floods before the handshake is
 * done is closed, not buffered.
 */
export class MessageSocket {
  readonly ws: WebSocket;
  readonly #queue: Uint8Array[] = [];
  #waiter: { resolve: (m: Uint8Array) => void; reject: (e: Error) => void } | undefined;
  #failure: MeshError | undefined;
  readonly #onMessage: (data: WebSocket.RawData, isBinary: boolean) => void;
  readonly #onClose: (code: number, reason: Buffer) => void;
  readonly #onError: (err: Error) => void;

  constructor(ws: WebSocket) {
    this.ws = ws;
    this.#onMessage = (data, isBinary) => {
      if (!isBinary) return this.#fail(new MeshError(ErrorCodes.HANDSHAKE_FAILED, 'handshake: peer sent a text message', { wireReason: 'text message' }));
      if (this.#queue.length >= 4) return this.#fail(new MeshError(ErrorCodes.HANDSHAKE_FAILED, 'handshake: peer sent messages out of turn', { wireReason: 'out of turn' }));
      const bytes = toBytes(data);
      if (this.#waiter) {
        const w = this.#waiter;
        this.#waiter = undefined;
        w.resolve(bytes);
      } else this.#queue.push(bytes);
    };
    this.#onClose = (code, reason) => {
      const text = reason.toString('utf8');
      this.#fail(
        new MeshError(closeCodeToError(code), `peer closed the connection during the handshake (${code}${text ? `: ${text}` : ''})`, {
          wireReason: text,
        }),
      );
    };
    this.#onError = (err) => this.#fail(new MeshError(ErrorCodes.HANDSHAKE_FAILED, `handshake: ${err.message}`, { cause: err }));
    ws.on('message', this.#onMessage);
    ws.on('close', this.#onClose);
    ws.on('error', this.#onError);
  }

  #fail(err: MeshError): void {
    if (this.#failure) return;
    this.#failure = err;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w.reject(err);
    }
  }

  next(clock: Clock, deadlineMs: number): Promise<Uint8Array> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const wait = Math.max(0, deadlineMs - clock.monotonicMs());
      const timer = clock.setTimeout(() => {
        this.#waiter = undefined;
        reject(new MeshError(ErrorCodes.HANDSHAKE_TIMEOUT, `handshake did not finish within the deadline`, { wireReason: 'handshake timeout' }));
      }, wait);
      this.#waiter = {
        resolve: (m) => {
          clock.clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clock.clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  send(bytes: Uint8Array): void {
    if (this.#failure) throw this.#failure;
    this.ws.send(bytes, { binary: true });
  }

  /**
   * Stops listening; the socket is handed on to the tunnel (or closed by the caller). Returns the
   * messages that arrived after the last handshake message: the initiator's first transport
   * message follows its message 3 at once, and ws delivers both from one read before the awaiting
   * handshake code runs again. They belong to the tunnel (at most the few this queue holds).
   */
  detach(): Uint8Array[] {
    this.ws.off('message', this.#onMessage);
    this.ws.off('close', this.#onClose);
    this.ws.off('error', this.#onError);
    return this.#queue.splice(0);
  }

  /** Closes with a code and a short reason the peer can show (never secrets). */
  close(code: number, reason: string): void {
    this.#detachQuietly();
    closeWs(this.ws, code, reason);
  }

  #detachQuietly(): void {
    this.ws.off('message', this.#onMessage);
    this.ws.off('close', this.#onClose);
    this.ws.off('error', this.#onError);
    // keep an error listener: ws emits 'error' on a socket we are closing and would otherwise throw
    this.ws.on('error', () => undefined);
  }
}

export function toBytes(data: WebSocket.RawData): Uint8Array {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return new Uint8Array(data);
}

/** Close reasons are limited to 123 bytes by RFC 6455; longer ones are cut. */
export function closeWs(ws: WebSocket, code: number, reason: string): void {
  try {
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) {
      ws.close(code, Buffer.from(reason, 'utf8').subarray(0, 120).toString('utf8'));
      // a peer that never answers the close must not hold the socket
      setTimeout(() => ws.terminate(), 2000).unref();
    }
  } catch {
    ws.terminate();
  }
}

function closeCodeToError(code: number): (typeof ErrorCodes)[keyof typeof ErrorCodes] {
  if (code === CloseCodes.UNTRUSTED_PEER) return ErrorCodes.CERT_UNTRUSTED;
  if (code === CloseCodes.JOIN_REFUSED) return ErrorCodes.JOIN_FAILED;
  if (code === CloseCodes.HANDSHAKE_TIMEOUT) return ErrorCodes.HANDSHAKE_TIMEOUT;
  return ErrorCodes.HANDSHAKE_FAILED;
}
