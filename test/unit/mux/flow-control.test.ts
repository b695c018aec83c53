import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { EARLY_DATA_BYTES, type MuxStream, type StreamResetError } from '../../../src/mux/index.js';
import { ErrorCodes } from '../../../src/errors.js';
import { seededRandom } from '../../../src/util/random.js';
import { createPair, drain, nextError, turns, waitFor } from './pair.js';
import { rawSession } from './raw.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A lazily produced byte source that counts and hashes what it produced. */
function countingSource(seed: number, total: number, chunkBytes: number): { source: Readable; produced: () => number; hash: () => string } {
  const rnd = seededRandom(seed);
  const block = rnd.bytes(chunkBytes);
  const h = createHash('sha256');
  let produced = 0;
  let n = 0;
  const source = new Readable({
    read() {
      if (produced >= total) {
        this.push(null);
        return;
      }
      const chunk = new Uint8Array(Math.min(chunkBytes, total - produced));
      chunk.set(block.subarray(0, chunk.length));
      chunk[0] = n++ & 0xff;
      produced += chunk.length;
      h.update(chunk);
      this.push(chunk);
    },
  });
  return { source, produced: () => produced, hash: () => h.copy().digest('hex') };
}


describe('mux flow control', () => {
  it('a receiver that never reads stops the sender after one window; resuming delivers everything', async () => {
    const initial = 256 * KiB;
    const total = 8 * MiB;
    const pair = createPair(); // defaults: initialWindowBytes 256 KiB
    const client = pair.a.session.open('slow', 9000);
    client.on('error', () => {});
    const src = countingSource(1234, total, 16 * KiB);
    src.source.pipe(client);

    await waitFor(() => pair.a.dataBytesSent >= initial, 'first window sent');
    // Let it run: nothing more may go out while nobody reads.
    await turns(300);
    const server = pair.b.inbound[0]!;
    expect(pair.a.dataBytesSent).toBe(initial);
    expect(client.stats().sendCredit).toBe(0);
    expect(server.readableLength).toBe(initial);
    expect(server.stats().recvWindow).toBe(initial); // nothing consumed, so no growth either
    // Backpressure reached the source: the writable side is full and pipe() paused the producer.
    expect(client.writableNeedDrain).toBe(true);
    expect(client.write(new Uint8Array(1))).toBe(false);
    expect(client.writableLength).toBeLessThanOrEqual(client.writableHighWaterMark + 16 * KiB + 1);
    // Produced = sent + held in the stream's writable buffer + the source's own readable buffer.
    expect(src.produced()).toBeLessThanOrEqual(
      initial + client.writableHighWaterMark + src.source.readableHighWaterMark + 2 * 16 * KiB,
    );
    expect(pair.a.session.stats().bufferedBytes).toBeLessThanOrEqual(client.writableHighWaterMark + 16 * KiB + 1);
    expect(pair.b.session.stats().bufferedBytes).toBe(initial);

    // The reader resumes: everything arrives, intact (the extra byte written above is at the end).
    const done = drain(server);
    await waitFor(() => src.produced() === total, 'source fully produced', 100_000);
    const got = await done;
    expect(got.length).toBe(total + 1);
    expect(pair.a.protocolErrors.concat(pair.b.protocolErrors)).toEqual([]);
  });

  it('holds a large write until credit arrives (the write callback waits)', async () => {
    const pair = createPair({
      configB: { initialWindowBytes: 64 * KiB, maxWindowBytes: 64 * KiB },
    });
    const client = pair.a.session.open('big', 1);
    let isCallbackCalled = false;
    expect(client.write(new Uint8Array(1 * MiB), () => (isCallbackCalled = true))).toBe(false);
    await turns(100);
    expect(pair.a.dataBytesSent).toBe(64 * KiB);
    expect(isCallbackCalled).toBe(false);
    const server = pair.b.inbound[0]!;
    let read = 0;
    server.on('data', (c: Buffer) => (read += c.length));
    await waitFor(() => isCallbackCalled, 'write callback');
    await waitFor(() => read === 1 * MiB, 'all read');
  });

  it('grows the window while the reader keeps up, never beyond maxWindowBytes', async () => {
    const max = 1 * MiB;
    const pair = createPair({
      configB: { initialWindowBytes: 64 * KiB, maxWindowBytes: max },
      tap: (from, f) => {
        if (from === 'b' && f.kind === 'window') credits.push(f.credit);
      },
    });
    const credits: number[] = [];
    const client = pair.a.session.open('fast', 1);
    const src = countingSource(5, 24 * MiB, 64 * KiB);
    src.source.pipe(client);
    await waitFor(() => pair.b.inbound.length === 1, 'inbound');
    const server = pair.b.inbound[0]!;
    let maxWindow = 0;
    let maxInFlight = 0;
    let read = 0;
    server.on('data', (c: Buffer) => {
      read += c.length;
      maxWindow = Math.max(maxWindow, server.stats().recvWindow);
      maxInFlight = Math.max(maxInFlight, pair.a.dataBytesSent - read);
    });
    const done = new Promise<void>((resolve) => server.once('end', resolve));
    await done;
    expect(read).toBe(24 * MiB);
    expect(maxWindow).toBe(max);
    expect(Math.max(...credits)).toBeLessThanOrEqual(max);
    // The sender never had more outstanding than the largest window.
    expect(maxInFlight).toBeLessThanOrEqual(max);
    expect(pair.b.session.stats().recvWindowBytes).toBeLessThanOrEqual(max);
  });

  it('does not grow the window for a reader that lags behind', async () => {
    const initial = 64 * KiB;
    const pair = createPair({ configB: { initialWindowBytes: initial, maxWindowBytes: 1 * MiB } });
    const client = pair.a.session.open('lagging', 1);
    client.on('error', () => {});
    countingSource(6, 8 * MiB, 16 * KiB).source.pipe(client);
    await waitFor(() => pair.b.inbound.length === 1, 'inbound');
    const server = pair.b.inbound[0]!;
    for (let round = 0; round < 20; round++) {
      // The sender fills the window, then the reader takes only half of it.
      await waitFor(() => server.readableLength === server.stats().recvWindow, `window full (round ${round})`);
      const chunk = server.read(initial / 2) as Buffer | null;
      expect(chunk?.length).toBe(initial / 2);
      expect(server.stats().recvWindow).toBe(initial);
    }
    server.destroy();
  });

  it('stops growing windows at sessionMaxBufferedBytes', async () => {
    const initial = 64 * KiB;
    const cap = 3 * initial;
    const pair = createPair({
      configB: { initialWindowBytes: initial, maxWindowBytes: 1 * MiB, sessionMaxBufferedBytes: cap },
    });
    let maxSum = 0;
    const reads: Promise<void>[] = [];
    for (let i = 0; i < 3; i++) {
      const s = pair.a.session.open(`s${i}`, 1);
      countingSource(10 + i, 4 * MiB, 32 * KiB).source.pipe(s);
    }
    await waitFor(() => pair.b.inbound.length === 3, 'inbound');
    for (const server of pair.b.inbound) {
      server.on('data', () => (maxSum = Math.max(maxSum, pair.b.session.stats().recvWindowBytes)));
      reads.push(new Promise((resolve) => server.once('end', resolve)));
    }
    await Promise.all(reads);
    // Three initial windows are exactly the cap: none may grow.
    expect(maxSum).toBe(cap);
    for (const server of pair.b.inbound) expect(server.stats().recvWindow).toBe(initial);
  });

  it('holds data while the tunnel is above its high-water mark, until onTunnelDrain()', async () => {
    const pair = createPair({ configA: { tunnelHighWaterBytes: 1 * MiB } });
    const client = pair.a.session.open('hw', 1);
    await new Promise<void>((resolve) => client.once('accepted', resolve));
    pair.a.tunnelBuffered = 2 * MiB;
    client.write(new Uint8Array(100 * KiB));
    client.end();
    await turns(50);
    expect(pair.a.dataBytesSent).toBe(0);
    expect(pair.a.controlFrames.some((f) => f.kind === 'fin')).toBe(false); // fin follows the data
    // The tunnel emptying is not seen by polling: the writes wait for the drain signal.
    pair.a.tunnelBuffered = 0;
    await turns(20);
    expect(pair.a.dataBytesSent).toBe(0);
    pair.a.session.onTunnelDrain();
    const server = pair.b.inbound[0]!;
    let read = 0;
    server.on('data', (c: Buffer) => (read += c.length));
    await new Promise<void>((resolve) => server.once('end', resolve));
    expect(read).toBe(100 * KiB);
    expect(pair.a.dataBytesSent).toBe(100 * KiB);
  });

  it('resumes held streams in turn after each tunnel drain, not always from the oldest', async () => {
    const highWater = 64 * KiB;
    const frameBytes = 16 * KiB;
    // Every data frame fills the fake tunnel past its mark, so each drain lets exactly one frame out.
    const raw = rawSession({
      isInitiator: false,
      config: { tunnelHighWaterBytes: highWater, maxFrameDataBytes: frameBytes },
      onSend: (frame) => {
        if (frame.kind === 'data') raw.tunnelBuffered = 2 * highWater;
      },
    });
    const ids = [1, 3, 5];
    for (const id of ids) raw.session.handleFrame({ kind: 'open', streamId: id, service: 'svc', port: 80, window: MiB });
    raw.tunnelBuffered = 2 * highWater;
    for (const stream of raw.inbound) stream.write(new Uint8Array(4 * frameBytes));
    await turns(5);
    expect(raw.sent.filter((f) => f.kind === 'data')).toEqual([]);
    const order: number[] = [];
    for (let drains = 0; drains < 12; drains++) {
      raw.tunnelBuffered = 0;
      raw.session.onTunnelDrain();
      await turns(2); // a finished write's callback lets the stream's next chunk in
      const sent = raw.sent.filter((f) => f.kind === 'data');
      order.push(...sent.slice(order.length).map((f) => f.streamId));
    }
    expect(order).toEqual([1, 3, 5, 1, 3, 5, 1, 3, 5, 1, 3, 5]);
  });

  it('once the tunnel passed its mark, no stream sends until the drain, not even one that was not holding', async () => {
    const highWater = 64 * KiB;
    const raw = rawSession({ isInitiator: false, config: { tunnelHighWaterBytes: highWater } });
    for (const id of [1, 3]) raw.session.handleFrame({ kind: 'open', streamId: id, service: 'svc', port: 80, window: MiB });
    const [held, late] = raw.inbound as [MuxStream, MuxStream];
    raw.tunnelBuffered = 2 * highWater;
    held.write(new Uint8Array(1000));
    await turns(3);
    expect(raw.sentFor(1, 'data')).toEqual([]);
    // the tunnel is below its mark again, but its drain (the low-water mark) has not come
    raw.tunnelBuffered = highWater / 2;
    late.write(new Uint8Array(1000));
    await turns(3);
    expect(raw.sent.filter((f) => f.kind === 'data')).toEqual([]);
    raw.tunnelBuffered = 0;
    raw.session.onTunnelDrain();
    await turns(3);
    // the held stream first (round robin from the drain), then the one that came later
    expect(raw.sent.filter((f) => f.kind === 'data').map((f) => f.streamId)).toEqual([1, 3]);
  });

  it('sends up to EARLY_DATA_BYTES before the peer accepts (no round trip), holds the rest, then emits accepted', async () => {
    let pending: MuxStream | undefined;
    const pair = createPair({ onStreamB: (s) => (pending = s) });
    const client = pair.a.session.open('later', 1);
    let isAccepted = false;
    client.on('accepted', () => (isAccepted = true));
    const total = EARLY_DATA_BYTES + 40_000;
    client.end(new Uint8Array(total));
    await turns(30);
    expect(pending).toBeDefined();
    expect(pair.a.dataBytesSent).toBe(EARLY_DATA_BYTES);
    expect(isAccepted).toBe(false);
    pending!.accept();
    let read = 0;
    pending!.on('data', (c: Buffer) => (read += c.length));
    await new Promise<void>((resolve) => pending!.once('end', resolve));
    expect(isAccepted).toBe(true);
    expect(read).toBe(total);
  });

  it('a rejected stream drops its early data; the opener sees the refusal', async () => {
    const pair = createPair({ onStreamB: (s) => s.reject(ErrorCodes.DIAL_FAILED, 'connect ECONNREFUSED') });
    const client = pair.a.session.open('refused', 1);
    client.write(new Uint8Array(1000));
    const err = await nextError(client);
    expect((err as StreamResetError).peerCode).toBe(ErrorCodes.DIAL_FAILED);
    expect(pair.a.dataBytesSent).toBe(1000);
    expect(pair.b.session.streamCount).toBe(0);
  });
});
