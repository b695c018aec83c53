import type { Logger } from 'pino';
import { ErrorCodes, MeshError, toMeshError } from '../errors.js';
import { systemClock } from '../util/clock.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { openFrame, resetFrame, type StreamFrame } from '../wire/index.js';
import { EARLY_DATA_BYTES, MAX_WIRE_WINDOW_BYTES, resolveMuxConfig } from './config.js';
import type { MuxConfig } from './config.js';
import { MuxStream } from './stream.js';

/** Longest service name in an open frame (a DNS name; src/wire/frames.ts enforces the same). */
const MAX_SERVICE_LENGTH = 253;

export interface StreamOpenInfo {
  service: string;
  port: number;
}

export interface MuxSessionInit {
  /** Hands one frame to the tunnel (FrameChannel.send). If it throws, the session is destroyed. */
  send(frame: StreamFrame): void;
  /** The tunnel's queued bytes (FrameChannel.bufferedBytes), compared with tunnelHighWaterBytes. */
  bufferedBytes(): number;
  /** The tunnel's initiator opens odd stream ids and the responder even ones (as in yamux). */
  isInitiator: boolean;
  config?: Partial<MuxConfig>;
  logger: Logger;
  /** For the close() deadline; default systemClock. */
  clock?: Clock;
  /**
   * A peer opened a stream. The handler must call stream.accept() or stream.reject(code, message)
   * (it may do so later) and must listen for 'error'. If it throws, the stream is rejected.
   */
  onStream(stream: MuxStream, open: StreamOpenInfo): void;
  /**
   * The peer broke the protocol in a way that makes the whole tunnel untrustworthy (MESH_ERR_PROTOCOL),
   * or handling a frame threw unexpectedly (MESH_ERR_INTERNAL). The owner should close the tunnel.
   */
  onProtocolError(err: MeshError): void;
}

export interface MuxSessionStats {
  streamCount: number;
  /** Bytes held in all streams (unread incoming plus unsent outgoing). */
  bufferedBytes: number;
  /** Sum of all receive windows: the most the peer can make us buffer ("per-peer buffering"). */
  recvWindowBytes: number;
}

type SessionState = 'open' | 'closing' | 'destroyed';

function isUint32(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_WIRE_WINDOW_BYTES;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value.slice(0, 32)}${value.length > 32 ? '…' : ''}'`;
  if (typeof value === 'number') return String(value);
  return typeof value;
}

/**
 * The streams of one tunnel (js-libp2p-yamux `YamuxMuxer`). It owns the stream table (a Map by id),
 * assigns ids, applies the session-wide limits and routes incoming frames; flow control lives in
 * each MuxStream. It knows nothing of the tunnel beyond the `send`/`bufferedBytes` callbacks.
 */
export class MuxSession {
  readonly config: MuxConfig;

  readonly #init: MuxSessionInit;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #streams = new Map<number, MuxStream>();
  #nextLocalId: number;
  /** Highest id the peer has opened; its ids must increase, so anything at or below it is past. */
  #lastPeerId = 0;
  /** Streams whose socket waits for the next turn, in the order they used up their quota. */
  #deferredReads: MuxStream[] = [];
  /** Set when the tunnel passed tunnelHighWaterBytes; cleared by onTunnelDrain() (#isTunnelCongested). */
  #isHoldingForDrain = false;
  /** onTunnelDrain()'s round-robin position: the id of the stream it resumed last. */
  #resumedLastId = 0;
  #recvWindowBytes = 0;
  #state: SessionState = 'open';
  #isSendBroken = false;
  #closePromise: Promise<void> | undefined;
  #resolveClose: (() => void) | undefined;
  #closeTimer: TimerHandle | undefined;
  // What every stream of this session calls back, made once: with new closures per stream, each
  // new connection met the data path's optimised code with a call target it had not seen ("wrong
  // call target") and threw it back to the interpreter.
  readonly #sendFrame = (frame: StreamFrame): void => this.#send(frame);
  readonly #isCongested = (): boolean => this.#isTunnelCongested();
  readonly #deferReads = (stream: MuxStream): void => this.#deferSocketReads(stream);
  readonly #reserveWindow = (extraBytes: number): boolean => {
    if (this.#recvWindowBytes + extraBytes > this.config.sessionMaxBufferedBytes) return false;
    this.#recvWindowBytes += extraBytes;
    return true;
  };
  readonly #onStreamClosed = (stream: MuxStream): void => this.#remove(stream);

