import type WebSocket from 'ws';
import type { Logger } from 'pino';
import type { NoiseTransport } from '../crypto/noise/index.js';
import { ErrorCodes, MeshError, toMeshError } from '../errors.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import type { Random } from '../util/random.js';
import { noteRelayedBytes } from '../util/buffer-reclaim.js';
import { MAX_BATCH_BYTES, dataFrame, decodeBatch, encodeBatchParts, goawayFrame, pingFrame, pongFrame, rekeyFrame, type Frame, type FrameChannel } from '../wire/index.js';
import { CloseCodes, type TunnelConfig } from './config.js';
import { closeWs, toBytes } from './message-socket.js';

export interface TunnelInit {
  ws: WebSocket;
  transport: NoiseTransport;
  config: TunnelConfig;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** Human-readable path for status, e.g. "direct ws://10.0.0.2:18800/osmoda-mesh/v1 (dialled)". */
  path: string;
  /**
   * HandshakeResult.earlyMessages. They are read in a microtask after construction, before any
   * later message (socket events cannot run in between), so handlers attached in the same tick as
   * the constructor see their frames.
   */
  earlyMessages?: Uint8Array[];
}

export interface TunnelStats {
  rxBytes: number;
  txBytes: number;
  rttMs: number | null;
  lastHeardMs: number;
  bufferedBytes: number;
  rekeys: number;
}

const MAX_USER_PINGS = 16;
/** Bytes of frames one transport message carries (estimates are upper bounds; room for the envelope). */
const BATCH_ROOM = MAX_BATCH_BYTES - 32;
/** A data frame is split to fill a message only if at least this much of it fits. */
const MIN_SPLIT_BYTES = 512;

/** Size of a frame once encoded, rounded up: used to pack frames into batches without re-encoding. */
function frameSizeEstimate(frame: Frame): number {
  switch (frame.kind) {
    case 'data':
      return frame.data.length + 16;
    case 'gossip':
      return frame.records.reduce((n, r) => n + r.body.length + r.signature.length + 12, 16 + (frame.revocations?.length ?? 0) + 8);
    case 'renewal':
      return frame.cert.length + 16;
    case 'reset':
    case 'goaway':
      return frame.code.length + frame.message.length * 3 + 24;
    case 'open':
      return frame.service.length + 32;
    default:
      return 24;
  }
}

/**
 * One established, encrypted tunnel: every WebSocket binary message is one Noise transport message
 * carrying one Batch of frames (SPEC §2 tunnel). Handles keepalive, dead-peer detection and rekey
 * itself and passes all other frames up through FrameChannel.
 */
export class Tunnel implements FrameChannel {
  readonly path: string;
  readonly #ws: WebSocket;
  readonly #transport: NoiseTransport;
  readonly #config: TunnelConfig;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #logger: Logger;
  #pending: Frame[] = [];
  #pendingBytes = 0;
  #isFlushScheduled = false;
  #wasAboveHighWater = false;
  #isOpen = true;
  /** What the tunnel closed with, for onClose handlers registered after the close. */
  #closeError: Error | undefined;
  #frameHandler: (frame: Frame) => void = () => undefined;
  readonly #drainHandlers: (() => void)[] = [];
  readonly #closeHandlers: ((err: Error | undefined) => void)[] = [];
  #pingTimer: TimerHandle | undefined;
  #lastHeardMs: number;
  #lastSendRekeyMs: number;
  #outstandingPing: { id: number; sentAtMs: number } | undefined;
  #rttMs: number | null = null;
  /** Pings asked for by a user (`osmoda-mesh ping`), by id; bounded by MAX_USER_PINGS. */
  readonly #userPings = new Map<number, { sentAtMs: number; resolve: (rttMs: number) => void; reject: (err: Error) => void; timer: TimerHandle }>();
  #hasReceived = false;
  #rekeys = 0;
  #isReceiveRekeyPending = false;

