import { createHash, randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type WebSocket from 'ws';
import { X25519Private } from '../src/crypto/keys/index.js';
import { MuxSession, type MuxConfig, type MuxStream } from '../src/mux/index.js';
import { MessageSocket, Tunnel, TunnelServer, dialWebSocket, performTunnelHandshake, verifyTunnelConfig, type TunnelConfig } from '../src/tunnel/index.js';
import { systemClock } from '../src/util/clock.js';
import { systemRandom } from '../src/util/random.js';
import { benchMesh } from './bench-mesh.js';

/**
 * One process, two tunnel ends over a real WebSocket on loopback, a mux session on each: how fast
 * do bytes move through encode → seal → ws → open → decode → stream, with no TCP forwarding on
 * either side. Baseline: the same bytes through a bare ws connection without Noise or mux.
 */

const silent = pino({ level: 'silent' });
const MESH_ID = new Uint8Array(16);

interface Ends {
  client: Tunnel;
  server: Tunnel;
  close(): Promise<void>;
}

async function tunnelPair(config: TunnelConfig): Promise<Ends> {
  const keys = [X25519Private.generate(), X25519Private.generate()] as const;
  let serverTunnel: Promise<Tunnel> | undefined;
  const server = new TunnelServer({
    host: '127.0.0.1',
    port: 0,
    routes: {
      '/t': (ws: WebSocket) => {
        serverTunnel = performTunnelHandshake(false, {
          socket: new MessageSocket(ws),
          clock: systemClock,
          timeoutMs: 5000,
          staticKey: keys[1],
          meshId: MESH_ID,
          payload: new Uint8Array(0),
          verifyRemote: () => true,
        }).then((r) => new Tunnel({ ws, transport: r.transport, config, clock: systemClock, random: systemRandom, logger: silent, path: 'bench', earlyMessages: r.earlyMessages }));
      },
    },
    maxPendingHandshakes: 4,
    pendingHandshakes: () => 0,
    logger: silent,
  });
  const { port } = await server.listen();
  const ws = await dialWebSocket(`ws://127.0.0.1:${port}/t`, 5000);
  const r = await performTunnelHandshake(true, {
    socket: new MessageSocket(ws),
    clock: systemClock,
    timeoutMs: 5000,
    staticKey: keys[0],
    meshId: MESH_ID,
    payload: new Uint8Array(0),
    verifyRemote: () => true,
  });
  const client = new Tunnel({ ws, transport: r.transport, config, clock: systemClock, random: systemRandom, logger: silent, path: 'bench', earlyMessages: r.earlyMessages });
  while (serverTunnel === undefined) await new Promise((res) => setTimeout(res, 5));
  const st = await serverTunnel;
  return {
    client,
    server: st,
    async close() {
      client.destroy();
      st.destroy();
      await server.close();
    },
  };
}

function sessionOn(tunnel: Tunnel, isInitiator: boolean, mux: Partial<MuxConfig>, onStream: (s: MuxStream) => void): MuxSession {
  const session = new MuxSession({
    send: (f) => tunnel.send(f),
    bufferedBytes: () => tunnel.bufferedBytes(),
    isInitiator,
    config: mux,
    logger: silent,
    onStream: (s) => onStream(s),
    onProtocolError: (e) => {
      throw e;
    },
  });
  tunnel.onFrame((f) => {
    if ('streamId' in f) session.handleFrame(f);
  });
  tunnel.onDrain(() => session.onTunnelDrain());
  return session;
}

export interface MuxThroughput {
  bytes: number;
  ms: number;
  mbPerSec: number;
  sha256Match: boolean;
}

/** Streams `totalBytes` from the dialling side to the accepting side over `streams` streams. */
export async function muxThroughput(totalBytes: number, streams: number, tunnel: Partial<TunnelConfig> = {}, mux: Partial<MuxConfig> = {}): Promise<MuxThroughput> {
  const config = verifyTunnelConfig(tunnel);
  const ends = await tunnelPair(config);
  const chunk = randomBytes(64 * 1024);
  const perStream = Math.floor(totalBytes / streams / chunk.length) * chunk.length;
  const expected = createHash('sha256');
  for (let i = 0; i < perStream / chunk.length; i++) expected.update(chunk);
  const expectedHex = expected.digest('hex');
  let matched = 0;
  const done = new Promise<void>((resolve) => {
    let finished = 0;
    sessionOn(ends.server, false, { isZeroCopySend: true, ...mux, tunnelHighWaterBytes: config.highWaterBytes }, (s) => {
      s.accept();
      const h = createHash('sha256');
      s.on('data', (d: Buffer) => h.update(d));
      s.on('end', () => {
        if (h.digest('hex') === expectedHex) matched++;
        if (++finished === streams) resolve();
      });
    });
  });
  const client = sessionOn(ends.client, true, { isZeroCopySend: true, ...mux, tunnelHighWaterBytes: config.highWaterBytes }, () => undefined);
  const start = performance.now();
  for (let k = 0; k < streams; k++) {
    const s = client.open('bench', 1);
    let sent = 0;
    const pump = (): void => {
      while (sent < perStream) {
        sent += chunk.length;
        const isLast = sent >= perStream;
        if (!s.write(chunk)) {
          if (isLast) s.end();
          else s.once('drain', pump);
          return;
        }
        if (isLast) s.end();
      }
    };
    s.once('accepted', pump);
  }
  await done;
  const ms = performance.now() - start;
  await ends.close();
  const bytes = perStream * streams;
  return { bytes, ms, mbPerSec: bytes / ms / 1000, sha256Match: matched === streams };
}

export interface ColdSetup {
  /** Milliseconds from dialling to the first byte back, one per run after the warm-up. */
  runsMs: number[];
  p50Ms: number;
  p90Ms: number;
}

/**
 * Cold setup in one process, as the JavaScript peers were measured: from dialling a fresh
 * tunnel to the first byte back through it. Each run is a new TCP connection, the WebSocket
 * upgrade, the Noise XX handshake with a certificate in messages 2 and 3 checked on each side as
 * the agent checks it (an Ed25519 signature, the mesh, the key), a mux stream opened with one
 * byte of early data, and that byte echoed by the other end; then the tunnel is closed. Both ends
 * share one core, so their CPU adds up in the time.
 */
export async function coldTunnelSetup(runs: number, warmup: number): Promise<ColdSetup> {
  const { meshId, identity, verifyRemote } = benchMesh();
  const serverSide = identity('server');
  const clientSide = identity('client');
  const config = verifyTunnelConfig({});
  const serverTunnels = new Set<Tunnel>();
  const server = new TunnelServer({
    host: '127.0.0.1',
    port: 0,
    routes: {
      '/t': (ws: WebSocket) => {
        void performTunnelHandshake(false, { socket: new MessageSocket(ws), clock: systemClock, timeoutMs: 5000, meshId, verifyRemote, ...serverSide }).then(
          (r) => {
            const tunnel = new Tunnel({ ws, transport: r.transport, config, clock: systemClock, random: systemRandom, logger: silent, path: 'bench', earlyMessages: r.earlyMessages });
            serverTunnels.add(tunnel);
            ws.once('close', () => serverTunnels.delete(tunnel));
            sessionOn(tunnel, false, { tunnelHighWaterBytes: config.highWaterBytes }, (s) => {
              s.accept();
              s.on('data', (d: Buffer) => s.write(d));
              s.on('end', () => s.end());
            });
          },
          () => undefined,
        );
      },
    },
    maxPendingHandshakes: 16,
    pendingHandshakes: () => 0,
    // one source opening 120 tunnels in a row: the per-source limit (which answers a reconnect
    // storm with 429) would refuse most of them, and it is not part of one tunnel's setup
    handshakeRatePerSecond: 1_000_000,
    handshakeBurst: 1_000_000,
    logger: silent,
  });
  const { port } = await server.listen();
  const runsMs: number[] = [];
  try {
    for (let i = 0; i < warmup + runs; i++) {
      const start = performance.now();
      const ws = await dialWebSocket(`ws://127.0.0.1:${port}/t`, 5000);
      const r = await performTunnelHandshake(true, { socket: new MessageSocket(ws), clock: systemClock, timeoutMs: 5000, meshId, verifyRemote, ...clientSide });
      const tunnel = new Tunnel({ ws, transport: r.transport, config, clock: systemClock, random: systemRandom, logger: silent, path: 'bench', earlyMessages: r.earlyMessages });
      const session = sessionOn(tunnel, true, { tunnelHighWaterBytes: config.highWaterBytes }, () => undefined);
      const stream = session.open('bench', 1);
      const echoed = new Promise<void>((resolve, reject) => {
        stream.once('data', () => resolve());
        stream.once('error', reject);
      });
      stream.write(Buffer.from([42]));
      await echoed;
      if (i >= warmup) runsMs.push(performance.now() - start);
      tunnel.destroy();
    }
  } finally {
    for (const tunnel of serverTunnels) tunnel.destroy();
    await server.close();
  }
  return summarize(runsMs);
}

/**
 * Baseline for cold setup: a fresh bare ws connection (TCP connect and the WebSocket upgrade, no
 * Noise, no certificates, no mux) and one byte echoed as a message.
 */
export async function coldBareWs(runs: number, warmup: number): Promise<ColdSetup> {
  const { WebSocketServer, WebSocket } = await import('ws');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const port = (wss.address() as { port: number }).port;
  wss.on('connection', (ws) => ws.on('message', (d: Buffer) => ws.send(d)));
  const runsMs: number[] = [];
  try {
    for (let i = 0; i < warmup + runs; i++) {
      const start = performance.now();
      const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
      await new Promise<void>((resolve, reject) => {
        client.once('open', () => client.send(Buffer.from([42])));
        client.once('message', () => resolve());
        client.once('error', reject);
      });
      if (i >= warmup) runsMs.push(performance.now() - start);
      client.terminate();
    }
  } finally {
    for (const ws of wss.clients) ws.terminate();
    wss.close();
  }
  return summarize(runsMs);
}

function summarize(runsMs: number[]): ColdSetup {
  const sorted = [...runsMs].sort((x, y) => x - y);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { runsMs, p50Ms: at(0.5), p90Ms: at(0.9) };
}

/** Baseline for the ratio: the same bytes as 64 KiB binary messages over a bare ws connection. */
export async function bareWsThroughput(totalBytes: number): Promise<MuxThroughput> {
  const { WebSocketServer, WebSocket } = await import('ws');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const port = (wss.address() as { port: number }).port;
  const chunk = randomBytes(64 * 1024);
  const count = Math.floor(totalBytes / chunk.length);
  const expected = createHash('sha256');
  for (let i = 0; i < count; i++) expected.update(chunk);
  const expectedHex = expected.digest('hex');
  const received = new Promise<boolean>((resolve) => {
    wss.on('connection', (ws) => {
      const h = createHash('sha256');
      let n = 0;
      ws.on('message', (d: Buffer) => {
        h.update(d);
        if (++n === count) resolve(h.digest('hex') === expectedHex);
      });
    });
  });
  const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, generateMask: (m: Buffer) => void m.fill(0) });
  await new Promise<void>((r) => client.once('open', () => r()));
  const start = performance.now();
  let sent = 0;
  const pump = (): void => {
    while (sent < count) {
      client.send(chunk);
      sent++;
      if (client.bufferedAmount > 4 * 1024 * 1024) {
        setImmediate(pump);
        return;
      }
    }
  };
  pump();
  const ok = await received;
  const ms = performance.now() - start;
  client.terminate();
  wss.close();
  const bytes = count * chunk.length;
  return { bytes, ms, mbPerSec: bytes / ms / 1000, sha256Match: ok };
}

if (process.argv[1]?.endsWith('mux-throughput.js')) {
  const mib = Number(process.argv[2] ?? 512);
  for (const streams of [1, 4]) {
    const r = await muxThroughput(mib * 2 ** 20, streams);
    process.stdout.write(`${streams} stream(s): ${(r.bytes / 2 ** 20).toFixed(0)} MiB in ${r.ms.toFixed(0)} ms = ${r.mbPerSec.toFixed(0)} MB/s, sha256 ${r.sha256Match ? 'ok' : 'MISMATCH'}\n`);
  }
}
