import { describe, expect, it } from 'vitest';
import { EARLY_DATA_BYTES, MuxSession, StreamResetError, defaultMuxConfig } from '../../../src/mux/index.js';
import type { MuxStream } from '../../../src/mux/index.js';
import { ErrorCodes, MeshError, isMeshError } from '../../../src/errors.js';
import { FakeClock, createPair, nextError, silentLogger, turns, waitFor } from './pair.js';
import { rawSession } from './raw.js';

const KiB = 1024;

function open(streamId: number, window = 64 * KiB) {
  return { kind: 'open', streamId, service: 'svc', port: 80, window } as const;
}
function data(streamId: number, length: number) {
  return { kind: 'data', streamId, data: new Uint8Array(length).fill(streamId) } as const;
}

describe('mux session: stream-level violations', () => {
  it('resets a stream whose peer sends past the window with WINDOW_EXCEEDED; other streams are unaffected', async () => {
    const raw = rawSession({ config: { initialWindowBytes: 4 * KiB, maxWindowBytes: 4 * KiB } });
    raw.session.handleFrame(open(2));
    raw.session.handleFrame(open(4));
    // a window below the early-data allowance adds no credit at accept: the opener already has 64 KiB
    expect(raw.sentFor(2, 'accept')).toEqual([{ kind: 'accept', streamId: 2, window: 0 }]);
    const [s2, s4] = raw.inbound as [MuxStream, MuxStream];
    let read4 = 0;
    s4.on('data', (c: Buffer) => (read4 += c.length));

    raw.session.handleFrame(data(2, EARLY_DATA_BYTES - KiB));
    raw.session.handleFrame(data(2, 1 * KiB)); // exactly what was granted: fine
    raw.session.handleFrame(data(4, 1000));
    raw.session.handleFrame(data(2, 1)); // one byte too many
    await turns(2);
    const err = raw.streamErrors.get(2);
    expect(isMeshError(err, ErrorCodes.WINDOW_EXCEEDED)).toBe(true);
    expect((err as Error).message).toContain('stream 2');
    expect((err as Error).message).toContain('granted window');
    expect(raw.sentFor(2, 'reset')).toMatchObject([{ kind: 'reset', streamId: 2, code: ErrorCodes.WINDOW_EXCEEDED }]);
    expect(s2.destroyed).toBe(true);
    // Stream 4 goes on, the session is fine, late frames for 2 are ignored.
    raw.session.handleFrame(data(4, 500));
    raw.session.handleFrame(data(2, 100));
    await turns(2);
    expect(read4).toBe(1500);
    expect(raw.streamErrors.has(4)).toBe(false);
    expect(raw.protocolErrors).toEqual([]);
    expect(raw.session.streamCount).toBe(1);
    expect(raw.sentFor(2, 'reset')).toHaveLength(1);
  });

  it('takes up to EARLY_DATA_BYTES before accept() (early data), and resets a stream that sends more', async () => {
    const pending: MuxStream[] = [];
    const raw = rawSession({ onStream: (s) => pending.push(s) });
    raw.session.handleFrame(open(2));
    raw.session.handleFrame(data(2, EARLY_DATA_BYTES - 1000));
    raw.session.handleFrame(data(2, 1000)); // exactly the early allowance: fine
    raw.session.handleFrame(open(4));
    raw.session.handleFrame(data(4, EARLY_DATA_BYTES));
    raw.session.handleFrame(data(4, 1)); // one byte past it before accept
    await turns(1);
    expect(raw.streamErrors.has(2)).toBe(false);
    expect(pending[0]!.readableLength).toBe(EARLY_DATA_BYTES);
    expect(isMeshError(raw.streamErrors.get(4), ErrorCodes.WINDOW_EXCEEDED)).toBe(true);
    expect(raw.protocolErrors).toEqual([]);
    // accepting grants the window beyond what the early bytes used: the opener's credit adds up to it
    pending[0]!.accept();
    expect(raw.sentFor(2, 'accept')).toEqual([{ kind: 'accept', streamId: 2, window: defaultMuxConfig.initialWindowBytes - EARLY_DATA_BYTES }]);
  });

  it('resets a stream that gets data after the peer fin (PROTOCOL on that stream only)', async () => {
    const raw = rawSession();
    raw.session.handleFrame(open(2));
    raw.inbound[0]!.resume();
    raw.session.handleFrame({ kind: 'fin', streamId: 2 });
    raw.session.handleFrame(data(2, 10));
    await turns(1);
    expect(isMeshError(raw.streamErrors.get(2), ErrorCodes.PROTOCOL)).toBe(true);
    expect(raw.sentFor(2, 'reset')).toMatchObject([{ code: ErrorCodes.PROTOCOL }]);
    expect(raw.protocolErrors).toEqual([]);
  });
});

