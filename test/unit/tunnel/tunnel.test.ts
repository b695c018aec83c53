import { createHash, randomBytes } from 'node:crypto';
import { get as httpGet } from 'node:http';
import type { Socket } from 'node:net';
import { pino } from 'pino';
import { describe, expect, it, onTestFinished } from 'vitest';
import type WebSocket from 'ws';
import { Ed25519Private, X25519Private } from '../../../src/crypto/keys/index.js';
import type { NoiseTransport } from '../../../src/crypto/noise/index.js';
import { ErrorCodes, MeshError, isMeshError } from '../../../src/errors.js';
import { issueCert, type VerifiedCert } from '../../../src/mesh/index.js';
import {
  CloseCodes,
  Tunnel,
  TunnelServer,
  dialWebSocket,
  verifyTunnelConfig,
  type HandshakeResult,
  type TunnelConfig,
} from '../../../src/tunnel/index.js';
import { systemClock } from '../../../src/util/clock.js';
import { seededRandom } from '../../../src/util/random.js';
import { MAX_DATA_FRAME, type Frame } from '../../../src/wire/index.js';
import { expectMeshErrorValue as expectMeshError } from '../../helpers/mesh-error.js';
// one source for the test mesh's authority and the certificate-checking tunnel handshake
import { newAuthority, tunnelHandshake as handshake, type Authority } from '../security/harness.js';

/**
 * Two tunnel endpoints in one process over a real WebSocket on 127.0.0.1: a TunnelServer route on
 * one side, dialWebSocket on the other, the Noise XX handshake with mesh certificates, then Tunnel.
 */

const logger = pino({ level: 'silent' });
const PATH = '/osmoda-mesh/v1';
const CHUNK = 16_000;

// ---- small async helpers, every wait bounded ------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err as Error);
      },
    );
  });
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}


function rawSocket(ws: WebSocket): Socket {
  return (ws as unknown as { _socket: Socket })._socket;
}

/** The close code the peer sent, as this ws saw it. */
function closeCode(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => ws.once('close', (code) => resolve(code)));
}

// ---- mesh identities ------------------------------------------------------------------------

interface Member {
  name: string;
  noise: X25519Private;
  cert: Uint8Array;
}

function newMember(authority: Authority, name: string): Member {
  const signing = Ed25519Private.generate();
  const noise = X25519Private.generate();
  const cert = issueCert(authority.key, {
    meshName: 'test',
    name,
    ed25519Public: signing.publicKey,
    x25519Public: noise.publicKey,
    tags: [],
    isAdmin: false,
    nowMs: Date.now(),
  });
  return { name, noise, cert };
}

// ---- server harness -------------------------------------------------------------------------

interface Harness {
  server: TunnelServer;
  port: number;
  url: string;
  /** The next socket the route handler got. */
  accepted(): Promise<WebSocket>;
}

async function startServer(options: { maxPendingHandshakes?: number; pendingHandshakes?: () => number; onRoute?: (ws: WebSocket) => void } = {}): Promise<Harness> {
  const ready: WebSocket[] = [];
  const waiters: ((ws: WebSocket) => void)[] = [];
  const server = new TunnelServer({
    host: '127.0.0.1',
    port: 0,
    routes: {
      [PATH]: (ws) => {
        options.onRoute?.(ws);
        const waiter = waiters.shift();
        if (waiter) waiter(ws);
        else ready.push(ws);
      },
    },
    maxPendingHandshakes: options.maxPendingHandshakes ?? 64,
    pendingHandshakes: options.pendingHandshakes ?? (() => 0),
    logger,
  });
  const { port } = await server.listen();
  onTestFinished(() => server.close());
  return {
    server,
    port,
    url: `ws://127.0.0.1:${port}${PATH}`,
    accepted: () => {
      const ws = ready.shift();
      if (ws) return Promise.resolve(ws);
      return withTimeout(new Promise<WebSocket>((resolve) => waiters.push(resolve)), 3_000, 'the server to accept');
    },
  };
}

