import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../src/errors.js';
import type { MuxStream } from '../../../src/mux/index.js';
import { StreamResetError } from '../../../src/mux/index.js';
import { seededRandom } from '../../../src/util/random.js';
import { createPair, turns, waitFor, type Pair } from './pair.js';
import { rawSession } from './raw.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const openSockets: Socket[] = [];
afterEach(() => {
  for (const s of openSockets.splice(0)) s.destroy();
});

/** Two ends of one loopback TCP connection, both half-open like the forwarder's sockets. */
async function socketPair(): Promise<{ app: Socket; agent: Socket }> {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const app = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const [agent] = await accepted;
  server.close();
  openSockets.push(app, agent);
  return { app, agent };
}

/** Collects a socket's bytes until its end; resolves with their sha256 and length. */
function collect(socket: Socket): Promise<{ hash: string; length: number }> {
  const h = createHash('sha256');
  let length = 0;
  socket.on('data', (c: Buffer) => {
    h.update(c);
    length += c.length;
  });
  return new Promise((resolve, reject) => {
    socket.once('end', () => resolve({ hash: h.digest('hex'), length }));
    socket.once('error', reject);
  });
}

function sha(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * A socket stand-in for the one part these tests must hold still: its writes complete only when
 * released (one at a time, as a Writable goes), so its writableLength is what the stream has handed
 * it and not yet seen written out.
 */
class HeldSocket extends Duplex {
  readonly held: { chunk: Buffer; callback: () => void }[] = [];
  written = Buffer.alloc(0);
  isEnded = false;

  constructor() {
    super({ allowHalfOpen: true });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, callback: () => void): void {
    this.held.push({ chunk, callback });
  }
  override _final(callback: () => void): void {
    this.isEnded = true;
    callback();
  }
  override _read(): void {}
  release(): void {
    for (const { chunk, callback } of this.held.splice(0)) {
      this.written = Buffer.concat([this.written, chunk]);
      callback();
    }
  }
}

/** A mux pair whose acceptor takes the stream and attaches `target`, and whose opener attaches `client` once accepted. */
function attachedPair(client: Duplex, target: Duplex): { pair: Pair; opener: MuxStream } {
  const pair = createPair({
    onStreamB: (stream) => {
      stream.accept();
      stream.attach(target);
    },
  });
  const opener = pair.a.session.open('db', 5432);
  opener.on('error', () => undefined);
  opener.once('accepted', () => opener.attach(client));
  return { pair, opener };
}

describe('MuxStream.attach (the forwarder fast path)', () => {
  it('carries bytes both ways between real sockets, each half-close as a fin, and finishes both streams without a reset', async () => {
    const rnd = seededRandom(77);
    const request = rnd.bytes(3 * MiB + 17);
    const reply = rnd.bytes(700 * KiB + 3);
    const client = await socketPair();
    const target = await socketPair();
    const { pair, opener } = attachedPair(client.agent, target.agent);

    target.app.resume();
    const atTarget = collect(target.app);
    const atClient = collect(client.app);
    client.app.end(request);
    const got = await atTarget;
    expect(got).toEqual({ hash: sha(request), length: request.length });
    target.app.end(reply);
    expect(await atClient).toEqual({ hash: sha(reply), length: reply.length });

    await waitFor(() => pair.a.session.streamCount === 0 && pair.b.session.streamCount === 0, 'both streams finished');
    expect(opener.destroyed).toBe(true);
    const kinds = (frames: { kind: string }[]): string[] => frames.map((f) => f.kind);
    expect(kinds(pair.a.controlFrames)).not.toContain('reset');
    expect(kinds(pair.b.controlFrames)).not.toContain('reset');
    expect(kinds(pair.a.controlFrames).filter((k) => k === 'fin')).toHaveLength(1);
    expect(kinds(pair.b.controlFrames).filter((k) => k === 'fin')).toHaveLength(1);
    expect(pair.a.streamErrors.concat(pair.b.streamErrors)).toEqual([]);
    // a graceful session close afterwards sends no second fin
    await pair.a.session.close();
    expect(kinds(pair.a.controlFrames).filter((k) => k === 'fin')).toHaveLength(1);
  });

  it('grants credit only for bytes the socket wrote out: a stalled socket stops the sender after one window, and pauses the sending socket', async () => {
    const window = 256 * KiB; // the default initialWindowBytes
    const rnd = seededRandom(5);
    const payload = rnd.bytes(2 * MiB);
    const source = new HeldSocket();
    const sink = new HeldSocket();
    const { pair, opener } = attachedPair(source, sink);
    await waitFor(() => opener.isAccepted, 'accepted');
    for (let at = 0; at < payload.length; at += 64 * KiB) source.push(payload.subarray(at, at + 64 * KiB));
    source.push(null);

    await waitFor(() => sink.writableLength >= window, 'one window at the stalled socket');
    await turns(300);
    expect(pair.a.dataBytesSent).toBe(window);
    expect(sink.writableLength).toBe(window);
    expect(opener.stats().sendCredit).toBe(0);
    // the sending socket is paused with the rest still unread in it, and the held read is counted
    expect(source.isPaused()).toBe(true);
    expect(opener.bufferedBytes).toBeGreaterThan(0);
    expect(pair.b.session.stats().bufferedBytes).toBe(window);

    // the socket writes out: credit comes back, everything arrives in order, then the end
    for (let i = 0; i < 2_000 && !sink.isEnded; i++) {
      sink.release();
      await turns(2);
    }
    sink.release();
    expect(sink.isEnded).toBe(true);
    expect(sha(sink.written)).toBe(sha(payload));
  });

  it('writes incoming bytes (and the fin) buffered before attach first: early data reaching a provider still dialling', async () => {
    const target = await socketPair();
    let acceptor: MuxStream | undefined;
    const pair = createPair({
      onStreamB: (stream) => {
        acceptor = stream; // not accepted yet: the provider is dialling its target
      },
    });
    const opener = pair.a.session.open('web', 80);
    opener.on('error', () => undefined);
    opener.end('GET / HTTP/1.0\r\n\r\n');
    await waitFor(() => acceptor !== undefined && acceptor.readableLength === 18, 'early data buffered at the acceptor');
    await turns(5); // the fin follows the data
    const atTarget = collect(target.app);
    acceptor!.accept();
    acceptor!.attach(target.agent);
    expect(await atTarget).toEqual({ hash: sha(Buffer.from('GET / HTTP/1.0\r\n\r\n')), length: 18 });
  });

  it('sends writes held in the Duplex before attach ahead of the socket\'s own bytes', async () => {
    const source = new HeldSocket();
    const received: Buffer[] = [];
    const pair = createPair({
      onStreamB: (stream) => {
        stream.accept();
        stream.on('data', (c: Buffer) => received.push(c));
      },
    });
    pair.a.tunnelBuffered = 10 * MiB; // congested: the early write waits
    const opener = pair.a.session.open('q', 1);
    opener.on('error', () => undefined);
    opener.write(Buffer.from('first,'));
    opener.attach(source);
    source.push(Buffer.from('second'));
    await turns(20);
    expect(pair.a.dataBytesSent).toBe(0);
    pair.a.tunnelBuffered = 0;
    pair.a.session.onTunnelDrain();
    await waitFor(() => Buffer.concat(received).length === 12, 'both writes arrived');
    expect(Buffer.concat(received).toString()).toBe('first,second');
  });

  it('resets the stream when its socket closes before both directions ended, and the peer sees the reset', async () => {
    const client = await socketPair();
    const pair = createPair();
    const opener = pair.a.session.open('db', 5432);
    const errors: Error[] = [];
    opener.on('error', (err) => errors.push(err));
    opener.once('accepted', () => opener.attach(client.agent));
    await waitFor(() => opener.isAccepted, 'accepted');
    client.agent.destroy(); // closed here without an end: the forwarder dropping its listener
    await waitFor(() => pair.b.streamErrors.length === 1 && pair.a.session.streamCount === 0 && pair.b.session.streamCount === 0, 'reset crossed');
    expect(errors).toHaveLength(1);
    expect((errors[0] as { code?: string }).code).toBe(ErrorCodes.STREAM_RESET);
    expect(pair.b.streamErrors[0]).toBeInstanceOf(StreamResetError);
    expect((pair.b.streamErrors[0] as StreamResetError).peerCode).toBe(ErrorCodes.STREAM_RESET);
  });

  it('still delivers what a socket gave before it closed normally: a read held for credit, then the fin', async () => {
    const rnd = seededRandom(9);
    const first = rnd.bytes(512 * KiB);
    const last = rnd.bytes(8 * MiB); // more than the largest window (maxWindowBytes 4 MiB)
    const client = new HeldSocket();
    const target = new HeldSocket();
    const { pair } = attachedPair(client, target);
    client.push('x');
    client.push(null);
    await waitFor(() => target.held.length === 1, 'the request at the target');
    target.release();
    await waitFor(() => target.isEnded, "the client's fin at the target");
    // The target answers: the first read waits for credit with the socket paused, while the last
    // read and the target's end queue up behind it. When credit frees the socket, it reads the
    // rest and its end together; the rest is held again, and the socket, ended both ways, closes.
    target.push(first);
    await waitFor(() => pair.b.dataBytesSent > 0, 'the first window sent');
    target.push(last);
    target.push(null);
    for (let i = 0; i < 2_000 && pair.b.dataBytesSent < first.length; i++) {
      client.release();
      await turns(2);
    }
    await waitFor(() => target.destroyed, 'the target socket closed');
    expect(pair.b.dataBytesSent).toBeLessThan(first.length + last.length);
    expect(pair.b.session.streamCount).toBe(1);
    for (let i = 0; i < 5_000 && !client.isEnded; i++) {
      client.release();
      await turns(2);
    }
    client.release();
    expect(client.isEnded).toBe(true);
    expect(sha(client.written)).toBe(sha(Buffer.concat([first, last])));
    await waitFor(() => pair.a.session.streamCount === 0 && pair.b.session.streamCount === 0, 'both streams finished');
    expect(pair.a.streamErrors.concat(pair.b.streamErrors)).toEqual([]);
  });

  it('finishes an attached stream whose peer ended first when a graceful session close sends our fin', async () => {
    const client = await socketPair();
    const target = await socketPair();
    const { pair, opener } = attachedPair(client.agent, target.agent);
    await waitFor(() => opener.isAccepted, 'accepted');
    target.app.resume();
    const atClient = collect(client.app);
    target.app.end('bye');
    expect((await atClient).length).toBe(3);
    const started = performance.now();
    await pair.a.session.close(); // closeTimeoutMs is far longer than this test may take
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(opener.destroyed).toBe(true);
    expect(pair.a.controlFrames.map((f) => f.kind)).not.toContain('reset');
  });

  it('a socket yields after each socketReadQuotaBytes it read, so busy sockets take turns', async () => {
    const quota = 128 * KiB;
    const total = 2 * MiB;
    const order: { streamId: number; bytes: number }[] = [];
    const raw = rawSession({
      isInitiator: false,
      config: { socketReadQuotaBytes: quota, initialWindowBytes: 8 * MiB, maxWindowBytes: 8 * MiB },
      onSend: (frame) => {
        if (frame.kind === 'data') order.push({ streamId: frame.streamId, bytes: frame.data.length });
      },
    });
    const pairs = [await socketPair(), await socketPair()];
    // both applications wrote all their data before the agent reads: every read finds 64 KiB
    // waiting, and libuv would read up to 32 of them from one socket per readiness event
    for (const p of pairs) p.app.write(Buffer.alloc(total, 7));
    await waitFor(() => pairs.every((p) => p.agent.readableLength === 0), 'sockets connected');
    for (const [i, id] of [1, 3].entries()) {
      raw.session.handleFrame({ kind: 'open', streamId: id, service: 'svc', port: 80, window: 8 * MiB });
      raw.inbound[i]!.attach(pairs[i]!.agent);
    }
    await waitFor(() => order.reduce((n, f) => n + f.bytes, 0) === 2 * total, 'all data sent', 20_000, 20_000);
    // the longest run of one stream's bytes while the other still had data to send
    const lastOf = (id: number): number => order.map((f) => f.streamId).lastIndexOf(id);
    const bothBusyUntil = Math.min(lastOf(1), lastOf(3));
    let longest = 0;
    let run = 0;
    for (let i = 0; i <= bothBusyUntil; i++) {
      run = i > 0 && order[i]!.streamId === order[i - 1]!.streamId ? run + order[i]!.bytes : order[i]!.bytes;
      longest = Math.max(longest, run);
    }
    // a yield comes at the first read that reaches the quota: at most one read (64 KiB) past it
    expect(longest).toBeLessThanOrEqual(quota + 64 * KiB);
    expect(bothBusyUntil).toBeGreaterThan(order.length / 2);
  });

  it('refuses a second attach', async () => {
    const pair = createPair();
    const opener = pair.a.session.open('db', 5432);
    opener.on('error', () => undefined);
    opener.attach(new HeldSocket());
    expect(() => opener.attach(new HeldSocket())).toThrow(/attached twice/);
  });
});