describe('mux session: limits', () => {
  it('resets an incoming open over maxStreams with STREAM_LIMIT, without a protocol error', async () => {
    const raw = rawSession({ config: { maxStreams: 3 } });
    for (const id of [2, 4, 6, 8]) raw.session.handleFrame(open(id));
    expect(raw.inbound.map((s) => s.id)).toEqual([2, 4, 6]);
    expect(raw.sentFor(8)).toMatchObject([{ kind: 'reset', streamId: 8, code: ErrorCodes.STREAM_LIMIT }]);
    expect(raw.protocolErrors).toEqual([]);
    // Frames in flight for the refused stream are ignored.
    raw.session.handleFrame({ kind: 'fin', streamId: 8 });
    expect(raw.protocolErrors).toEqual([]);
    // Local opens count too.
    expect(() => raw.session.open('x', 1)).toThrowError(expect.objectContaining({ code: ErrorCodes.STREAM_LIMIT }));
    // A slot frees when a stream goes away.
    raw.inbound[0]!.destroy();
    raw.session.handleFrame(open(10));
    expect(raw.inbound.map((s) => s.id)).toEqual([2, 4, 6, 10]);
    expect(raw.session.streamCount).toBe(3);
  });

  it('validates open() arguments', () => {
    const raw = rawSession();
    expect(() => raw.session.open('', 1)).toThrowError(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
    expect(() => raw.session.open('db', 0)).toThrowError(/port: expected 1\.\.65535, got 0/);
    expect(() => raw.session.open('db', 70000)).toThrowError(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
  });
});

describe('mux session: protocol violations', () => {
  it('an open with our parity is a protocol error', () => {
    const initiator = rawSession({ isInitiator: true });
    initiator.session.handleFrame(open(1));
    expect(initiator.protocolErrors).toHaveLength(1);
    expect(initiator.protocolErrors[0]!.code).toBe(ErrorCodes.PROTOCOL);
    expect(initiator.protocolErrors[0]!.message).toContain('parity');
    expect(initiator.inbound).toEqual([]);

    const responder = rawSession({ isInitiator: false });
    responder.session.handleFrame(open(2));
    expect(responder.protocolErrors.map((e) => e.code)).toEqual([ErrorCodes.PROTOCOL]);
    responder.session.handleFrame(open(3));
    expect(responder.inbound.map((s) => s.id)).toEqual([3]);
    expect(responder.session.open('a', 1).id).toBe(2);
  });

  it('reusing a live or past id, or a smaller id, is a protocol error', () => {
    const raw = rawSession();
    raw.session.handleFrame(open(2));
    raw.session.handleFrame(open(2)); // live
    raw.session.handleFrame(open(6));
    raw.session.handleFrame(open(4)); // smaller than the last
    raw.inbound[0]!.destroy();
    raw.session.handleFrame(open(2)); // past
    expect(raw.protocolErrors.map((e) => e.code)).toEqual([ErrorCodes.PROTOCOL, ErrorCodes.PROTOCOL, ErrorCodes.PROTOCOL]);
    expect(raw.protocolErrors[1]!.message).toContain('ids must increase, the last one was 6');
    expect(raw.inbound.map((s) => s.id)).toEqual([2, 6]);
  });

  it('an accept for a stream we did not open is a protocol error; one crossing our reset is ignored', async () => {
    const raw = rawSession();
    raw.session.handleFrame({ kind: 'accept', streamId: 1, window: 1000 }); // never opened
    raw.session.handleFrame(open(2));
    raw.session.handleFrame({ kind: 'accept', streamId: 2, window: 1000 }); // the peer opened it
    expect(raw.protocolErrors.map((e) => e.message)).toEqual([
      'mux: accept for stream 1, which we did not open',
      'mux: accept for stream 2, which the peer opened',
    ]);
    const s = raw.session.open('x', 1);
    expect(s.id).toBe(1);
    raw.session.handleFrame({ kind: 'accept', streamId: 1, window: 1000 });
    raw.session.handleFrame({ kind: 'accept', streamId: 1, window: 1000 }); // twice
    expect(raw.protocolErrors).toHaveLength(3);
    const t = raw.session.open('y', 1);
    t.destroy();
    expect(raw.sentFor(t.id, 'reset')).toHaveLength(1);
    raw.session.handleFrame({ kind: 'accept', streamId: t.id, window: 1000 }); // crossed our reset
    raw.session.handleFrame({ kind: 'window', streamId: t.id, credit: 1000 });
    expect(raw.protocolErrors).toHaveLength(3);
  });

  it('frames for a stream that was never opened are protocol errors', () => {
    const raw = rawSession();
    raw.session.handleFrame(data(2, 1));
    raw.session.handleFrame({ kind: 'window', streamId: 7, credit: 5 });
    raw.session.handleFrame({ kind: 'reset', streamId: 9, code: 'x', message: 'y' });
    expect(raw.protocolErrors.map((e) => e.message)).toEqual([
      'mux: data for stream 2, which was never opened',
      'mux: window for stream 7, which was never opened',
      'mux: reset for stream 9, which was never opened',
    ]);
  });

  it('malformed fields are protocol errors naming the field', () => {
    const raw = rawSession();
    raw.session.handleFrame({ kind: 'window', streamId: 0, credit: 5 });
    raw.session.handleFrame({ kind: 'open', streamId: 2, service: 'a', port: 0, window: 5 });
    raw.session.handleFrame({ kind: 'open', streamId: 2, service: 'a', port: 1, window: -5 });
    raw.session.handleFrame({ kind: 'window', streamId: 1, credit: 0 });
    expect(raw.protocolErrors.map((e) => e.message)).toEqual([
      'mux: window frame: streamId: expected 1..4294967295, got 0',
      'mux: open for stream 2: port: expected 1..65535, got 0',
      'mux: open for stream 2: window: expected a uint32, got -5',
      'mux: window for stream 1: credit: expected 1..4294967295, got 0',
    ]);
    expect(raw.protocolErrors.every((e) => e.code === ErrorCodes.PROTOCOL && e.wireReason === 'mux-protocol')).toBe(true);
  });

  it('a window that would pass a uint32 resets only that stream', async () => {
    const raw = rawSession();
    raw.session.handleFrame(open(2, 0xffff_ff00));
    raw.session.handleFrame({ kind: 'window', streamId: 2, credit: 0x1000 });
    await turns(1);
    expect(isMeshError(raw.streamErrors.get(2), ErrorCodes.PROTOCOL)).toBe(true);
    expect(raw.protocolErrors).toEqual([]);
  });

  it('a throwing onStream handler rejects the stream, and a throwing consumer is reported as INTERNAL', async () => {
    const raw = rawSession({
      onStream: () => {
        throw new Error('handler bug');
      },
    });
    raw.session.handleFrame(open(2));
    expect(raw.sentFor(2)).toMatchObject([{ kind: 'reset', code: ErrorCodes.INTERNAL }]);
    expect(raw.session.streamCount).toBe(0);

    const other = rawSession({
      onStream: (s) => {
        s.accept();
        s.on('data', () => {
          throw new Error('consumer bug');
        });
      },
    });
    other.session.handleFrame(open(2));
    await turns(1);
    other.session.handleFrame(data(2, 3));
    expect(other.protocolErrors.map((e) => e.code)).toEqual([ErrorCodes.INTERNAL]);
  });
});

describe('mux streams: reset and reject', () => {
  it('reject() errors the opener with the given code (StreamResetError.peerCode)', async () => {
    const pair = createPair({ onStreamB: (s) => s.reject(ErrorCodes.DIAL_FAILED, 'connect ECONNREFUSED') });
    const client = pair.a.session.open('db', 5432);
    const err = await nextError(client);
    expect(err).toBeInstanceOf(StreamResetError);
    expect(err).toBeInstanceOf(MeshError);
    const reset = err as StreamResetError;
    expect(reset.code).toBe(ErrorCodes.STREAM_RESET);
    expect(reset.peerCode).toBe(ErrorCodes.DIAL_FAILED);
    expect(reset.wireReason).toBe(ErrorCodes.DIAL_FAILED);
    expect(reset.peerMessage).toBe('connect ECONNREFUSED');
    expect(reset.message).toContain('MESH_ERR_DIAL_FAILED');
    await waitFor(() => pair.a.session.streamCount === 0 && pair.b.session.streamCount === 0, 'removed');
    expect(pair.b.streamErrors).toEqual([]); // reject() itself raises nothing on the acceptor
  });

  it('destroy(err) sends a reset with err.code; the peer errors with STREAM_RESET; idempotent', async () => {
    const pair = createPair();
    const client = pair.a.session.open('web', 80);
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    await new Promise<void>((resolve) => client.once('accepted', resolve));
    const server = pair.b.inbound[0]!;
    const serverErr = nextError(server);
    client.destroy(new MeshError(ErrorCodes.DIAL_FAILED, 'local socket failed', { wireReason: 'local-socket' }));
    client.destroy(new Error('again'));
    const got = (await serverErr) as StreamResetError;
    expect(got.code).toBe(ErrorCodes.STREAM_RESET);
    expect(got.peerCode).toBe(ErrorCodes.DIAL_FAILED);
    expect(got.peerMessage).toBe('local-socket');
    expect(pair.a.controlFrames.filter((f) => f.kind === 'reset')).toHaveLength(1);
    await turns(2);
    expect(errors.map((e) => (e as MeshError).code)).toEqual([ErrorCodes.DIAL_FAILED]);
    expect(pair.a.session.streamCount).toBe(0);
    expect(pair.b.session.streamCount).toBe(0);
  });

  it('destroy() without an error resets the peer with STREAM_RESET and raises nothing locally', async () => {
    const pair = createPair();
    const client = pair.a.session.open('web', 80);
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    await new Promise<void>((resolve) => client.once('accepted', resolve));
    const serverErr = nextError(pair.b.inbound[0]!);
    client.destroy();
    expect(((await serverErr) as StreamResetError).peerCode).toBe(ErrorCodes.STREAM_RESET);
    expect(errors).toEqual([]);
  });
});

describe('mux session: close and destroy', () => {
  it('destroy() errors every stream with TUNNEL_CLOSED, sends nothing, and is idempotent', async () => {
    const pair = createPair();
    const streams = [pair.a.session.open('a', 1), pair.a.session.open('b', 2)];
    const errs = streams.map((s) => nextError(s));
    await waitFor(() => pair.b.inbound.length === 2, 'inbound');
    const sentBefore = pair.a.controlFrames.length;
    const cause = new Error('socket closed');
    pair.a.session.destroy(cause);
    pair.a.session.destroy();
    for (const e of await Promise.all(errs)) {
      expect(isMeshError(e, ErrorCodes.TUNNEL_CLOSED)).toBe(true);
      expect((e as Error).message).toContain('socket closed');
      expect((e as Error).cause).toBe(cause);
    }
    expect(pair.a.controlFrames.length).toBe(sentBefore);
    expect(pair.a.session.streamCount).toBe(0);
    expect(pair.a.session.stats()).toEqual({ streamCount: 0, bufferedBytes: 0, recvWindowBytes: 0 });
    expect(() => pair.a.session.open('c', 3)).toThrowError(expect.objectContaining({ code: ErrorCodes.TUNNEL_CLOSED }));
    pair.a.session.handleFrame(open(2)); // ignored after destroy
    expect(pair.a.protocolErrors).toEqual([]);
    await pair.a.session.close(); // resolves at once after destroy
  });

  it('close() ends our side, resolves once every stream finished, and later callers share it', async () => {
    const clock = new FakeClock();
    const pair = createPair({
      clock,
      onStreamB: (s) => {
        s.accept();
        s.resume();
        s.on('end', () => s.end()); // the peer answers our fin with its own
      },
    });
    const streams = [pair.a.session.open('a', 1), pair.a.session.open('b', 2)];
    for (const s of streams) {
      s.on('error', () => {});
      s.resume();
      s.write(new Uint8Array(1000));
    }
    const first = pair.a.session.close();
    const second = pair.a.session.close();
    expect(second).toBe(first);
    expect(() => pair.a.session.open('c', 1)).toThrowError(expect.objectContaining({ code: ErrorCodes.TUNNEL_CLOSED }));
    await first;
    expect(pair.a.session.streamCount).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    expect(pair.a.controlFrames.filter((f) => f.kind === 'reset')).toEqual([]);
    expect(pair.b.dataBytesSent).toBe(0);
    expect(pair.a.dataBytesSent).toBe(2000);
  });

  it('close() destroys with TUNNEL_CLOSED after closeTimeoutMs when the peer never finishes', async () => {
    const clock = new FakeClock();
    const pair = createPair({ clock, configA: { closeTimeoutMs: 2000 } });
    const s = pair.a.session.open('a', 1);
    const err = nextError(s);
    await new Promise<void>((resolve) => s.once('accepted', resolve));
    let isResolved = false;
    const closing = pair.a.session.close().then(() => (isResolved = true));
    await turns(20);
    expect(isResolved).toBe(false);
    clock.advance(1999);
    await turns(2);
    expect(isResolved).toBe(false);
    clock.advance(1);
    await closing;
    const e = await err;
    expect(isMeshError(e, ErrorCodes.TUNNEL_CLOSED)).toBe(true);
    expect((e as Error).message).toContain('closeTimeoutMs=2000');
  });

  it('refuses incoming opens while closing', async () => {
    const clock = new FakeClock();
    const raw = rawSession({ clock });
    raw.session.handleFrame(open(2));
    void raw.session.close();
    raw.session.handleFrame(open(4));
    expect(raw.sentFor(4)).toMatchObject([{ kind: 'reset', code: ErrorCodes.TUNNEL_CLOSED }]);
    expect(raw.inbound).toHaveLength(1);
    raw.session.destroy();
  });

  it('a tunnel whose send throws destroys the session with TUNNEL_CLOSED', async () => {
    let isBroken = false;
    const session = new MuxSession({
      isInitiator: true,
      logger: silentLogger(),
      send: () => {
        if (isBroken) throw new MeshError(ErrorCodes.TUNNEL_CLOSED, 'tunnel closed');
      },
      bufferedBytes: () => 0,
      onStream: () => {},
      onProtocolError: () => {},
    });
    const s = session.open('a', 1);
    const err = nextError(s);
    session.handleFrame({ kind: 'accept', streamId: 1, window: 1000 });
    isBroken = true;
    s.write(new Uint8Array(10));
    expect(isMeshError(await err, ErrorCodes.TUNNEL_CLOSED)).toBe(true);
    expect(session.streamCount).toBe(0);
    expect(session.isOpen).toBe(false);
  });
});