/** A dialled socket and the server's side of it, both terminated when the test ends. */
async function connectRaw(harness: Harness): Promise<{ client: WebSocket; server: WebSocket }> {
  const client = await dialWebSocket(harness.url, 3_000);
  const server = await harness.accepted();
  onTestFinished(() => {
    client.terminate();
    server.terminate();
  });
  return { client, server };
}

// ---- tunnel pair ----------------------------------------------------------------------------

interface Side {
  ws: WebSocket;
  tunnel: Tunnel;
  transport: NoiseTransport;
  remote: VerifiedCert;
  frames: Frame[];
  /** Every call of the onClose handler, in order. */
  closes: (Error | undefined)[];
  /** Transport messages that reached this side's socket. */
  messagesIn: number;
  /** Transport messages that came in with the last handshake message. */
  earlyMessages: number;
}

function makeSide(ws: WebSocket, result: HandshakeResult<VerifiedCert>, config: Partial<TunnelConfig>, seed: number): Side {
  const tunnel = new Tunnel({
    ws,
    transport: result.transport,
    config: verifyTunnelConfig(config),
    clock: systemClock,
    random: seededRandom(seed),
    logger,
    path: 'test',
    earlyMessages: result.earlyMessages,
  });
  const side: Side = { ws, tunnel, transport: result.transport, remote: result.remote, frames: [], closes: [], messagesIn: 0, earlyMessages: result.earlyMessages.length };
  ws.on('message', () => side.messagesIn++);
  tunnel.onFrame((frame) => side.frames.push(frame));
  tunnel.onClose((err) => side.closes.push(err));
  onTestFinished(() => tunnel.destroy());
  return side;
}

/**
 * `a` dialled, `b` was accepted by the server; each gets its own config. Like PeerManager, each side
 * builds its tunnel as soon as its own handshake is done; `firstFrames` are sent by `a` at once.
 */
async function connectPair(
  configA: Partial<TunnelConfig> = {},
  configB: Partial<TunnelConfig> = configA,
  firstFrames: Frame[] = [],
): Promise<{ a: Side; b: Side; harness: Harness }> {
  const authority = newAuthority();
  const alpha = newMember(authority, 'alpha');
  const beta = newMember(authority, 'beta');
  const harness = await startServer();
  const { client, server } = await connectRaw(harness);
  const [a, b] = await Promise.all([
    handshake(true, client, alpha, authority).then((result) => {
      const side = makeSide(client, result, configA, 1);
      for (const frame of firstFrames) side.tunnel.send(frame);
      return side;
    }),
    handshake(false, server, beta, authority).then((result) => makeSide(server, result, configB, 2)),
  ]);
  return { a, b, harness };
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/**
 * Frames with their byte fields as hex, so sent and decoded frames compare by value; fields a
 * frame's kind does not use (undefined in the agent's frames, absent in the test's) are left out.
 */
function normalize(frame: Frame): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(frame)) {
    if (value === undefined) continue;
    if (value instanceof Uint8Array) out[key] = hex(value);
    else if (key === 'records') out[key] = (value as { body: Uint8Array; signature: Uint8Array }[]).map((r) => ({ body: hex(r.body), signature: hex(r.signature) }));
    else out[key] = value;
  }
  return out;
}

/**
 * The tunnel may split a data frame to fill a message (frame boundaries of a stream's bytes are not
 * kept; their order is): compare with consecutive data frames of one stream joined.
 */
/**
 * How much of a frame sequence has arrived: data bytes plus one per other frame. The tunnel may
 * split a data frame across two transport messages, so frame counts do not compare; this does.
 */
function contentSize(frames: readonly Frame[]): number {
  let size = 0;
  for (const frame of frames) size += frame.kind === 'data' ? frame.data.length : 1;
  return size;
}

