import { describe, expect, it } from 'vitest';
import type { MuxStream } from '../../../src/mux/index.js';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { seededRandom } from '../../../src/util/random.js';
import type { Random } from '../../../src/util/random.js';
import type { StreamFrame } from '../../../src/wire/index.js';
import { rawSession } from './raw.js';
import { turns } from './pair.js';

const KINDS = ['open', 'accept', 'data', 'window', 'fin', 'reset'] as const;

function pick<T>(rnd: Random, items: readonly T[]): T {
  return items[Math.floor(rnd.float() * items.length)]!;
}

function int(rnd: Random, max: number): number {
  return Math.floor(rnd.float() * (max + 1));
}

/** Mostly plausible numbers, sometimes hostile ones. */
function number(rnd: Random, plausibleMax: number): number {
  if (rnd.float() < 0.85) return int(rnd, plausibleMax);
  return pick(rnd, [0, -1, 1.5, Number.NaN, Infinity, 2 ** 32, 2 ** 32 - 1, 2 ** 53, -(2 ** 31), 65536]);
}

function text(rnd: Random, maxLength: number): string {
  const length = rnd.float() < 0.1 ? 0 : int(rnd, maxLength);
  return String.fromCharCode(...Array.from({ length }, () => 32 + int(rnd, 90)));
}

/** Ids that hit live streams, the peer's next open, small neighbours, or hostile values. */
function randomFrame(rnd: Random, liveIds: readonly number[], peerNextId: () => number): StreamFrame {
  const kind = pick(rnd, KINDS);
  const r = rnd.float();
  let streamId: number;
  if (kind === 'open' && r < 0.7) streamId = peerNextId();
  else if (r < 0.6 && liveIds.length > 0) streamId = pick(rnd, liveIds);
  else if (r < 0.97) streamId = 1 + int(rnd, 64);
  else streamId = number(rnd, 10);
  switch (kind) {
    case 'open':
      return {
        kind: 'open',
        streamId,
        service: rnd.float() < 0.05 ? text(rnd, 300) : text(rnd, 12) || 'svc',
        port: number(rnd, 65535),
        window: number(rnd, 512 * 1024),
      };
    case 'accept':
      return { kind: 'accept', streamId, window: number(rnd, 512 * 1024) };
    case 'data': {
      // big ones pass the 64 KiB of early data a stream takes before accept, or a small window after
      const size = rnd.float();
      return { kind: 'data', streamId, data: new Uint8Array(size < 0.05 ? int(rnd, 140_000) : size < 0.3 ? int(rnd, 24_000) : int(rnd, 3000)) };
    }
    case 'window':
      return { kind: 'window', streamId, credit: number(rnd, 300_000) };
    case 'fin':
      return { kind: 'fin', streamId };
    case 'reset':
      return { kind: 'reset', streamId, code: text(rnd, 70), message: text(rnd, 50) };
  }
}

