import { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { ErrorCodes, MeshError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { MAX_TEXT_FIELD, acceptFrame, dataFrame, finFrame, resetFrame, windowFrame } from '../wire/index.js';
import type { StreamFrame } from '../wire/index.js';
import { EARLY_DATA_BYTES, type MuxConfig } from './config.js';
import { ReceiveWindow, SendCredit } from './credit-window.js';

/** Longest reset code the wire decoder accepts (src/wire/frames.ts `reset.code`). */
const MAX_RESET_CODE = 64;

export type StreamDirection = 'outbound' | 'inbound';

/**
 * What a stream gets from its session. The stream never imports the session (STYLE, js-libp2p-yamux
 * `YamuxStreamInit`): everything it needs arrives as callbacks.
 */
export interface MuxStreamInit {
  id: number;
  service: string;
  port: number;
  /** `outbound`: we opened it (session.open); `inbound`: the peer did (session onStream). */
  direction: StreamDirection;
  config: MuxConfig;
  logger: Logger;
  /** Send credit before any window frame: the peer's `open.window` for inbound, EARLY_DATA_BYTES for outbound. */
  peerWindowBytes: number;
  sendFrame(frame: StreamFrame): void;
  /**
   * True from the moment the tunnel held more than tunnelHighWaterBytes until its drain: data
   * waits for resumeWrites().
   */
  isTunnelCongested(): boolean;
  /**
   * The attached socket read its quota and is paused: the session calls resumeSocketReads() on the
   * next turn of the event loop, in the order of these calls.
   */
  deferSocketReads(stream: MuxStream): void;
  /**
   * Asks the session for `extraBytes` more receive window; false when its total cap would pass.
   * Called unbound (passed on to the receive window as it is).
   */
  reserveWindowBytes: (extraBytes: number) => boolean;
  /** Called once when the stream is finished or destroyed; the session forgets it. */
  onClose(stream: MuxStream): void;
}

export interface MuxStreamStats {
  /** Data bytes sent to the peer. */
  sentBytes: number;
  /** Data bytes received from the peer. */
  receivedBytes: number;
  /** Bytes we may still send before the peer grants more. */
  sendCredit: number;
  /** Our current receive window. */
  recvWindow: number;
  /** Bytes held in this stream: unread incoming plus unsent outgoing. */
  bufferedBytes: number;
}

/**
 * A stream was reset by the peer (or rejected before it was accepted). `code` is always
 * MESH_ERR_STREAM_RESET; the peer's own code (for example MESH_ERR_DIAL_FAILED, which forward uses
 * to fail over to another provider) is in `peerCode` and in `wireReason`.
 */
export class StreamResetError extends MeshError {
  readonly peerCode: string;
  readonly peerMessage: string;

  constructor(streamId: number, peerCode: string, peerMessage: string) {
    super(ErrorCodes.STREAM_RESET, `stream ${streamId}: reset by peer with ${peerCode || '(no code)'}: ${peerMessage}`, {
      wireReason: peerCode,
    });
    this.name = 'StreamResetError';
    this.peerCode = peerCode;
    this.peerMessage = peerMessage;
  }
}

interface PendingWrite {
  data: Uint8Array;
  offset: number;
  callback: (err?: Error | null) => void;
  /** A read of the attached socket (attach()), not a Duplex write: no copy, callback at once. */
  isSocketRead: boolean;
}

/** A stream that closed without carrying both directions to their end (attach(): socket gone). */
const SOCKET_CLOSED = 'the attached socket closed before the stream ended';

const noop = (): void => undefined;

/**
 * One TCP connection carried over a tunnel, as a node Duplex so that forward code can write
 * `socket.pipe(stream).pipe(socket)` and get real backpressure both ways:
 *
 * - writing: a chunk's callback is held until all of it went out within the peer's credit (and while
 *   the tunnel is below its high-water mark), so the writable side fills and pipe() pauses the socket;
 * - reading: credit is granted back only for bytes the consumer has taken (pushed − readableLength),
 *   so a consumer that stops reading stops the sender after at most one window.
 *
 * Errors: a local destroy(err) sends a reset carrying err's code; a peer reset (or reject) errors the
 * stream with StreamResetError; a peer overrunning our window errors it with MESH_ERR_WINDOW_EXCEEDED
 * and resets it. As with any node stream, the owner must listen for 'error' (pipeline() does).
 *
 * Events: 'accepted' (outbound, when the peer accepted; writes flow from then on).
 *
 * attach(socket) is the forwarder's path: the stream then moves bytes between the socket and the
 * tunnel itself, with the same credit rules, instead of through two pipe()s and the Duplex
 * buffers: one layer of Node stream machinery less per chunk and no pipe() set-up per connection.
 * Its credit is also stricter: only bytes the socket wrote out count as consumed.
 */
export class MuxStream extends Duplex {
  readonly id: number;
  readonly service: string;
  readonly port: number;
  readonly direction: StreamDirection;

  readonly #init: MuxStreamInit;
  readonly #log: Logger;
  /** The per-frame trace lines build an object per data frame: skip them unless trace is on. */
  readonly #isTracing: boolean;
  readonly #credit: SendCredit;
  readonly #recv: ReceiveWindow;
  /** 'pending' until accepted (outbound: accept frame arrived; inbound: accept() called). */
  #phase: 'pending' | 'open' = 'pending';
  #sentBytes = 0;
  #pushedBytes = 0;
  #isFinSent = false;
  #isFinReceived = false;
  /** Set once a reset went out, came in, or the tunnel is gone: no (further) reset to send. */
  #isResetDone = false;
  #pendingWrite: PendingWrite | undefined;
  #pendingFinal: ((err?: Error | null) => void) | undefined;
  /** Set by attach(): the socket this stream now reads from and writes to directly. */
  #socket: Duplex | undefined;
  #isSocketPaused = false;
  /** Bytes the attached socket gave since it last yielded (MuxConfig.socketReadQuotaBytes). */
  #readSinceYield = 0;
  /** Paused for the read quota, waiting for resumeSocketReads(). */
  #isQuotaPaused = false;

  constructor(init: MuxStreamInit) {
    super({ allowHalfOpen: true });
    this.#init = init;
    this.id = init.id;
    this.service = init.service;
    this.port = init.port;
    this.direction = init.direction;
    this.#log = init.logger;
    this.#isTracing = init.logger.isLevelEnabled('trace');
    this.#credit = new SendCredit(init.peerWindowBytes);
    this.#recv = new ReceiveWindow({
      initialWindowBytes: init.config.initialWindowBytes,
      maxWindowBytes: init.config.maxWindowBytes,
      // The opener announced its window in `open`; the acceptor grants its own only with `accept`,
      // and until then takes the opener's early data
      isOpen: init.direction === 'outbound',
      earlyBytes: init.direction === 'inbound' ? EARLY_DATA_BYTES : 0,
    });
  }

  /** True once data may flow (accepted by the peer, or accept() called here). */
  get isAccepted(): boolean {
    return this.#phase === 'open';
  }

  /** Current receive window; the session sums these for its cap. */
  get recvWindowBytes(): number {
    return this.#recv.windowBytes;
  }

  stats(): MuxStreamStats {
    return {
      sentBytes: this.#sentBytes,
      receivedBytes: this.#recv.receivedBytes,
      sendCredit: this.#credit.bytes,
      recvWindow: this.#recv.windowBytes,
      bufferedBytes: this.bufferedBytes,
    };
  }

  /** Bytes held for this stream: unread incoming plus unsent outgoing (attached: in the socket's buffer). */
  get bufferedBytes(): number {
    const duplexBytes = this.readableLength + this.writableLength;
    if (this.#socket === undefined) return duplexBytes;
    // a held socket read is not in writableLength: it never went through the Duplex
    const pending = this.#pendingWrite;
    const heldRead = pending?.isSocketRead === true ? pending.data.length - pending.offset : 0;
    return duplexBytes + this.#socket.writableLength + heldRead;
  }

  /**
   * Takes over `socket` for both directions: data frames are written to it and its reads are sent
   * as data frames, each end carried as a fin, with backpressure both ways (a full send credit or
   * tunnel pauses the socket; credit is granted back only for bytes the socket has written out).
   * Incoming bytes already buffered in the stream go out first; writes made through the Duplex
   * before finish first. `isSocketEnded`: the socket's end was already passed on with end().
   * The stream is destroyed once both fins crossed, and reset if the socket closes before that.
   * The owner still listens for 'error' on both.
   */
  attach(socket: Duplex, isSocketEnded = false): void {
    if (this.#socket !== undefined) throw new MeshError(ErrorCodes.INTERNAL, `stream ${this.id}: attached twice`);
    socket.pause();
    for (let chunk = this.read() as Buffer | null; chunk !== null; chunk = this.read() as Buffer | null) socket.write(chunk);
    this.#socket = socket;
    if (this.#isFinReceived) socket.end();
    socket.on('close', this.#onSocketClose);
    if (this.destroyed) return;
    this.#maybeFinished();
    if (isSocketEnded) return;
    socket.on('data', this.#onSocketData);
    socket.on('end', this.#onSocketEnd);
    // writes made before through the Duplex (early data held by a congested tunnel) go first:
    // an empty write completes only after them
    if (this.writableLength > 0 || this.#pendingWrite !== undefined) this.write(new Uint8Array(0), () => socket.resume());
    else socket.resume();
  }

  /** Acceptor side: takes the stream; sends `accept` with our window and lets held writes go. */
  accept(): void {
    if (this.direction !== 'inbound' || this.#phase !== 'pending' || this.destroyed) return;
    this.#phase = 'open';
    const window = this.#recv.open();
    this.#log.debug({ streamId: this.id, service: this.service }, 'stream accepted');
    this.#init.sendFrame(acceptFrame(this.id, window));
    this.#flush();
  }

  /**
   * Acceptor side: refuses the stream with a reset carrying `code` (for example MESH_ERR_DIAL_FAILED
   * or MESH_ERR_UNKNOWN_SERVICE), which the opener sees as StreamResetError.peerCode. The stream is
   * destroyed here without an 'error' event: the caller already knows why.
   */
  reject(code: string, message: string): void {
    if (this.direction !== 'inbound' || this.#phase !== 'pending' || this.destroyed) return;
    this.#sendReset(code, message);
    this.#log.debug({ streamId: this.id, service: this.service, code }, 'stream rejected');
    this.destroy();
  }

  // ---- called by the session for incoming frames ------------------------------------------------

  /** Outbound: the peer accepted with `windowBytes` of initial credit. False if this is not expected. */
  handleAccept(windowBytes: number): boolean {
    if (this.direction !== 'outbound' || this.#phase !== 'pending') return false;
    if (this.destroyed) return true;
    if (!this.#credit.grant(windowBytes)) {
      this.#fail(ErrorCodes.PROTOCOL, `accept: window ${windowBytes} is more than a uint32 window`);
      return true;
    }
    this.#phase = 'open';
    this.#log.debug({ streamId: this.id, service: this.service, windowBytes }, 'stream accepted by peer');
    this.emit('accepted');
    this.#flush();
    return true;
  }

  handleData(data: Uint8Array): void {
    if (this.destroyed) return;
    if (this.#isFinReceived) {
      this.#fail(ErrorCodes.PROTOCOL, `data: ${data.length} bytes after the peer's fin`);
      return;
    }
    if (data.length === 0) return;
    if (!this.#recv.receive(data.length)) {
      this.#fail(
        ErrorCodes.WINDOW_EXCEEDED,
        `data: ${data.length} bytes would pass the granted window (received ${this.#recv.receivedBytes} of ${this.#recv.limitBytes} allowed)`,
      );
      return;
    }
    if (this.#isTracing) this.#log.trace({ streamId: this.id, service: this.service, bytes: data.length }, 'data received');
    this.#pushedBytes += data.length;
    if (this.#socket !== undefined) this.#socket.write(data, this.#onSocketWritten);
    // push()'s return value is ignored on purpose: the window, not the readable high-water mark,
    // bounds what the peer can make us buffer.
    else this.push(data);
    this.#grantConsumed();
  }

  handleWindow(creditBytes: number): void {
    if (this.destroyed) return;
    if (!this.#credit.grant(creditBytes)) {
      this.#fail(ErrorCodes.PROTOCOL, `window: credit ${creditBytes} on top of ${this.#credit.bytes} passes a uint32 window`);
      return;
    }
    if (this.#isTracing) this.#log.trace({ streamId: this.id, service: this.service, creditBytes }, 'credit received');
    this.#flush();
  }

  handleFin(): void {
    if (this.destroyed || this.#isFinReceived) return;
    this.#isFinReceived = true;
    this.#log.trace({ streamId: this.id, service: this.service }, 'fin received');
    if (this.#socket === undefined) {
      this.push(null);
      return;
    }
    this.#socket.end();
    this.#maybeFinished();
  }

  handleReset(code: string, message: string): void {
    if (this.destroyed) return;
    this.#isResetDone = true;
    this.#log.debug({ streamId: this.id, service: this.service, code }, 'stream reset by peer');
    this.destroy(new StreamResetError(this.id, code, message));
  }

  /** The tunnel drained: retry held writes. */
  resumeWrites(): void {
    if (!this.destroyed) this.#flush();
  }

  /** The tunnel is gone: error the stream without trying to send a reset. */
  abort(err: Error): void {
    if (this.destroyed) return;
    this.#isResetDone = true;
    this.destroy(err);
  }

  // ---- node stream implementation ---------------------------------------------------------------

  override _write(chunk: Uint8Array, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (chunk.length === 0) {
      callback();
      return;
    }
    this.#pendingWrite = { data: chunk, offset: 0, callback, isSocketRead: false };
    this.#flush();
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#pendingFinal = callback;
    this.#flush();
  }

  override _read(): void {
    this.#grantConsumed();
  }

  /**
   * Every consumer path (pipe/flowing mode, read(), async iteration) goes through read(); checking
   * after it returns sees the bytes it just took. _read alone is not enough: node calls it before the
   * chunk leaves the buffer and not again until the next push, so a reader that drains the whole
   * window in one read() would never grant credit and both sides would wait forever.
   */
  override read(size?: number): unknown {
    const chunk: unknown = super.read(size);
    this.#grantConsumed();
    return chunk;
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const isClean = this.#isFinSent && this.#isFinReceived;
    if (!this.#isResetDone && !isClean) {
      // A local destroy while the peer may still send or read: tell it, with our reason.
      const code = err instanceof MeshError ? err.code : ErrorCodes.STREAM_RESET;
      const message = err === null ? 'stream destroyed' : err instanceof MeshError && err.wireReason !== undefined ? err.wireReason : err.message;
      this.#sendReset(code, message);
    }
    this.#isResetDone = true;
    this.#pendingWrite = undefined;
    this.#pendingFinal = undefined;
    this.#log.debug({ streamId: this.id, service: this.service, err: err ?? undefined, sentBytes: this.#sentBytes, receivedBytes: this.#recv.receivedBytes }, 'stream closed');
    this.#init.onClose(this);
    callback(err);
  }

  // ---- internals --------------------------------------------------------------------------------

  /**
   * Sends what credit and the tunnel allow; completes the held write and then the held fin. The
   * opener sends from the start (early data, within EARLY_DATA_BYTES of credit); the acceptor only
   * once it accepted.
   */
  #flush(): void {
    if (this.#phase !== 'open' && this.direction === 'inbound') return;
    const pending = this.#pendingWrite;
    if (pending !== undefined) {
      const { data } = pending;
      while (pending.offset < data.length) {
        if (this.destroyed || this.#init.isTunnelCongested()) return;
        const n = this.#credit.take(Math.min(data.length - pending.offset, this.#init.config.maxFrameDataBytes));
        if (n === 0) return;
        // A copy unless the sender is done with the bytes before the (deferred) callback: the writer
        // may reuse its buffer once the callback ran (MuxConfig.isZeroCopySend).
        const view = data.subarray(pending.offset, pending.offset + n);
        const payload = this.#init.config.isZeroCopySend || pending.isSocketRead ? view : new Uint8Array(view);
        pending.offset += n;
        this.#sentBytes += n;
        this.#init.sendFrame(dataFrame(this.id, payload));
      }
      if (this.#pendingWrite !== pending) return;
      this.#pendingWrite = undefined;
      if (this.#init.config.isZeroCopySend && !pending.isSocketRead) queueMicrotask(() => pending.callback());
      else pending.callback();
    }
    const final = this.#pendingFinal;
    if (final !== undefined && this.#pendingWrite === undefined && !this.destroyed) {
      this.#pendingFinal = undefined;
      // an attached stream sends its fin when the socket ends; a later end() (session close) has
      // nothing more to send
      if (!this.#isFinSent) {
        this.#isFinSent = true;
        this.#log.trace({ streamId: this.id, service: this.service }, 'fin sent');
        this.#init.sendFrame(finFrame(this.id));
      }
      final();
      this.#maybeFinished();
    }
  }

  // ---- attached socket (attach()) ---------------------------------------------------------------

  /** Socket reads go straight out within credit; the rest is held and the socket paused until sent. */
  readonly #onSocketData = (chunk: Buffer): void => {
    if (this.destroyed || chunk.length === 0) return;
    if (this.#isFinSent || this.#pendingFinal !== undefined) {
      this.destroy(new MeshError(ErrorCodes.STREAM_RESET, `stream ${this.id} (${this.service}:${this.port}): the socket sent data after the stream was ended`));
      return;
    }
    if (this.#pendingWrite !== undefined) {
      // a paused socket emits no data, and it stays paused while a read is held: never lose bytes
      // quietly if that ever changes
      this.destroy(new MeshError(ErrorCodes.INTERNAL, `stream ${this.id} (${this.service}:${this.port}): the socket sent data while paused`));
      return;
    }
    // a net.Socket gives a new buffer per read, so the frame may point into it (no copy)
    this.#pendingWrite = { data: chunk, offset: 0, callback: this.#onSocketChunkSent, isSocketRead: true };
    this.#flush();
    if (this.#pendingWrite !== undefined && !this.#isSocketPaused) {
      this.#isSocketPaused = true;
      this.#socket!.pause();
    }
    this.#readSinceYield += chunk.length;
    if (this.#readSinceYield >= this.#init.config.socketReadQuotaBytes && !this.#isSocketPaused) {
      // yield: the other sockets of this turn read before this one reads on
      this.#readSinceYield = 0;
      this.#isSocketPaused = true;
      this.#isQuotaPaused = true;
      this.#socket!.pause();
      this.#init.deferSocketReads(this);
    }
  };

  /** The next turn: the socket that yielded for its read quota reads on (unless a held read waits). */
  resumeSocketReads(): void {
    if (!this.#isQuotaPaused) return;
    this.#isQuotaPaused = false;
    if (this.destroyed || !this.#isSocketPaused || this.#pendingWrite !== undefined) return;
    this.#isSocketPaused = false;
    this.#socket!.resume();
  }

  /** The held socket read went out: read on. */
  readonly #onSocketChunkSent = (): void => {
    if (!this.#isSocketPaused) return;
    this.#isSocketPaused = false;
    this.#socket!.resume();
  };

  readonly #onSocketEnd = (): void => {
    if (this.destroyed || this.#isFinSent || this.#pendingFinal !== undefined) return;
    this.#pendingFinal = noop;
    this.#flush();
  };

  /** A write to the socket went out to the kernel: that is when the bytes count as consumed. */
  readonly #onSocketWritten = (): void => {
    this.#grantConsumed();
  };

  readonly #onSocketClose = (): void => {
    if (this.destroyed) return;
    // Both ways ended: a normal close. What the socket gave us may still wait for credit (a held
    // read, then our fin); it goes out, and the stream finishes when it has.
    const socket = this.#socket!;
    if (socket.readableEnded && socket.writableFinished) {
      this.#maybeFinished();
      return;
    }
    this.destroy(new MeshError(ErrorCodes.STREAM_RESET, `stream ${this.id} (${this.service}:${this.port}): ${SOCKET_CLOSED}`));
  };

  /** Both directions ended: the stream is done (the socket finishes writing on its own). */
  #maybeFinished(): void {
    if (this.#socket !== undefined && this.#isFinSent && this.#isFinReceived && !this.destroyed) this.destroy();
  }

  /** Grants credit back for what the consumer took, when an update is due. */
  #grantConsumed(): void {
    if (this.destroyed || this.#isFinReceived || !this.#recv.isOpen) return;
    const unread = this.#socket === undefined ? this.readableLength : this.readableLength + this.#socket.writableLength;
    this.#recv.setConsumed(this.#pushedBytes - unread);
    const credit = this.#recv.takeUpdate(this.#init.reserveWindowBytes);
    if (credit > 0) {
      if (this.#isTracing) this.#log.trace({ streamId: this.id, service: this.service, credit, windowBytes: this.#recv.windowBytes }, 'credit granted');
      this.#init.sendFrame(windowFrame(this.id, credit));
    }
  }

  #sendReset(code: string, message: string): void {
    this.#isResetDone = true;
    this.#init.sendFrame(resetFrame(this.id, code.slice(0, MAX_RESET_CODE), message.slice(0, MAX_TEXT_FIELD)));
  }

  /** A stream-level violation by the peer: reset this stream only, with `code`. */
  #fail(code: ErrorCode, detail: string): void {
    const err = new MeshError(code, `stream ${this.id} (${this.service}:${this.port}): ${detail}`, { wireReason: detail });
    this.#log.debug({ streamId: this.id, service: this.service, err }, 'stream failed');
    this.destroy(err);
  }
}