function joinData(frames: readonly Frame[]): Record<string, unknown>[] {
  const out: Frame[] = [];
  for (const frame of frames) {
    const last = out[out.length - 1];
    if (frame.kind === 'data' && last?.kind === 'data' && last.streamId === frame.streamId) {
      out[out.length - 1] = { kind: 'data', streamId: frame.streamId, data: Buffer.concat([last.data, frame.data]) };
    } else out.push(frame);
  }
  return out.map(normalize);
}

function sampleFrames(seed: number, count: number): Frame[] {
  const random = seededRandom(seed);
  const frames: Frame[] = [];
  for (let i = 0; i < count; i++) {
    const streamId = 1 + (i % 7) * 2;
    switch (i % 10) {
      case 3:
        frames.push({ kind: 'gossip', records: [{ body: random.bytes(40 + i), signature: random.bytes(64) }, { body: random.bytes(8), signature: random.bytes(64) }] });
        break;
      case 5:
        frames.push({ kind: 'open', streamId, service: `svc-${i}`, port: 1000 + i, window: 256 * 1024 });
        break;
      case 6:
        frames.push({ kind: 'window', streamId, credit: 4096 + i });
        break;
      case 8:
        frames.push({ kind: 'reset', streamId, code: 'MESH_ERR_DIAL_FAILED', message: `reset ${i}` });
        break;
      case 9:
        frames.push({ kind: 'fin', streamId });
        break;
      default:
        // sizes vary so that several transport messages are needed, some with many frames
        frames.push({ kind: 'data', streamId, data: random.bytes(1 + ((i * 7919) % 20_000)) });
    }
  }
  return frames;
}

/** Sends `frames` spread over several event-loop turns (several transport messages). */
async function sendSpread(tunnel: Tunnel, frames: Frame[]): Promise<void> {
  for (let i = 0; i < frames.length; i++) {
    tunnel.send(frames[i]!);
    if (i % 13 === 12) await nextTurn();
  }
}

// ---- tests ----------------------------------------------------------------------------------

