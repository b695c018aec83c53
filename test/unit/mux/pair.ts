import { createHash } from 'node:crypto';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { MuxSession } from '../../../src/mux/index.js';
import type { MuxConfig, MuxStream, StreamOpenInfo } from '../../../src/mux/index.js';
import type { MeshError } from '../../../src/errors.js';
import type { Clock, TimerHandle } from '../../../src/util/clock.js';
import type { StreamFrame } from '../../../src/wire/index.js';

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** One end of an in-memory tunnel: what it sent, what it was told, and a settable tunnel buffer. */
export interface PairSide {
  session: MuxSession;
  /** Data bytes this side handed to the tunnel. */
  dataBytesSent: number;
  /** Every non-data frame this side sent, in order. */
  controlFrames: StreamFrame[];
  /** What bufferedBytes() reports (a fake tunnel buffer). */
  tunnelBuffered: number;
  inbound: MuxStream[];
  /** Errors of any stream of this side (inbound ones get a listener from the pair). */
  streamErrors: Error[];
  protocolErrors: MeshError[];
}

export interface PairOptions {
  configA?: Partial<MuxConfig>;
  configB?: Partial<MuxConfig>;
  clock?: Clock;
  /** Default: accept at once. */
  onStreamA?: (stream: MuxStream, open: StreamOpenInfo, side: PairSide) => void;
  onStreamB?: (stream: MuxStream, open: StreamOpenInfo, side: PairSide) => void;
  /** Called for each frame before it is delivered; return false to drop it. */
  tap?: (from: 'a' | 'b', frame: StreamFrame) => boolean | void;
}

export interface Pair {
  a: PairSide;
  b: PairSide;
  /** Frames queued but not yet delivered, both directions. */
  inFlight(): number;
}

/**
 * Two sessions whose `send` delivers to the other's handleFrame asynchronously (setImmediate), in
 * order, like a tunnel: a is the initiator (odd ids), b the responder.
 */
export function createPair(options: PairOptions = {}): Pair {
  const queues: Record<'a' | 'b', StreamFrame[]> = { a: [], b: [] };
  const scheduled: Record<'a' | 'b', boolean> = { a: false, b: false };
  const sides: Partial<Record<'a' | 'b', PairSide>> = {};

  const deliver = (to: 'a' | 'b'): void => {
    scheduled[to] = false;
    const frames = queues[to];
    queues[to] = [];
    for (const frame of frames) sides[to]!.session.handleFrame(frame);
  };

  const make = (name: 'a' | 'b'): PairSide => {
    const other = name === 'a' ? 'b' : 'a';
    const onStream = name === 'a' ? options.onStreamA : options.onStreamB;
    const side: PairSide = {
      session: undefined as unknown as MuxSession,
      dataBytesSent: 0,
      controlFrames: [],
      tunnelBuffered: 0,
      inbound: [],
      streamErrors: [],
      protocolErrors: [],
    };
    side.session = new MuxSession({
      isInitiator: name === 'a',
      logger: silentLogger(),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      config: (name === 'a' ? options.configA : options.configB) ?? {},
      bufferedBytes: () => side.tunnelBuffered,
      send: (frame) => {
        if (frame.kind === 'data') side.dataBytesSent += frame.data.length;
        else side.controlFrames.push(frame);
        if (options.tap?.(name, frame) === false) return;
        queues[other].push(frame);
        if (!scheduled[other]) {
          scheduled[other] = true;
          setImmediate(() => deliver(other));
        }
      },
      onStream: (stream, open) => {
        side.inbound.push(stream);
        stream.on('error', (err) => side.streamErrors.push(err));
        if (onStream) onStream(stream, open, side);
        else stream.accept();
      },
      onProtocolError: (err) => side.protocolErrors.push(err),
    });
    return side;
  };

  sides.a = make('a');
  sides.b = make('b');
  return { a: sides.a, b: sides.b, inFlight: () => queues.a.length + queues.b.length };
}

/** Lets setImmediate-delivered frames flow for `turns` event-loop turns. */
export async function turns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Waits until `cond()` holds, bounded by event-loop turns and wall time. */
export async function waitFor(cond: () => boolean, what: string, maxTurns = 20_000, timeoutMs = 10_000): Promise<void> {
  const start = performance.now();
  for (let i = 0; i < maxTurns; i++) {
    if (cond()) return;
    if (performance.now() - start > timeoutMs) break;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  if (!cond()) throw new Error(`timed out waiting for: ${what}`);
}

/** Resolves with the stream's error, or rejects if it ends/closes without one (bounded in time). */
export function nextError(stream: MuxStream, timeoutMs = 5000): Promise<Error> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stream ${stream.id}: no error within ${timeoutMs} ms`)), timeoutMs);
    stream.once('error', (err) => {
      clearTimeout(timer);
      resolve(err);
    });
  });
}

/** A clock that only moves when told to. */
export class FakeClock implements Clock {
  #nowMs = 0;
  #nextId = 1;
  readonly #timers = new Map<number, { atMs: number; fn: () => void }>();

  now(): number {
    return this.#nowMs;
  }
  monotonicMs(): number {
    return this.#nowMs;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#nextId++;
    this.#timers.set(id, { atMs: this.#nowMs + ms, fn });
    return { id };
  }
  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle.id as number);
  }
  get pendingTimers(): number {
    return this.#timers.size;
  }
  advance(ms: number): void {
    this.#nowMs += ms;
    for (const [id, timer] of [...this.#timers]) {
      if (timer.atMs <= this.#nowMs) {
        this.#timers.delete(id);
        timer.fn();
      }
    }
  }
}

/** Reads a stream to its end; resolves with the sha256 and length of what arrived. */
export function drain(stream: MuxStream): Promise<{ hash: string; length: number }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let length = 0;
    stream.on('data', (c: Buffer) => {
      h.update(c);
      length += c.length;
    });
    stream.once('end', () => resolve({ hash: h.digest('hex'), length }));
    stream.once('error', reject);
  });
}