  constructor(init: TunnelInit) {
    this.#ws = init.ws;
    this.#transport = init.transport;
    this.#config = init.config;
    this.#clock = init.clock;
    this.#random = init.random;
    this.#logger = init.logger;
    this.path = init.path;
    this.#lastHeardMs = this.#clock.monotonicMs();
    this.#lastSendRekeyMs = this.#lastHeardMs;
    this.#ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    this.#ws.on('close', (code, reason) => {
      const text = reason.toString('utf8');
      const errorCode = code === CloseCodes.TOO_BIG ? ErrorCodes.FRAME_TOO_LARGE : ErrorCodes.TUNNEL_CLOSED;
      this.#finish(
        code === CloseCodes.NORMAL || code === CloseCodes.GOING_AWAY
          ? undefined
          : new MeshError(errorCode, `peer closed the tunnel (${code}${text ? `: ${text}` : ''})`, { wireReason: text }),
      );
    });
    this.#ws.on('error', (err: Error & { code?: string }) => {
      // ws refuses a message over maxPayload before buffering it (close 1009)
      const code = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? ErrorCodes.FRAME_TOO_LARGE : ErrorCodes.TUNNEL_CLOSED;
      this.#finish(toMeshError(err, code, 'tunnel socket'));
    });
    this.#schedulePing();
    const early = init.earlyMessages ?? [];
    if (early.length > 0) queueMicrotask(() => early.forEach((message) => this.#onTransportMessage(message)));
  }

  get isOpen(): boolean {
    return this.#isOpen;
  }

  /**
   * True once a transport message from the peer decrypted. The XX initiator finishes its handshake
   * before the responder has checked the initiator's certificate, so only the responder's first
   * message proves the peer accepted us; until then the peer is shown as connecting, not up.
   */
  get isConfirmed(): boolean {
    return this.#hasReceived;
  }

  onFrame(handler: (frame: Frame) => void): void {
    this.#frameHandler = handler;
  }

  onDrain(handler: () => void): void {
    this.#drainHandlers.push(handler);
  }

  onClose(handler: (err: Error | undefined) => void): void {
    if (!this.#isOpen) {
      const err = this.#closeError;
      queueMicrotask(() => handler(err));
      return;
    }
    this.#closeHandlers.push(handler);
  }

  bufferedBytes(): number {
    return this.#ws.bufferedAmount + this.#pendingBytes;
  }

  stats(): TunnelStats {
    return {
      rxBytes: this.#transport.receivedBytes,
      txBytes: this.#transport.sentBytes,
      rttMs: this.#rttMs,
      lastHeardMs: this.#lastHeardMs,
      bufferedBytes: this.bufferedBytes(),
      rekeys: this.#rekeys,
    };
  }

  send(frame: Frame): void {
    if (!this.#isOpen) throw new MeshError(ErrorCodes.TUNNEL_CLOSED, 'tunnel is closed');
    this.#pending.push(frame);
    this.#pendingBytes += frameSizeEstimate(frame);
    // Full messages go at once. The rest waits for the end of this turn of the event loop
    // (setImmediate, after the I/O callbacks already due): data read from sockets in the same turn
    // then fills whole messages instead of trailing a small one after each 64 KiB read, which
    // halves the messages (and AEAD calls) of a bulk transfer. A lone request still goes out in
    // the same turn it was read.
    if (this.#pendingBytes >= BATCH_ROOM) this.#flush(false);
    if (this.#pending.length > 0 && !this.#isFlushScheduled) {
      this.#isFlushScheduled = true;
      setImmediate(() => this.#flush(true));
    }
    // Writers compare bufferedBytes() with the high-water mark right after this returns, and the
    // frames still waiting for the end of the turn count in it: if they put it over the mark, a
    // drain is owed even when the kernel then takes the whole batch at once and no send ever sees
    // the socket above the mark (a missed drain left streams holding reads forever). The deferred
    // flush's send callback, or one already in flight, runs #checkDrain.
    this.#noteIfAboveHighWater();
  }

  #noteIfAboveHighWater(): void {
    if (!this.#wasAboveHighWater && this.bufferedBytes() > this.#config.highWaterBytes) this.#wasAboveHighWater = true;
  }

  /** Packs pending frames into messages and sends them; only full ones unless `isFinal`. */
  #flush(isFinal: boolean): void {
    if (isFinal) this.#isFlushScheduled = false;
    if (!this.#isOpen) return;
    try {
      while (this.#pending.length > 0) {
        if (!isFinal && this.#pendingBytes < BATCH_ROOM) return;
        const frames = this.#takeBatch();
        this.#sendBatch(frames);
      }
      this.#pendingBytes = 0;
    } catch (err) {
      this.destroy(toMeshError(err, ErrorCodes.INTERNAL, 'tunnel send'));
    }
  }

  /** The next message's frames, in order; a data frame that does not fit is split to fill it. */
  #takeBatch(): Frame[] {
    const pending = this.#pending;
    let size = 8;
    let count = 0;
    let head: Frame | undefined;
    while (count < pending.length) {
      const next = pending[count]!;
      const estimate = frameSizeEstimate(next);
      if (count === 0 || size + estimate <= BATCH_ROOM) {
        size += estimate;
        this.#pendingBytes -= estimate;
        count++;
        continue;
      }
      const room = BATCH_ROOM - size - 16;
      if (next.kind === 'data' && room >= MIN_SPLIT_BYTES && next.data.length > room) {
        head = dataFrame(next.streamId, next.data.subarray(0, room));
        pending[count] = dataFrame(next.streamId, next.data.subarray(room));
        this.#pendingBytes -= room;
      }
      break;
    }
    const frames = pending.splice(0, count);
    if (head !== undefined) frames.push(head);
    return frames;
  }

  #sendBatch(frames: Frame[]): void {
    const isRekeyDue =
      this.#transport.sentBytesSinceRekey >= this.#config.rekeyAfterBytes ||
      this.#clock.monotonicMs() - this.#lastSendRekeyMs >= this.#config.rekeyAfterMs;
    if (isRekeyDue) frames.push(rekeyFrame());
    const sealed = this.#transport.sealParts(encodeBatchParts(frames));
    noteRelayedBytes(sealed.length);
    this.#ws.send(sealed, { binary: true }, () => this.#checkDrain());
    if (isRekeyDue) {
      // the Rekey frame was the last one sealed under the old key; the peer switches after it too
      this.#transport.rekeySend();
      this.#lastSendRekeyMs = this.#clock.monotonicMs();
      this.#rekeys++;
      this.#logger.debug({ stage: 'rekey', direction: 'send' }, 'tunnel send key rotated');
    }
    this.#noteIfAboveHighWater();
  }

  #checkDrain(): void {
    if (this.#wasAboveHighWater && this.bufferedBytes() <= this.#config.lowWaterBytes) {
      this.#wasAboveHighWater = false;
      for (const handler of this.#drainHandlers) handler();
    }
  }

  #onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (!this.#isOpen) return;
    if (!isBinary) {
      this.destroy(new MeshError(ErrorCodes.PROTOCOL, 'tunnel: peer sent a text message', { wireReason: 'text message' }));
      return;
    }
    this.#onTransportMessage(toBytes(data));
  }

  #onTransportMessage(message: Uint8Array): void {
    if (!this.#isOpen) return;
    noteRelayedBytes(message.length);
    let frames: Frame[];
    try {
      frames = decodeBatch(this.#transport.open(message));
    } catch (err) {
      this.destroy(toMeshError(err, ErrorCodes.PROTOCOL, 'tunnel receive'));
      return;
    }
    this.#lastHeardMs = this.#clock.monotonicMs();
    this.#hasReceived = true;
    for (const frame of frames) {
      if (!this.#isOpen) return;
      switch (frame.kind) {
        case 'ping':
          this.send(pongFrame(frame.id));
          break;
        case 'pong': {
          const user = this.#userPings.get(frame.id);
          if (user !== undefined) {
            this.#userPings.delete(frame.id);
            this.#clock.clearTimeout(user.timer);
            user.resolve(Math.round((this.#clock.monotonicMs() - user.sentAtMs) * 1000) / 1000);
          }
          if (this.#outstandingPing?.id === frame.id) {
            this.#rttMs = Math.round((this.#clock.monotonicMs() - this.#outstandingPing.sentAtMs) * 1000) / 1000;
            this.#outstandingPing = undefined;
          }
          break;
        }
        case 'rekey':
          this.#isReceiveRekeyPending = true;
          break;
        case 'goaway':
          this.#logger.info({ code: frame.code, reason: frame.message }, 'peer is going away');
          this.destroy(new MeshError(ErrorCodes.TUNNEL_CLOSED, `peer went away: ${frame.message}`, { wireReason: frame.code }));
          return;
        default:
          try {
            this.#frameHandler(frame);
          } catch (err) {
            this.destroy(toMeshError(err, ErrorCodes.INTERNAL, 'frame handler'));
            return;
          }
      }
    }
    if (this.#isReceiveRekeyPending) {
      // the peer rotated its send key after the message that carried the Rekey frame
      this.#isReceiveRekeyPending = false;
      this.#transport.rekeyReceive();
      this.#rekeys++;
      this.#logger.debug({ stage: 'rekey', direction: 'receive' }, 'tunnel receive key rotated');
    }
  }

  #schedulePing(): void {
    this.#pingTimer = this.#clock.setTimeout(() => this.#onPingTimer(), this.#config.pingIntervalMs);
  }

  #onPingTimer(): void {
    if (!this.#isOpen) return;
    const silentMs = this.#clock.monotonicMs() - this.#lastHeardMs;
    if (silentMs >= this.#config.deadAfterMs) {
      this.#logger.warn({ silentMs: Math.round(silentMs) }, 'peer silent too long: tunnel down');
      this.destroy(new MeshError(ErrorCodes.TUNNEL_CLOSED, `peer silent for ${Math.round(silentMs / 1000)} s`, { wireReason: 'dead peer' }), CloseCodes.DEAD_PEER);
      return;
    }
    const id = Math.floor(this.#random.float() * 2 ** 48);
    this.#outstandingPing = { id, sentAtMs: this.#clock.monotonicMs() };
    try {
      this.send(pingFrame(id));
    } catch {
      return;
    }
    // check for silence more often than we ping, so a dead peer is seen soon after deadAfterMs
    this.#pingTimer = this.#clock.setTimeout(() => this.#onPingTimer(), Math.min(this.#config.pingIntervalMs, Math.max(100, this.#config.deadAfterMs - silentMs)));
  }

  /** One ping through the tunnel, resolving with the round trip in ms (PING_TIMEOUT after timeoutMs). */
  ping(timeoutMs: number): Promise<number> {
    if (!this.#isOpen) return Promise.reject(new MeshError(ErrorCodes.TUNNEL_CLOSED, 'tunnel is closed'));
    if (this.#userPings.size >= MAX_USER_PINGS) {
      return Promise.reject(new MeshError(ErrorCodes.INVALID_ARGUMENT, `at most ${MAX_USER_PINGS} pings may be in flight on one tunnel`));
    }
    return new Promise((resolve, reject) => {
      let id = Math.floor(this.#random.float() * 2 ** 48);
      while (this.#userPings.has(id)) id = (id + 1) % 2 ** 48;
      const timer = this.#clock.setTimeout(() => {
        this.#userPings.delete(id);
        reject(new MeshError(ErrorCodes.PING_TIMEOUT, `no pong within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#userPings.set(id, { sentAtMs: this.#clock.monotonicMs(), resolve, reject, timer });
      this.send(pingFrame(id));
    });
  }

  /** Sends a measuring ping now (used by `status` right after connect). */
  pingNow(): void {
    if (!this.#isOpen || this.#outstandingPing) return;
    const id = Math.floor(this.#random.float() * 2 ** 48);
    this.#outstandingPing = { id, sentAtMs: this.#clock.monotonicMs() };
    this.send(pingFrame(id));
  }

  /** Graceful: tells the peer, flushes, closes. */
  async close(code = 'shutdown', message = 'agent stopping'): Promise<void> {
    if (!this.#isOpen) return;
    try {
      this.send(goawayFrame(code, message));
      this.#flush(true);
    } catch {
      // closing anyway
    }
    const closed = new Promise<void>((resolve) => this.#closeHandlers.push(() => resolve()));
    closeWs(this.#ws, CloseCodes.NORMAL, message);
    this.#finish(undefined);
    await closed;
  }

  /** Immediate; idempotent. */
  destroy(err?: MeshError, closeCode?: number): void {
    if (!this.#isOpen) return;
    if (err) this.#logger.debug({ err: err.message, code: err.code }, 'tunnel destroyed');
    closeWs(this.#ws, closeCode ?? (err ? CloseCodes.PROTOCOL : CloseCodes.NORMAL), err?.wireReason ?? err?.message ?? 'closed');
    this.#ws.terminate();
    this.#finish(err);
  }

  #finish(err: Error | undefined): void {
    if (!this.#isOpen) return;
    this.#isOpen = false;
    this.#closeError = err;
    if (this.#pingTimer) this.#clock.clearTimeout(this.#pingTimer);
    this.#pending = [];
    this.#pendingBytes = 0;
    for (const ping of this.#userPings.values()) {
      this.#clock.clearTimeout(ping.timer);
      ping.reject(new MeshError(ErrorCodes.TUNNEL_CLOSED, 'tunnel closed before the pong arrived'));
    }
    this.#userPings.clear();
    for (const handler of this.#closeHandlers.splice(0)) handler(err);
  }
}