describe('Tunnel over a real WebSocket', () => {
  it('completes the handshake with each side seeing the other\'s certificate', async () => {
    const { a, b } = await connectPair();
    expect(a.remote.name).toBe('beta');
    expect(b.remote.name).toBe('alpha');
    expect(a.tunnel.isOpen && b.tunnel.isOpen).toBe(true);
  });

  it('delivers frames the dialler sends right behind handshake message 3', async () => {
    // The dialler's handshake ends when it sends message 3, so its first transport message follows
    // at once; in one process both reach the responder in one read, before its handshake resumes.
    const first = sampleFrames(33, 4);
    const { a, b } = await connectPair({}, {}, [...first, { kind: 'ping', id: 7 }]);
    expect(b.earlyMessages).toBe(1); // the case under test did happen
    await waitFor(() => contentSize(b.frames) >= contentSize(first) || !b.tunnel.isOpen, 2_000, 'the early frames');
    expect(b.frames.map(normalize)).toEqual(first.map(normalize));
    // the early ping was answered like any other
    await waitFor(() => a.messagesIn > 0, 2_000, 'the pong');
    expect(a.tunnel.isOpen && b.tunnel.isOpen).toBe(true);
    expect(b.transport.receiveNonce).toBe(a.transport.sendNonce);
    expect(b.transport.receiveNonce).toBe(BigInt(b.messagesIn + b.earlyMessages));
  });

  it('carries frames both ways, in order, and keeps ping/pong to itself', async () => {
    const { a, b } = await connectPair();
    const toB = sampleFrames(11, 120);
    const toA = sampleFrames(22, 90);
    await Promise.all([sendSpread(a.tunnel, toB), sendSpread(b.tunnel, toA)]);
    await waitFor(() => contentSize(b.frames) >= contentSize(toB) && contentSize(a.frames) >= contentSize(toA), 5_000, 'all frames');
    expect(joinData(b.frames)).toEqual(joinData(toB));
    expect(joinData(a.frames)).toEqual(joinData(toA));
    // more than one transport message each way, and batching packed several frames per message
    expect(b.messagesIn).toBeGreaterThan(5);
    expect(b.messagesIn).toBeLessThan(toB.length);

    expect(a.tunnel.stats().rttMs).toBeNull();
    a.tunnel.pingNow();
    await waitFor(() => a.tunnel.stats().rttMs !== null, 2_000, 'a pong');
    const rtt = a.tunnel.stats().rttMs!;
    expect(rtt).toBeGreaterThan(0);
    expect(rtt).toBeLessThan(1_000);
    // ping and pong are the tunnel's own: never handed to onFrame
    expect([...a.frames, ...b.frames].some((f) => f.kind === 'ping' || f.kind === 'pong')).toBe(false);
    // once the pong is in, nothing is in flight: byte counters agree across the two ends
    expect(a.tunnel.stats().txBytes).toBe(b.tunnel.stats().rxBytes);
    expect(b.tunnel.stats().txBytes).toBe(a.tunnel.stats().rxBytes);
    expect(a.tunnel.stats().rekeys).toBe(0);
  });

  it('fills whole messages with a bulk stream read in 64 KiB chunks (one message per chunk, not two)', async () => {
    const { a, b } = await connectPair();
    // what a mux stream makes of a socket's 64 KiB reads: a full data frame and a 65-byte tail each
    const reads = 64;
    const sent = createHash('sha256');
    for (let i = 0; i < reads; i++) {
      const chunk = randomBytes(65_536);
      sent.update(chunk);
      a.tunnel.send({ kind: 'data', streamId: 1, data: chunk.subarray(0, MAX_DATA_FRAME) });
      a.tunnel.send({ kind: 'data', streamId: 1, data: chunk.subarray(MAX_DATA_FRAME) });
    }
    await waitFor(() => b.frames.reduce((n, f) => n + (f.kind === 'data' ? f.data.length : 0), 0) >= reads * 65_536, 10_000, 'all bytes');
    const got = createHash('sha256');
    for (const f of b.frames) if (f.kind === 'data') got.update(f.data);
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    // 4 MiB in messages of up to 65,519 bytes: 65 of them at best; without splitting it was 128
    expect(b.messagesIn).toBeLessThanOrEqual(reads + 2);
  });

  it('rekeys both directions many times over 8 MiB each way and the nonces never reset', async () => {
    const rekeyAfterBytes = 64 * 1024;
    const { a, b } = await connectPair({ rekeyAfterBytes });
    const total = 8 * 1024 * 1024;

    const transfer = async (from: Side, to: Side): Promise<void> => {
      const sentHash = createHash('sha256');
      const gotHash = createHash('sha256');
      let received = 0;
      to.tunnel.onFrame((frame) => {
        if (frame.kind !== 'data') throw new Error(`unexpected ${frame.kind} frame`);
        gotHash.update(frame.data);
        received += frame.data.length;
      });
      const nonces: bigint[] = [from.transport.sendNonce];
      let sent = 0;
      while (sent < total) {
        // 1 MiB bursts, each awaited in full: the test's own flow control keeps memory bounded
        const burstEnd = Math.min(total, sent + 1024 * 1024);
        while (sent < burstEnd) {
          const data = randomBytes(Math.min(CHUNK, burstEnd - sent));
          sentHash.update(data);
          from.tunnel.send({ kind: 'data', streamId: 1, data });
          sent += data.length;
        }
        await waitFor(() => received === sent || !to.tunnel.isOpen, 10_000, `${sent} bytes to arrive`);
        expect(to.tunnel.isOpen).toBe(true);
        // the receiver has opened every message: both ends agree on the count, which only grows
        expect(to.transport.receiveNonce).toBe(from.transport.sendNonce);
        expect(from.transport.sendNonce).toBeGreaterThan(nonces[nonces.length - 1]!);
        nonces.push(from.transport.sendNonce);
      }
      expect(gotHash.digest('hex')).toBe(sentHash.digest('hex'));
      // one nonce per transport message since the handshake, rekeys notwithstanding
      expect(to.transport.receiveNonce).toBe(BigInt(to.messagesIn));
      expect(from.transport.sentBytesSinceRekey).toBeLessThan(rekeyAfterBytes + 65_536);
    };

    await transfer(a, b);
    const afterFirst = { a: a.tunnel.stats().rekeys, b: b.tunnel.stats().rekeys };
    // a message is ~64 KiB, a rekey goes at most every few of them: dozens over 8 MiB
    expect(afterFirst.a).toBeGreaterThanOrEqual(total / (4 * rekeyAfterBytes));
    expect(afterFirst.b).toBe(afterFirst.a); // every send rekey matched by a receive rekey

    await transfer(b, a);
    const afterSecond = { a: a.tunnel.stats().rekeys, b: b.tunnel.stats().rekeys };
    expect(afterSecond.b - afterFirst.b).toBeGreaterThanOrEqual(total / (4 * rekeyAfterBytes));
    expect(afterSecond.a).toBe(afterSecond.b);
    // the first direction's counters were untouched by the second transfer
    expect(a.transport.sendNonce).toBe(b.transport.receiveNonce);
    expect(b.transport.sendNonce).toBe(a.transport.receiveNonce);
    expect(a.tunnel.isOpen && b.tunnel.isOpen).toBe(true);
    expect(a.closes).toEqual([]);
  }, 60_000);

  it('closes a tunnel whose peer goes silent within about a second, calling onClose once', async () => {
    // b keeps a long dead-peer time: only a must decide, and b must not close the socket itself
    const { a, b } = await connectPair({ pingIntervalMs: 100, deadAfterMs: 400 }, { pingIntervalMs: 100, deadAfterMs: 60_000 });
    // answered pings keep it alive well past deadAfterMs
    await sleep(700);
    expect(a.tunnel.isOpen).toBe(true);
    expect(a.tunnel.stats().rttMs).not.toBeNull();

    // Pausing b's reads alone is not silence: b's own ping timer would still write. Corking the
    // socket holds those writes in b's process, so nothing at all reaches a.
    b.ws.pause();
    rawSocket(b.ws).cork();
    const silencedAt = Date.now();
    await waitFor(() => !a.tunnel.isOpen, 3_000, 'a to give up on b');
    const elapsed = Date.now() - silencedAt;
    expect(elapsed).toBeLessThanOrEqual(1_000);
    expect(elapsed).toBeGreaterThanOrEqual(250); // not before deadAfterMs minus one ping interval
    await sleep(200);
    expect(a.closes).toHaveLength(1);
    expectMeshError(a.closes[0], ErrorCodes.TUNNEL_CLOSED, /silent/);
    expect(thrown(() => a.tunnel.send({ kind: 'fin', streamId: 1 }))).toSatisfy((e: unknown) => isMeshError(e, ErrorCodes.TUNNEL_CLOSED));
  });

  it('closes on a text message with a typed error and tells the peer', async () => {
    const { a, b } = await connectPair();
    const peerSaw = closeCode(b.ws);
    b.ws.send('hello');
    await waitFor(() => !a.tunnel.isOpen, 2_000, 'a to close');
    expectMeshError(a.closes[0], ErrorCodes.PROTOCOL, /text message/);
    expect(await withTimeout(peerSaw, 2_000, 'b to see the close')).toBe(CloseCodes.PROTOCOL);
    await waitFor(() => !b.tunnel.isOpen, 2_000, 'b to close');
    expectMeshError(b.closes[0], ErrorCodes.TUNNEL_CLOSED, /4000/);
  });

  it('closes on a garbage binary message (decrypt fails) with a typed error', async () => {
    const { a, b } = await connectPair();
    const peerSaw = closeCode(b.ws);
    b.ws.send(randomBytes(100), { binary: true });
    await waitFor(() => !a.tunnel.isOpen, 2_000, 'a to close');
    expect(a.closes).toHaveLength(1);
    expectMeshError(a.closes[0], ErrorCodes.NOISE_DECRYPT);
    expect(await withTimeout(peerSaw, 2_000, 'b to see the close')).toBe(CloseCodes.PROTOCOL);
    // a handler registered after the close hears the same error, not a normal close
    const late: (Error | undefined)[] = [];
    a.tunnel.onClose((e) => late.push(e));
    await nextTurn();
    expect(late).toHaveLength(1);
    expect(late[0]).toBe(a.closes[0]);
  });

  it('closes on a message above the 65535-byte limit (ws 1009), on either side', async () => {
    for (const direction of ['to the dialler', 'to the server'] as const) {
      const { a, b } = await connectPair();
      const [sender, receiver] = direction === 'to the dialler' ? [b, a] : [a, b];
      const senderSaw = closeCode(sender.ws);
      sender.ws.send(Buffer.alloc(70_000, 7), { binary: true });
      await waitFor(() => !receiver.tunnel.isOpen, 2_000, `the receiver (${direction}) to close`);
      expect(receiver.closes).toHaveLength(1);
      expectMeshError(receiver.closes[0], ErrorCodes.FRAME_TOO_LARGE, /payload/i);
      expect(await withTimeout(senderSaw, 2_000, 'the sender to see the close')).toBe(CloseCodes.TOO_BIG);
      await waitFor(() => !sender.tunnel.isOpen, 2_000, 'the sender to close');
      expectMeshError(sender.closes[0], ErrorCodes.FRAME_TOO_LARGE, /1009/);
    }
  });

  it('close() is idempotent, send after it throws TUNNEL_CLOSED, and the peer closes too', async () => {
    const { a, b } = await connectPair();
    await Promise.all([a.tunnel.close(), a.tunnel.close()]);
    await a.tunnel.close();
    a.tunnel.destroy(new MeshError(ErrorCodes.INTERNAL, 'late destroy'));
    expect(a.tunnel.isOpen).toBe(false);
    expect(a.closes).toEqual([undefined]);
    const err = thrown(() => a.tunnel.send({ kind: 'ping', id: 1 }));
    expectMeshError(err, ErrorCodes.TUNNEL_CLOSED);
    // a handler registered after the close still hears about it, once
    const late: (Error | undefined)[] = [];
    a.tunnel.onClose((e) => late.push(e));
    await nextTurn();
    expect(late).toEqual([undefined]);

    await waitFor(() => !b.tunnel.isOpen, 2_000, 'b to close');
    await sleep(50);
    expect(b.closes).toHaveLength(1);
    // the goaway frame travels ahead of the WebSocket close
    expectMeshError(b.closes[0], ErrorCodes.TUNNEL_CLOSED, /went away/);
  });

  it('destroy() is idempotent and the peer sees the tunnel close', async () => {
    const { a, b } = await connectPair();
    a.tunnel.destroy();
    a.tunnel.destroy(new MeshError(ErrorCodes.INTERNAL, 'second destroy'));
    await a.tunnel.close();
    expect(a.closes).toEqual([undefined]);
    expectMeshError(thrown(() => a.tunnel.send({ kind: 'fin', streamId: 3 })), ErrorCodes.TUNNEL_CLOSED);
    await waitFor(() => !b.tunnel.isOpen, 2_000, 'b to close');
    expect(b.closes).toHaveLength(1);
  });

  it('reports backpressure while the peer does not read, and fires onDrain once it does', async () => {
    const highWaterBytes = 256 * 1024;
    const lowWaterBytes = 64 * 1024;
    const { a, b } = await connectPair({ highWaterBytes, lowWaterBytes });
    let received = 0;
    b.tunnel.onFrame((frame) => {
      if (frame.kind === 'data') received += frame.data.length;
    });
    const drains: number[] = [];
    let onDrained: () => void = () => undefined;
    const drained = new Promise<void>((resolve) => (onDrained = resolve));
    a.tunnel.onDrain(() => {
      drains.push(a.tunnel.bufferedBytes());
      onDrained();
    });

    b.ws.pause();
    let sent = 0;
    const deadline = Date.now() + 15_000;
    // until the kernel's socket buffers are full and the tunnel holds more than high water
    for (let i = 0; i < 4096 && Date.now() < deadline; i++) {
      a.tunnel.send({ kind: 'data', streamId: 1, data: randomBytes(CHUNK) });
      sent += CHUNK;
      if (i % 8 === 7) {
        await nextTurn();
        if (a.tunnel.bufferedBytes() > highWaterBytes) break;
      }
    }
    await nextTurn();
    expect(a.tunnel.bufferedBytes()).toBeGreaterThan(highWaterBytes);
    await sleep(200);
    // the peer still reads nothing: the queue stays up and no drain was reported
    expect(a.tunnel.bufferedBytes()).toBeGreaterThan(highWaterBytes);
    expect(a.tunnel.stats().bufferedBytes).toBe(a.tunnel.bufferedBytes());
    expect(drains).toEqual([]);

    b.ws.resume();
    await withTimeout(drained, 10_000, 'onDrain');
    expect(drains).toHaveLength(1);
    expect(drains[0]).toBeLessThanOrEqual(lowWaterBytes);
    await waitFor(() => received === sent, 10_000, 'everything to arrive');
    expect(a.tunnel.isOpen && b.tunnel.isOpen).toBe(true);
  }, 40_000);

  it('owes a drain for every moment bufferedBytes() was above high water, even if only queued frames put it there', async () => {
    // A writer (the mux) compares bufferedBytes() with the mark right after send(). Frames waiting
    // for the end of the turn count, so the mark can be passed with nothing in the socket; if the
    // kernel then takes the whole batch at once, the tunnel never sees itself above the mark after
    // a send. It must still report the drain, or the writer waits forever (a 4-stream transfer
    // stalled this way: every stream held a read, with credit, for a drain that never came).
    const highWaterBytes = 16 * 1024;
    const lowWaterBytes = 8 * 1024;
    const { a, b } = await connectPair({ highWaterBytes, lowWaterBytes });
    let received = 0;
    b.tunnel.onFrame((frame) => {
      if (frame.kind === 'data') received += frame.data.length;
    });
    let drains = 0;
    a.tunnel.onDrain(() => drains++);

    const size = 20 * 1024; // above high water, below one message: it waits for the deferred flush
    a.tunnel.send({ kind: 'data', streamId: 1, data: randomBytes(size) });
    expect(a.ws.bufferedAmount).toBe(0);
    expect(a.tunnel.bufferedBytes()).toBeGreaterThan(highWaterBytes);

    await waitFor(() => received === size, 5_000, 'the frame to arrive');
    await waitFor(() => drains > 0, 2_000, 'onDrain');
    expect(drains).toBe(1);
    expect(a.tunnel.bufferedBytes()).toBeLessThanOrEqual(lowWaterBytes);
  }, 20_000);
});