  constructor(init: MuxSessionInit) {
    this.config = resolveMuxConfig(init.config);
    this.#init = init;
    this.#log = init.logger;
    this.#clock = init.clock ?? systemClock;
    this.#nextLocalId = init.isInitiator ? 1 : 2;
  }

  get streamCount(): number {
    return this.#streams.size;
  }

  get isOpen(): boolean {
    return this.#state === 'open';
  }

  stats(): MuxSessionStats {
    let bufferedBytes = 0;
    for (const stream of this.#streams.values()) bufferedBytes += stream.bufferedBytes;
    return { streamCount: this.#streams.size, bufferedBytes, recvWindowBytes: this.#recvWindowBytes };
  }

  /**
   * Opens a stream to `service:port` on the peer. The first EARLY_DATA_BYTES written go out at once
   * (early data); more waits for the peer's accept ('accepted');
   * a refusal arrives as an 'error' (StreamResetError with the peer's code). Throws
   * MESH_ERR_TUNNEL_CLOSED once closing, MESH_ERR_STREAM_LIMIT at maxStreams.
   */
  open(service: string, port: number): MuxStream {
    if (this.#state !== 'open') {
      throw new MeshError(ErrorCodes.TUNNEL_CLOSED, `mux open ${service}:${port}: the session is ${this.#state}`);
    }
    if (typeof service !== 'string' || service.length === 0 || service.length > MAX_SERVICE_LENGTH) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `mux open: service: expected 1..${MAX_SERVICE_LENGTH} characters, got ${describe(service)}`);
    }
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `mux open ${service}: port: expected 1..65535, got ${describe(port)}`);
    }
    if (this.#streams.size >= this.config.maxStreams) {
      throw new MeshError(ErrorCodes.STREAM_LIMIT, `mux open ${service}:${port}: ${this.#streams.size} streams open, at most maxStreams=${this.config.maxStreams}`);
    }
    const id = this.#nextLocalId;
    if (id > MAX_WIRE_WINDOW_BYTES) {
      throw new MeshError(ErrorCodes.STREAM_LIMIT, `mux open ${service}:${port}: stream ids of this tunnel are used up; reconnect`);
    }
    this.#nextLocalId += 2;
    const stream = this.#createStream(id, 'outbound', service, port, EARLY_DATA_BYTES);
    this.#send(openFrame(id, service, port, this.config.initialWindowBytes));
    return stream;
  }

  /** Routes one frame from the peer. Never throws: problems go to onProtocolError or to a stream. */
  handleFrame(frame: StreamFrame): void {
    if (this.#state === 'destroyed') return;
    try {
      this.#dispatch(frame);
    } catch (err) {
      // Not a peer error we know of: a bug here or in a stream consumer's handler. Report it rather
      // than let it escape into the tunnel's read loop.
      this.#log.error({ err }, 'mux: handling a frame threw');
      this.#protocolError(toMeshError(err, ErrorCodes.INTERNAL, 'mux: handling a frame'));
    }
  }

  /** The tunnel's buffer fell below its low-water mark: let held writes go. */
  onTunnelDrain(): void {
    this.#isHoldingForDrain = false;
    if (this.#state === 'destroyed') return;
    // Round robin: start after the stream resumed last before the tunnel filled up again. Starting
    // at the front of the map every time let the oldest busy streams refill the tunnel on each
    // drain while the later ones waited for a drain that left room over.
    const streams = [...this.#streams.values()];
    const resumedLast = streams.findIndex((s) => s.id === this.#resumedLastId);
    for (let i = 1; i <= streams.length; i++) {
      if (this.#isTunnelCongested()) return;
      const stream = streams[(resumedLast + i) % streams.length]!;
      this.#resumedLastId = stream.id;
      stream.resumeWrites();
    }
  }

  /**
   * Graceful: refuses new streams, ends our side of every stream and resolves when all of them are
   * finished, or destroys the session after closeTimeoutMs. Idempotent; later callers get the same
   * promise.
   */
  close(): Promise<void> {
    if (this.#closePromise !== undefined) return this.#closePromise;
    if (this.#state === 'destroyed') return Promise.resolve();
    this.#state = 'closing';
    this.#closePromise = new Promise<void>((resolve) => {
      this.#resolveClose = resolve;
    });
    this.#log.debug({ streams: this.#streams.size }, 'mux session closing');
    this.#closeTimer = this.#clock.setTimeout(() => {
      this.#closeTimer = undefined;
      this.destroy(
        new MeshError(ErrorCodes.TUNNEL_CLOSED, `mux close: ${this.#streams.size} streams still open after closeTimeoutMs=${this.config.closeTimeoutMs}`),
      );
    }, this.config.closeTimeoutMs);
    for (const stream of [...this.#streams.values()]) {
      if (stream.direction === 'inbound' && !stream.isAccepted) stream.reject(ErrorCodes.TUNNEL_CLOSED, 'tunnel closing');
      else if (!stream.writableEnded) stream.end();
    }
    this.#maybeClosed();
    return this.#closePromise;
  }

  /** Immediate: every stream errors with MESH_ERR_TUNNEL_CLOSED; no frames are sent. Idempotent. */
  destroy(err?: Error): void {
    if (this.#state === 'destroyed') return;
    this.#state = 'destroyed';
    if (this.#closeTimer !== undefined) {
      this.#clock.clearTimeout(this.#closeTimer);
      this.#closeTimer = undefined;
    }
    const streams = [...this.#streams.values()];
    this.#log.debug({ err, streams: streams.length }, 'mux session destroyed');
    for (const stream of streams) {
      const reason = err === undefined ? '' : `: ${err.message}`;
      stream.abort(
        new MeshError(ErrorCodes.TUNNEL_CLOSED, `stream ${stream.id} (${stream.service}:${stream.port}): tunnel closed${reason}`, {
          cause: err,
        }),
      );
    }
    this.#streams.clear();
    this.#recvWindowBytes = 0;
    this.#resolveClose?.();
    this.#resolveClose = undefined;
  }

  // ---- internals --------------------------------------------------------------------------------

  #dispatch(frame: StreamFrame): void {
    const kind: unknown = (frame as { kind?: unknown }).kind;
    const id = frame.streamId;
    if (!isUint32(id) || id === 0) {
      this.#protocolError(this.#violation(`${String(kind)} frame: streamId: expected 1..${MAX_WIRE_WINDOW_BYTES}, got ${describe(id)}`));
      return;
    }
    switch (frame.kind) {
      case 'open':
        this.#handleOpen(frame);
        return;
      case 'accept': {
        if (!isUint32(frame.window)) {
          this.#protocolError(this.#violation(`accept for stream ${id}: window: expected a uint32, got ${describe(frame.window)}`));
          return;
        }
        const stream = this.#streams.get(id);
        if (stream === undefined) {
          // Ours and already closed here: the accept crossed our reset; ignore it.
          if (this.#isOwnId(id) && id < this.#nextLocalId) return;
          this.#protocolError(this.#violation(`accept for stream ${id}, which we did not open`));
          return;
        }
        if (stream.direction !== 'outbound') {
          this.#protocolError(this.#violation(`accept for stream ${id}, which the peer opened`));
          return;
        }
        if (!stream.handleAccept(frame.window)) {
          this.#protocolError(this.#violation(`second accept for stream ${id}`));
        }
        return;
      }
      case 'data': {
        if (!(frame.data instanceof Uint8Array)) {
          this.#protocolError(this.#violation(`data for stream ${id}: data: expected bytes, got ${describe(frame.data)}`));
          return;
        }
        this.#lookup(id, 'data')?.handleData(frame.data);
        return;
      }
      case 'window': {
        if (!isUint32(frame.credit) || frame.credit === 0) {
          this.#protocolError(this.#violation(`window for stream ${id}: credit: expected 1..${MAX_WIRE_WINDOW_BYTES}, got ${describe(frame.credit)}`));
          return;
        }
        this.#lookup(id, 'window')?.handleWindow(frame.credit);
        return;
      }
      case 'fin':
        this.#lookup(id, 'fin')?.handleFin();
        return;
      case 'reset': {
        const code = typeof frame.code === 'string' ? frame.code : '';
        const message = typeof frame.message === 'string' ? frame.message : '';
        this.#lookup(id, 'reset')?.handleReset(code, message);
        return;
      }
      default:
        this.#protocolError(this.#violation(`frame for stream ${id}: kind: expected a stream frame, got ${describe(kind)}`));
    }
  }

  #handleOpen(frame: Extract<StreamFrame, { kind: 'open' }>): void {
    const { streamId: id, service, port, window } = frame;
    if (typeof service !== 'string' || service.length === 0 || service.length > MAX_SERVICE_LENGTH) {
      this.#protocolError(this.#violation(`open for stream ${id}: service: expected 1..${MAX_SERVICE_LENGTH} characters, got ${describe(service)}`));
      return;
    }
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      this.#protocolError(this.#violation(`open for stream ${id}: port: expected 1..65535, got ${describe(port)}`));
      return;
    }
    if (!isUint32(window)) {
      this.#protocolError(this.#violation(`open for stream ${id}: window: expected a uint32, got ${describe(window)}`));
      return;
    }
    if (this.#isOwnId(id)) {
      const peerIds = this.#init.isInitiator ? 'even' : 'odd';
      this.#protocolError(this.#violation(`open for stream ${id}: wrong parity, the peer opens ${peerIds} ids`));
      return;
    }
    if (id <= this.#lastPeerId) {
      this.#protocolError(this.#violation(`open for stream ${id}: ids must increase, the last one was ${this.#lastPeerId}`));
      return;
    }
    this.#lastPeerId = id;
    if (this.#state !== 'open') {
      this.#send(resetFrame(id, ErrorCodes.TUNNEL_CLOSED, 'tunnel closing'));
      return;
    }
    if (this.#streams.size >= this.config.maxStreams) {
      this.#log.warn({ streamId: id, service, maxStreams: this.config.maxStreams }, 'incoming stream refused: stream limit');
      this.#send(resetFrame(id, ErrorCodes.STREAM_LIMIT, `${this.#streams.size} streams open, at most ${this.config.maxStreams}`));
      return;
    }
    const stream = this.#createStream(id, 'inbound', service, port, window);
    try {
      this.#init.onStream(stream, { service, port });
    } catch (err) {
      this.#log.error({ err, streamId: id, service }, 'onStream handler threw; rejecting the stream');
      stream.reject(ErrorCodes.INTERNAL, 'stream handler failed');
    }
  }

  #createStream(id: number, direction: 'outbound' | 'inbound', service: string, port: number, peerWindowBytes: number): MuxStream {
    const stream = new MuxStream({
      id,
      service,
      port,
      direction,
      config: this.config,
      // the stream adds streamId and service to its own lines: pino's child() serializes its
      // bindings at once, and per stream that was a few % of the agent's CPU at ~900 new
      // connections per second, for lines that are mostly never written
      logger: this.#log,
      peerWindowBytes,
      sendFrame: this.#sendFrame,
      isTunnelCongested: this.#isCongested,
      deferSocketReads: this.#deferReads,
      reserveWindowBytes: this.#reserveWindow,
      onClose: this.#onStreamClosed,
    });
    this.#streams.set(id, stream);
    this.#recvWindowBytes += stream.recvWindowBytes;
    this.#log.debug({ streamId: id, service, port, direction }, 'stream opened');
    return stream;
  }

  #remove(stream: MuxStream): void {
    if (this.#streams.get(stream.id) !== stream) return;
    this.#streams.delete(stream.id);
    this.#recvWindowBytes -= stream.recvWindowBytes;
    this.#maybeClosed();
  }

  #maybeClosed(): void {
    if (this.#state !== 'closing' || this.#streams.size > 0) return;
    if (this.#closeTimer !== undefined) {
      this.#clock.clearTimeout(this.#closeTimer);
      this.#closeTimer = undefined;
    }
    // Nothing left to carry: the session is done, and later frames are ignored.
    this.#state = 'destroyed';
    this.#log.debug('mux session closed');
    this.#resolveClose?.();
    this.#resolveClose = undefined;
  }

  /** A stream that is not in the table: past ids are ignored (frames in flight), unknown ones are fatal. */
  #lookup(id: number, kind: string): MuxStream | undefined {
    const stream = this.#streams.get(id);
    if (stream !== undefined) return stream;
    const isPast = this.#isOwnId(id) ? id < this.#nextLocalId : id <= this.#lastPeerId;
    if (isPast) {
      this.#log.trace({ streamId: id, kind }, 'frame for a closed stream ignored');
      return undefined;
    }
    this.#protocolError(this.#violation(`${kind} for stream ${id}, which was never opened`));
    return undefined;
  }

  /**
   * The next turn (setImmediate: after this turn's I/O callbacks, so after every socket that was
   * ready had its read) resumes the deferred sockets in the order they stopped.
   */
  #deferSocketReads(stream: MuxStream): void {
    this.#deferredReads.push(stream);
    if (this.#deferredReads.length > 1) return;
    setImmediate(() => {
      const streams = this.#deferredReads;
      this.#deferredReads = [];
      for (const s of streams) s.resumeSocketReads();
    });
  }

  #isOwnId(id: number): boolean {
    return (id % 2 === 1) === this.#init.isInitiator;
  }

  /**
   * Congested from the moment the tunnel passes its high-water mark until its drain (the low-water
   * mark), not merely while it is above the high-water mark. Without the latch, a stream that was
   * not holding (it got credit, or its socket had not been paused yet) took the room that opened
   * below the mark before the drain came, while the held streams waited for the drain's round
   * robin: with iperf3 -P 4 through loopback agents the first stream got 0.61-0.67 Gbit/s and the
   * fourth 0.33-0.42 (25-36 % from a fair share) in every run.
   */
  #isTunnelCongested(): boolean {
    if (this.#isHoldingForDrain) return true;
    if (this.#init.bufferedBytes() <= this.config.tunnelHighWaterBytes) return false;
    this.#isHoldingForDrain = true;
    return true;
  }

  #send(frame: StreamFrame): void {
    if (this.#state === 'destroyed' || this.#isSendBroken) return;
    try {
      this.#init.send(frame);
    } catch (err) {
      // The tunnel is gone. Destroying from inside a stream's _write would re-enter it; defer.
      this.#isSendBroken = true;
      const e = toMeshError(err, ErrorCodes.TUNNEL_CLOSED, 'mux: sending a frame');
      queueMicrotask(() => this.destroy(e));
    }
  }

  #violation(detail: string): MeshError {
    return new MeshError(ErrorCodes.PROTOCOL, `mux: ${detail}`, { wireReason: 'mux-protocol' });
  }

  #protocolError(err: MeshError): void {
    this.#log.warn({ err }, 'mux protocol error');
    try {
      this.#init.onProtocolError(err);
    } catch (handlerErr) {
      this.#log.error({ err: handlerErr }, 'onProtocolError handler threw');
    }
  }
}