describe('mux session fuzz', () => {
  it.each([
    [0x5eed01, true],
    [0x5eed02, false],
  ])('20,000 arbitrary stream frames (seed %i, initiator %s) only ever yield MeshErrors', async (seed, isInitiator) => {
    const rnd = seededRandom(seed);
    const actions = seededRandom(seed ^ 0xffff);
    const streams: MuxStream[] = [];
    const streamErrors: unknown[] = [];
    const watch = (s: MuxStream): void => {
      streams.push(s);
      s.on('error', (e) => streamErrors.push(e));
    };
    const raw = rawSession({
      isInitiator,
      // windows start at the early-data allowance (64 KiB), so credit updates follow the usual half-window rule
      config: { maxStreams: 12, initialWindowBytes: 64 * 1024, maxWindowBytes: 256 * 1024, sessionMaxBufferedBytes: 800 * 1024 },
      onStream: (s) => {
        watch(s);
        const r = actions.float();
        if (r < 0.6) s.accept();
        else if (r < 0.75) s.reject(ErrorCodes.DIAL_FAILED, 'nope');
        else if (r < 0.8) s.destroy(new MeshError(ErrorCodes.DIAL_FAILED, 'gone'));
        // else: left pending
        if (actions.float() < 0.5) s.resume();
      },
    });
    let uncaught: unknown;
    let peerId = isInitiator ? 0 : -1; // the peer opens even ids against an initiator, odd otherwise
    for (let i = 0; i < 20_000; i++) {
      // Mix in local activity so frames meet streams in every state.
      const r = actions.float();
      try {
        if (r < 0.02 && raw.session.streamCount < 12) watch(raw.session.open('local', 1 + int(actions, 100)));
        else if (r < 0.1 && streams.length > 0) {
          // Only what a correct local user does (write-after-end is the user's error, not the peer's).
          const s = pick(actions, streams);
          if (s.writable) s.write(new Uint8Array(int(actions, 5000)));
        }
        else if (r < 0.11 && streams.length > 0) pick(actions, streams).end();
        else if (r < 0.12 && streams.length > 0) pick(actions, streams).read();
        else if (r < 0.125 && streams.length > 0) pick(actions, streams).destroy();
        else if (r < 0.13) raw.tunnelBuffered = actions.float() < 0.8 ? 0 : 2 * 1024 * 1024;
        else if (r < 0.14) raw.session.onTunnelDrain();
      } catch (err) {
        // Only open() may throw (stream limit), and only as a MeshError.
        expect(err, `seed ${seed} step ${i}`).toBeInstanceOf(MeshError);
      }
      const liveIds = streams.filter((st) => !st.destroyed).map((st) => st.id);
      const frame = randomFrame(rnd, liveIds, () => {
        peerId += 2 * (1 + int(rnd, 2)); // sometimes skips ids, which is allowed
        return peerId;
      });
      try {
        raw.session.handleFrame(frame);
        // now and then a burst on one stream, so streams live long enough to need credit updates
        // (a window starts at the 64 KiB early-data allowance)
        if (frame.kind === 'data' && rnd.float() < 0.6) for (let k = 0; k < 2; k++) raw.session.handleFrame({ ...frame, data: new Uint8Array(16_384) });
      } catch (err) {
        uncaught = err;
        break;
      }
      if (i % 50 === 0) await turns(1);
      if (streams.length > 200) streams.splice(0, 100);
    }
    await turns(5);
    expect(uncaught, `seed ${seed}: handleFrame threw`).toBeUndefined();
    for (const err of raw.protocolErrors) {
      expect(err).toBeInstanceOf(MeshError);
      // INTERNAL would mean a bug in the mux surfaced by the fuzzer.
      expect(err.code, `seed ${seed}: ${err.message}`).toBe(ErrorCodes.PROTOCOL);
    }
    for (const err of streamErrors) expect(err, `seed ${seed}`).toBeInstanceOf(MeshError);
    // The run reached real states, not just the validation at the door.
    expect(raw.protocolErrors.length).toBeGreaterThan(100);
    expect(streamErrors.length).toBeGreaterThan(10);
    const inbound = streams.filter((st) => st.direction === 'inbound');
    expect(raw.inbound.filter((st) => st.isAccepted).length, `seed ${seed}`).toBeGreaterThan(50);
    expect(streamErrors.filter((e) => (e as MeshError).code === ErrorCodes.WINDOW_EXCEEDED).length).toBeGreaterThan(0);
    expect(streamErrors.filter((e) => (e as MeshError).code === ErrorCodes.STREAM_RESET).length).toBeGreaterThan(0);
    expect(raw.sent.filter((f) => f.kind === 'data').length).toBeGreaterThan(0);
    expect(raw.sent.filter((f) => f.kind === 'window').length).toBeGreaterThan(0);
    expect(inbound.reduce((sum, st) => sum + st.stats().receivedBytes, 0)).toBeGreaterThan(0);
    expect(raw.session.streamCount).toBeLessThanOrEqual(12);
    // Whatever happened, the sender stayed within the credit every stream was given.
    const stats = raw.session.stats();
    expect(stats.recvWindowBytes).toBeLessThanOrEqual(800 * 1024 + 12 * 64 * 1024);
    raw.session.destroy();
    await turns(2);
    expect(raw.session.streamCount).toBe(0);
  });
});