describe('tunnel handshake', () => {
  it('a certificate from another authority: the responder refuses (CERT_UNTRUSTED), the dialler sees 4002', async () => {
    const trusted = newAuthority();
    const stranger = newMember(newAuthority(), 'mallory');
    const server = newMember(trusted, 'beta');
    const harness = await startServer();
    const { client, server: serverWs } = await connectRaw(harness);
    const clientSaw = closeCode(client);
    const [clientResult, serverResult] = await Promise.allSettled([handshake(true, client, stranger, trusted), handshake(false, serverWs, server, trusted)]);
    expect(serverResult.status).toBe('rejected');
    expectMeshError((serverResult as PromiseRejectedResult).reason, ErrorCodes.CERT_UNTRUSTED, /not signed by this mesh's authority/);
    // the dialler finished its part (message 3 went out) before the verdict came back
    expect(clientResult.status).toBe('fulfilled');
    expect(await withTimeout(clientSaw, 2_000, 'the dialler to see the close')).toBe(CloseCodes.UNTRUSTED_PEER);
  });

  it('a certificate from another authority: the dialler refuses (CERT_UNTRUSTED), the responder sees 4002', async () => {
    const trusted = newAuthority();
    const client = newMember(trusted, 'alpha');
    const stranger = newMember(newAuthority(), 'mallory');
    const harness = await startServer();
    const { client: clientWs, server: serverWs } = await connectRaw(harness);
    const serverSaw = closeCode(serverWs);
    const [clientResult, serverResult] = await Promise.allSettled([handshake(true, clientWs, client, trusted), handshake(false, serverWs, stranger, trusted)]);
    expect(clientResult.status).toBe('rejected');
    expectMeshError((clientResult as PromiseRejectedResult).reason, ErrorCodes.CERT_UNTRUSTED);
    expect(serverResult.status).toBe('rejected');
    expectMeshError((serverResult as PromiseRejectedResult).reason, ErrorCodes.CERT_UNTRUSTED, /4002/);
    expect(await withTimeout(serverSaw, 2_000, 'the responder to see the close')).toBe(CloseCodes.UNTRUSTED_PEER);
  });

  it('a peer that connects and never sends: HANDSHAKE_TIMEOUT after handshakeTimeoutMs', async () => {
    const authority = newAuthority();
    const harness = await startServer();
    const { client, server } = await connectRaw(harness);
    const clientSaw = closeCode(client);
    const startedAt = Date.now();
    const err = await handshake(false, server, newMember(authority, 'beta'), authority, 300).then(
      () => undefined,
      (e: unknown) => e,
    );
    const elapsed = Date.now() - startedAt;
    expectMeshError(err, ErrorCodes.HANDSHAKE_TIMEOUT);
    expect(elapsed).toBeGreaterThanOrEqual(280);
    expect(elapsed).toBeLessThan(1_500);
    expect(await withTimeout(clientSaw, 2_000, 'the silent client to be closed')).toBe(CloseCodes.HANDSHAKE_TIMEOUT);
  });
});

describe('TunnelServer', () => {
  it('answers a plain HTTP GET with 426', async () => {
    const harness = await startServer();
    const response = await withTimeout(
      new Promise<{ status: number | undefined; upgrade: string | undefined; body: string }>((resolve, reject) => {
        const req = httpGet({ host: '127.0.0.1', port: harness.port, path: PATH, agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode, upgrade: res.headers.upgrade, body }));
        });
        req.on('error', reject);
      }),
      3_000,
      'the HTTP answer',
    );
    expect(response.status).toBe(426);
    expect(response.upgrade).toBe('websocket');
    expect(response.body).toMatch(/upgrade required/);
    expect(harness.server.rejectedRequests).toBe(1);
  });

  it('answers an upgrade on an unknown path with 404', async () => {
    const harness = await startServer();
    const err = await dialWebSocket(`ws://127.0.0.1:${harness.port}/not-the-tunnel`, 3_000).then(
      (ws) => {
        ws.terminate();
        return undefined;
      },
      (e: unknown) => e,
    );
    expectMeshError(err, ErrorCodes.DIAL_FAILED, /HTTP 404/);
    expect(harness.server.rejectedRequests).toBe(1);
  });

  it('refuses upgrades beyond maxPendingHandshakes with 503 until one finishes', async () => {
    let pending = 0;
    const harness = await startServer({
      maxPendingHandshakes: 1,
      pendingHandshakes: () => pending,
      onRoute: (ws) => {
        pending++;
        ws.once('close', () => pending--);
      },
    });
    const first = await connectRaw(harness);
    expect(pending).toBe(1);
    const err = await dialWebSocket(harness.url, 3_000).then(
      (ws) => {
        ws.terminate();
        return undefined;
      },
      (e: unknown) => e,
    );
    expectMeshError(err, ErrorCodes.DIAL_FAILED, /HTTP 503/);
    expect(harness.server.rejectedRequests).toBe(1);

    first.client.terminate();
    await waitFor(() => pending === 0, 2_000, 'the first socket to close');
    const again = await connectRaw(harness);
    expect(again.client.readyState).toBe(again.client.OPEN);
  });
});
