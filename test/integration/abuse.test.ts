import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TUNNEL_PATH } from '../../src/config/index.js';
import { ControlClient } from '../../src/control/index.js';
import { Ed25519Private, X25519Private } from '../../src/crypto/keys/index.js';
import type { Agent } from '../../src/daemon/index.js';
import { ErrorCodes } from '../../src/errors.js';
import { AUTHORITY_FILE, issueCert, meshIdOf } from '../../src/mesh/index.js';
import { MessageSocket, defaultTunnelConfig, performTunnelHandshake } from '../../src/tunnel/index.js';
import { fromHex } from '../../src/util/bytes.js';
import { systemClock } from '../../src/util/clock.js';
import { MAX_DATA_FRAME, decodeBatch, encodeBatch, encodeHandshakePayload, type Frame } from '../../src/wire/index.js';
import { makeAgent, peerState, sleep, waitFor } from './helpers.js';

/**
 * The tunnel port under abuse (issue 5), against a real agent A in this process with its real
 * peer B: while an attacker in another process floods A with 1,000 upgrade attempts a second from
 * one address, sends it random bytes (plain and after a valid upgrade), holds Slowloris
 * connections (half a header; an upgrade and then silence) and claims a 10 GiB WebSocket frame, and
 * while a member with a valid certificate breaks the protocol in every way below, A closes each
 * offender with a typed reason and B's traffic through A keeps at least half the rate it had
 * without abuse, measured in the same test.
 */

const HERE = dirname(fileURLToPath(import.meta.url));
const HANDSHAKE_TIMEOUT_MS = 2_000;
/** Alternating windows without and with abuse: B F B M B F B M B F B M B (seven and six). */
const WINDOWS = 13;
const WINDOW_MS = 700;
const ATTACK = {
  flood: '127.0.0.2',
  garbage: '127.0.0.3',
  garbageWs: '127.0.0.4',
  slowHeader: '127.0.0.5',
  slowUpgrade: '127.0.0.6',
  hugeFrame: '127.0.0.7',
  rogue: '127.0.1.', // + a counter: one address per rogue connection
};

interface AttackSummary {
  flood: { attempts: number; statuses: Record<string, number> };
  garbage: { connections: number; answered400: number; closeMs: number[] };
  garbageWs: { connections: number; upgraded: number; closeMs: number[]; closeCodes: Record<string, number> };
  slowHeader: { connections: number; closeMs: number[] };
  slowUpgrade: { connections: number; upgraded: number; closeFrameMs: number[]; closeMs: number[]; closeCodes: Record<string, number> };
  hugeFrame: { connections: number; upgraded: number; closeMs: number[]; closeCodes: Record<string, number> };
  stillOpen: number;
  elapsedMs: number;
}

interface Attacker {
  send(command: 'pause' | 'resume' | 'stop'): void;
  summary: Promise<AttackSummary>;
}

function startAttacker(options: Record<string, unknown>): Attacker {
  const child = spawn(process.execPath, [join(HERE, 'attacker.mjs'), JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
  child.stdin.on('error', () => undefined);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const summary = new Promise<AttackSummary>((resolve, reject) => {
    child.on('exit', (code) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as AttackSummary);
      } catch {
        reject(new Error(`attacker exited ${code}: ${out.slice(0, 500)} ${err.slice(0, 1000)}`));
      }
    });
  });
  summary.catch(() => undefined); // awaited by the test; a kill after a failed test is not a second error
  return {
    send: (command) => {
      if (child.stdin.writable) child.stdin.write(`${command}\n`);
    },
    summary,
  };
}

const max = (xs: number[]): number => xs.reduce((a, b) => Math.max(a, b), 0);
const min = (xs: number[]): number => xs.reduce((a, b) => Math.min(a, b), Infinity);

describe('the tunnel port under abuse: offenders closed with a reason, real peers keep their throughput', () => {
  let root: string;
  let a: Agent;
  let b: Agent;
  let sink: Server;
  let sinkPort: number;
  let sinkBytes = 0;
  let stall: Server;
  let stallPort: number;
  let vip: string;
  let tunnelPort: number;
  const logLines: Record<string, unknown>[] = [];
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'osm-abuse-'));
    const logStream = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line.startsWith('{')) logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    a = await makeAgent(root, 'a', 111, {}, { tunnelConfig: { handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS }, logger: pino({ level: 'info' }, logStream) });
    b = await makeAgent(root, 'b', 112);
    a.node.initMesh('abuse');
    await b.node.join(a.node.createToken(600_000, 1).token, undefined);
    await waitFor(() => peerState(a, 'b') === 'up' && peerState(b, 'a') === 'up', 20_000, 'a and b up');
    tunnelPort = Number(a.config.listen.split(':')[1]);
    // B provides a sink: whatever the client sends through A lands here and is counted
    sink = createServer((socket) => {
      sockets.add(socket);
      socket.on('data', (d: Buffer) => (sinkBytes += d.length));
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    });
    // A provides a target that never reads: the rogue's window violation has nowhere to drain
    stall = createServer((socket) => {
      sockets.add(socket);
      socket.pause();
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    });
    await Promise.all([new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r())), new Promise<void>((r) => stall.listen(0, '127.0.0.1', () => r()))]);
    sinkPort = (sink.address() as { port: number }).port;
    stallPort = (stall.address() as { port: number }).port;
    await new ControlClient({ socketPath: b.config.control }).expose({ name: 'sink', port: sinkPort });
    await new ControlClient({ socketPath: a.config.control }).expose({ name: 'stall', port: stallPort });
    await waitFor(() => a.status().services.some((s) => s.name === 'sink' && s.providers.some((p) => p.state === 'up')), 10_000, 'a to see sink');
    vip = a.status().services.find((s) => s.name === 'sink')!.vip;
    const before = sinkBytes;
    await waitFor(
      () => {
        const probe = connect(sinkPort, vip);
        probe.on('error', () => undefined);
        probe.on('connect', () => probe.end('ping'));
        return sinkBytes > before;
      },
      10_000,
      'data through the sink VIP',
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([a, b].filter((x) => x !== undefined).map((agent) => agent.close()));
    for (const s of sockets) s.destroy();
    sink?.close();
    stall?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 30_000);

  /**
   * A client on A sending as fast as it can, through the tunnel, to B's sink. `window(ms)` returns
   * the rate in MB/s over the next `ms`; the pump runs until `stop()`.
   */
  function startPump(): { window(ms: number): Promise<number>; stop(): void } {
    const socket = connect(sinkPort, vip);
    sockets.add(socket);
    socket.on('error', () => undefined);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let isStopped = false;
    const pump = (): void => {
      while (!isStopped && socket.write(chunk));
    };
    socket.on('connect', pump);
    socket.on('drain', pump);
    return {
      async window(ms) {
        const bytes0 = sinkBytes;
        const t0 = performance.now();
        await sleep(ms);
        return (sinkBytes - bytes0) / ((performance.now() - t0) / 1000) / 1e6;
      },
      stop() {
        isStopped = true;
        socket.destroy();
      },
    };
  }

  // ---- a member with a valid certificate that breaks the protocol ------------------------------

  interface Rogue {
    ws: WebSocket;
    frames: Frame[];
    closed: Promise<{ code: number; reason: string; afterMs: number }>;
    sendFrames(frames: Frame[]): number;
    sendPlaintext(plaintext: Uint8Array): Uint8Array;
    /** Restarts the clock of `closed.afterMs` (for bytes written past the transport). */
    markSent(): void;
  }

  function rogueIdentity(): { noise: X25519Private; cert: Uint8Array; meshId: Uint8Array } {
    const key = JSON.parse(readFileSync(join(root, 'a', 'state', AUTHORITY_FILE), 'utf8')) as { ed25519Private: string };
    const authority = Ed25519Private.fromPrivate(fromHex(key.ed25519Private));
    const signing = Ed25519Private.generate();
    const noise = X25519Private.generate();
    const cert = issueCert(authority, { meshName: 'abuse', name: 'mallory', ed25519Public: signing.publicKey, x25519Public: noise.publicKey, tags: [], isAdmin: false, nowMs: Date.now() });
    return { noise, cert, meshId: meshIdOf(authority.publicKey) };
  }

  let rogueCount = 0;

  async function rogueTunnel(): Promise<Rogue> {
    const id = rogueIdentity();
    // A new source address each time: A closes the offender first, so A keeps the last
    // connection's 4-tuple in TIME_WAIT, and a source port chosen again by bind() (which does not
    // know the destination) would have its SYNs answered with challenge ACKs, costing TCP retries
    // (seen at 63 s while the flood held thousands of ports). Real peers connect() without bind().
    const localAddress = `${ATTACK.rogue}${rogueCount++}`;
    const ws = new WebSocket(`ws://127.0.0.1:${tunnelPort}${TUNNEL_PATH}`, { localAddress, perMessageDeflate: false, maxPayload: 65_535 });
    ws.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(new Error(`rogue: HTTP ${res.statusCode}`)));
    });
    let sentAt = performance.now();
    const closed = new Promise<{ code: number; reason: string; afterMs: number }>((resolve) =>
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8'), afterMs: performance.now() - sentAt })),
    );
    const result = await performTunnelHandshake(true, {
      socket: new MessageSocket(ws),
      clock: systemClock,
      timeoutMs: 5_000,
      staticKey: id.noise,
      meshId: id.meshId,
      payload: encodeHandshakePayload({ cert: id.cert, record: undefined }),
      verifyRemote: (payload) => payload,
    });
    const frames: Frame[] = [];
    const onMessage = (data: Uint8Array): void => {
      try {
        frames.push(...decodeBatch(result.transport.open(data)));
      } catch {
        // A never sends garbage; a failure here would show as a missing frame below
      }
    };
    for (const early of result.earlyMessages) onMessage(early);
    ws.on('message', (data: Buffer) => onMessage(new Uint8Array(data)));
    // A's first transport message (gossip, ping) proves it accepted our certificate
    await waitFor(() => frames.length > 0, 5_000, "A's first frames to the rogue");
    return {
      ws,
      frames,
      closed,
      sendFrames(fs) {
        sentAt = performance.now();
        const sealed = result.transport.seal(encodeBatch(fs));
        ws.send(sealed);
        return sealed.length;
      },
      markSent() {
        sentAt = performance.now();
      },
      sendPlaintext(plaintext) {
        sentAt = performance.now();
        const sealed = result.transport.seal(plaintext);
        ws.send(sealed);
        return sealed;
      },
    };
  }

  /**
   * Every misbehaviour of a valid member, one step each, each on its own tunnel (set up before the
   * abuse starts, so that the steps measure A's reaction, not how long a new connection waits
   * behind a flood); `seen` gets what A did about it.
   */
  function misbehaviours(seen: Record<string, string>, rogues: Rogue[]): (() => Promise<void>)[] {
    const within = async <T>(what: string, p: Promise<T>): Promise<T> =>
      Promise.race([p, sleep(10_000).then(() => Promise.reject(new Error(`${what}: A did not react within 10 s`)))]);
    let r: Rogue;
    let c: { code: number; reason: string; afterMs: number };
    return [
  async () => {
    // data on a stream that was never opened: the tunnel is closed
    r = rogues[0]!;
    r.sendFrames([{ kind: 'data', streamId: 1, data: new Uint8Array(100) }]);
    c = await within('data on an unopened stream', r.closed);
    seen['data on a stream never opened'] = `close ${c.code} '${c.reason}' after ${c.afterMs.toFixed(0)} ms`;
    expect([c.code, c.reason]).toEqual([4000, 'mux-protocol']);
  },
  async () => {
    // a stream id used twice: the first open is refused (no such service), the second is fatal
    r = rogues[1]!;
    r.sendFrames([{ kind: 'open', streamId: 1, service: 'nosuch', port: 1, window: 262_144 }]);
    await waitFor(() => r.frames.some((f) => f.kind === 'reset' && f.streamId === 1), 5_000, 'reset of stream 1');
    r.sendFrames([{ kind: 'open', streamId: 1, service: 'stall', port: stallPort, window: 262_144 }]);
    c = await within('stream id reused', r.closed);
    seen['stream id reused'] = `close ${c.code} '${c.reason}' after ${c.afterMs.toFixed(0)} ms`;
    expect([c.code, c.reason]).toEqual([4000, 'mux-protocol']);
  },
  async () => {
    // data beyond the granted window: that stream is reset, the tunnel stays
    r = rogues[2]!;
    r.sendFrames([{ kind: 'open', streamId: 1, service: 'stall', port: stallPort, window: 262_144 }]);
    await waitFor(() => r.frames.some((f) => f.kind === 'accept' && f.streamId === 1), 5_000, 'accept of stream 1');
    const granted = (r.frames.find((f) => f.kind === 'accept') as Extract<Frame, { kind: 'accept' }>).window;
    const payload = new Uint8Array(MAX_DATA_FRAME).fill(0x77);
    const t0 = performance.now();
    // 16 MiB without waiting for credit: far past the largest window (4 MiB) and what the stalled
    // target's socket buffers can take
    for (let sent = 0; sent < 16 * 2 ** 20 && r.ws.readyState === WebSocket.OPEN; sent += payload.length) {
      r.sendFrames([{ kind: 'data', streamId: 1, data: payload }]);
      if (r.frames.some((f) => f.kind === 'reset')) break;
      if (r.ws.bufferedAmount > 2 * 2 ** 20) await sleep(1);
    }
    await waitFor(() => r.frames.some((f) => f.kind === 'reset' && f.streamId === 1), 10_000, 'reset of the stream that overran its window');
    const reset = r.frames.find((f) => f.kind === 'reset' && f.streamId === 1) as Extract<Frame, { kind: 'reset' }>;
    seen['window violation'] = `stream reset ${reset.code} after ${(performance.now() - t0).toFixed(0)} ms (window granted ${granted}); tunnel ${r.ws.readyState === WebSocket.OPEN ? 'kept' : 'closed'}`;
    expect(reset.code).toBe(ErrorCodes.WINDOW_EXCEEDED);
    expect(r.ws.readyState).toBe(WebSocket.OPEN);
    r.ws.terminate();
  },
  async () => {
    // a data frame inside a valid transport message claiming 10 GiB: the tunnel is closed
    r = rogues[3]!;
    r.sendPlaintext(Uint8Array.from([0x0a, 0x0a, 0x08, 0x01, 0x1a, 0x80, 0x80, 0x80, 0x80, 0x28, 0x00, 0x00]));
    c = await within('10 GiB protobuf length', r.closed);
    seen['10 GiB length in a data frame'] = `close ${c.code} '${c.reason}' after ${c.afterMs.toFixed(0)} ms`;
    expect([c.code, c.reason]).toEqual([4000, 'malformed']);
  },
  async () => {
    // a WebSocket frame header claiming 10 GiB on an established tunnel: refused before buffering
    r = rogues[4]!;
    const header = Buffer.alloc(14);
    header[0] = 0x82;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(10n * 2n ** 30n, 2);
    r.markSent();
    (r.ws as unknown as { _socket: Socket })._socket.write(header);
    c = await within('10 GiB WebSocket frame', r.closed);
    seen['10 GiB WebSocket frame from a member'] = `close ${c.code} after ${c.afterMs.toFixed(0)} ms`;
    expect(c.code).toBe(1009);
  },
  async () => {
    // a transport message replayed within the session: the nonce has moved on, the tunnel is closed
    r = rogues[5]!;
    const sealed = r.sendPlaintext(encodeBatch([{ kind: 'ping', id: 7 }]));
    await waitFor(() => r.frames.some((f) => f.kind === 'pong' && f.id === 7), 5_000, 'pong 7');
    r.ws.send(sealed);
    c = await within('replayed transport message', r.closed);
    seen['transport message replayed'] = `close ${c.code} '${c.reason}' after ${c.afterMs.toFixed(0)} ms`;
    expect([c.code, c.reason]).toEqual([4000, 'noise decrypt failed']);
  },
    ];
  }

  it('closes every offender of the port by the deadline: Slowloris, garbage (plain and after an upgrade), a 10 GiB frame', async () => {
    // no flood and no measurement here: the close times are the agent's, not a queue's
    const timed = startAttacker({
      host: '127.0.0.1',
      port: tunnelPort,
      path: TUNNEL_PATH,
      modes: ['slowHeader', 'slowUpgrade', 'hugeFrame', 'garbage', 'garbageWs'],
      durationMs: 2_000,
      addresses: ATTACK,
      slowConnections: 8,
      giveUpMs: 25_000,
    });
    const timing = await timed.summary;
    const report = {
      garbage: { connections: timing.garbage.connections, answered400: timing.garbage.answered400, maxCloseMs: max(timing.garbage.closeMs) },
      garbageAfterUpgrade: { connections: timing.garbageWs.connections, maxCloseMs: max(timing.garbageWs.closeMs), closeCodes: timing.garbageWs.closeCodes },
      slowlorisHalfHeader: { connections: timing.slowHeader.connections, closeMs: [min(timing.slowHeader.closeMs), max(timing.slowHeader.closeMs)] },
      slowlorisUpgradeThenSilence: {
        connections: timing.slowUpgrade.connections,
        closeFrameMs: [min(timing.slowUpgrade.closeFrameMs), max(timing.slowUpgrade.closeFrameMs)],
        socketGoneMs: [min(timing.slowUpgrade.closeMs), max(timing.slowUpgrade.closeMs)],
        closeCodes: timing.slowUpgrade.closeCodes,
      },
      hugeWebSocketFrame: { connections: timing.hugeFrame.connections, maxCloseMs: max(timing.hugeFrame.closeMs), closeCodes: timing.hugeFrame.closeCodes },
    };
    console.log(`[abuse] port offenders: ${JSON.stringify(report)}`);
    expect(timing.stillOpen).toBe(0);

    // plain garbage: 400 and closed at once
    expect(timing.garbage.closeMs.length).toBe(timing.garbage.connections);
    expect(timing.garbage.answered400).toBe(timing.garbage.connections);
    expect(max(timing.garbage.closeMs)).toBeLessThan(2_000);
    // garbage where WebSocket frames should be: a protocol close (1002/1009) or, at the latest, the handshake deadline
    expect(timing.garbageWs.closeMs.length).toBe(timing.garbageWs.connections);
    expect(max(timing.garbageWs.closeMs)).toBeLessThan(HANDSHAKE_TIMEOUT_MS + 1_500);

    // Slowloris: half a header by the tunnel port's deadline (SPEC §4: 10 s; the agent does not
    // hand its handshakeTimeoutMs to the server yet), an upgrade then silence by the Noise deadline
    expect(min(timing.slowHeader.closeMs)).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS - 100);
    expect(max(timing.slowHeader.closeMs)).toBeLessThanOrEqual(defaultTunnelConfig.handshakeTimeoutMs + 1_500);
    expect(timing.slowUpgrade.upgraded).toBe(timing.slowUpgrade.connections);
    // the close frame (4006) at the Noise deadline; the socket itself 2 s later at the latest, the
    // grace closeWs gives a peer to answer a close frame
    expect(timing.slowUpgrade.closeFrameMs).toHaveLength(timing.slowUpgrade.connections);
    expect(min(timing.slowUpgrade.closeFrameMs)).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS - 100);
    expect(max(timing.slowUpgrade.closeFrameMs)).toBeLessThan(HANDSHAKE_TIMEOUT_MS + 1_000);
    expect(max(timing.slowUpgrade.closeMs)).toBeLessThan(HANDSHAKE_TIMEOUT_MS + 2_000 + 1_000);
    expect(timing.slowUpgrade.closeCodes).toEqual({ '4006': timing.slowUpgrade.connections });

    // a 10 GiB frame header: 1009 before a byte of payload is buffered
    expect(timing.hugeFrame.closeCodes).toEqual({ '1009': timing.hugeFrame.connections });
    expect(max(timing.hugeFrame.closeMs)).toBeLessThan(2_000);

    expect(a.node.metrics.get('handshake_failed_total', ErrorCodes.HANDSHAKE_TIMEOUT)).toBeGreaterThanOrEqual(timing.slowUpgrade.connections);
    expect(peerState(a, 'b')).toBe('up');
  }, 60_000);

  it('keeps B up and at least half its throughput while flooded, fed garbage, Slowloris-ed and lied to by a member', async () => {
    // held open the whole time: Slowloris connections cost the agent a socket each, nothing more
    const held = startAttacker({ host: '127.0.0.1', port: tunnelPort, path: TUNNEL_PATH, modes: ['slowHeader', 'slowUpgrade'], addresses: ATTACK, slowConnections: 8, giveUpMs: 25_000 });
    // flood and garbage, switched on in the flood windows only
    const flood = startAttacker({
      host: '127.0.0.1',
      port: tunnelPort,
      path: TUNNEL_PATH,
      modes: ['flood', 'garbage', 'garbageWs'],
      floodPerSecond: 1_000,
      addresses: ATTACK,
      startPaused: true,
      giveUpMs: 25_000,
    });
    const reactions: Record<string, string> = {};
    const rogues: Rogue[] = [];
    for (let i = 0; i < 6; i++) rogues.push(await rogueTunnel());
    const steps = misbehaviours(reactions, rogues);
    const pump = startPump();
    await sleep(500); // windows grow, buffers fill
    // Windows with and without abuse alternate, so that load from elsewhere on this shared
    // machine (other test files, other processes) weighs on both alike; medians are compared.
    const baselines: number[] = [];
    const abused: number[] = [];
    const byKind: Record<'flood' | 'member', number[]> = { flood: [], member: [] };
    try {
      for (let i = 0; i < WINDOWS; i++) {
        // B F B M B F …: without abuse, flood + garbage, without, a member's misbehaviours
        const kind = i % 2 === 0 ? 'baseline' : i % 4 === 1 ? 'flood' : 'member';
        flood.send(kind === 'flood' ? 'resume' : 'pause');
        if (kind === 'baseline') {
          baselines.push(await pump.window(WINDOW_MS));
          continue;
        }
        const step = kind === 'member' ? async (): Promise<void> => {
          for (const next of steps.splice(0, 2)) await next();
        } : undefined;
        const [rate] = await Promise.all([pump.window(WINDOW_MS), step?.()]);
        abused.push(rate);
        byKind[kind].push(rate);
      }
    } finally {
      flood.send('stop');
      held.send('stop');
      pump.stop();
      for (const r of rogues) r.ws.terminate();
    }
    const [summary, holding] = await Promise.all([flood.summary, held.summary]);
    const median = (xs: number[]): number => {
      const sorted = [...xs].sort((x, y) => x - y);
      const mid = Math.floor(sorted.length / 2);
      return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
    };
    // each abuse window against the two windows without abuse around it: load from elsewhere
    // that comes and goes during the test moves both sides of each ratio alike
    const ratios = abused.map((rate, k) => rate / ((baselines[k]! + baselines[k + 1]!) / 2));
    const baseline = median(baselines);
    const duringAbuse = median(abused);
    const floodSeconds = ((WINDOWS / 4) * WINDOW_MS) / 1000;
    const report = {
      throughputMBps: {
        baselineWindows: baselines.map((x) => +x.toFixed(1)),
        floodWindows: byKind.flood.map((x) => +x.toFixed(1)),
        memberWindows: byKind.member.map((x) => +x.toFixed(1)),
        medianBaseline: +baseline.toFixed(1),
        medianDuringAbuse: +duringAbuse.toFixed(1),
        ratioOfMedians: +(duringAbuse / baseline).toFixed(2),
        ratioPerWindow: ratios.map((x) => +x.toFixed(2)),
        medianRatio: +median(ratios).toFixed(2),
      },
      flood: { ...summary.flood, perSecond: Math.round(summary.flood.attempts / floodSeconds) },
      garbage: { plain: summary.garbage.connections, afterUpgrade: summary.garbageWs.connections },
      slowlorisHeld: holding.slowHeader.connections + holding.slowUpgrade.connections,
      member: reactions,
    };
    console.log(`[abuse] under load: ${JSON.stringify(report, null, 1)}`);
    expect(steps).toEqual([]); // every misbehaviour ran inside an abuse window

    // B kept its service: at least half the rate it had without abuse
    expect(baselines).toHaveLength(abused.length + 1);
    expect(median(ratios)).toBeGreaterThanOrEqual(0.5);
    expect(peerState(a, 'b')).toBe('up');
    expect(summary.stillOpen).toBe(0);
    expect(holding.stillOpen).toBe(0);

    // the flood: burst + rate upgraded (the bucket refills in the windows without flood too, so
    // bounded by the flood process's whole life), everything else 429 before any Noise work
    const upgraded = summary.flood.statuses['HTTP/1.1 101 Switching Protocols'] ?? 0;
    // the attacker aims at 1,000 a second; on a loaded machine it gets less CPU than that needs
    expect(summary.flood.attempts / floodSeconds).toBeGreaterThan(400);
    expect(upgraded).toBeLessThanOrEqual(defaultTunnelConfig.handshakeBurst + defaultTunnelConfig.handshakeRatePerSecond * (summary.elapsedMs / 1000 + 1));
    expect(summary.flood.statuses['HTTP/1.1 429 Too Many Requests'] ?? 0).toBeGreaterThan(summary.flood.attempts * 0.7);

    // what A logged and counted about the member
    const metrics = a.node.metrics;
    expect(metrics.get('protocol_error_total', ErrorCodes.PROTOCOL)).toBeGreaterThanOrEqual(2);
    expect(metrics.get('protocol_error_total', ErrorCodes.MALFORMED_FRAME)).toBeGreaterThanOrEqual(1);
    expect(metrics.get('protocol_error_total', ErrorCodes.FRAME_TOO_LARGE)).toBeGreaterThanOrEqual(1);
    expect(metrics.get('protocol_error_total', ErrorCodes.NOISE_DECRYPT)).toBeGreaterThanOrEqual(1);
    expect(logLines.some((l) => l['msg'] === 'peer broke the stream protocol: closing the tunnel' && l['code'] === ErrorCodes.PROTOCOL)).toBe(true);
    const exported = a.metrics().find((f) => f.name === 'protocol_error_total');
    expect(exported?.samples.map((s) => s.labels?.['reason'])).toEqual(expect.arrayContaining([ErrorCodes.PROTOCOL, ErrorCodes.MALFORMED_FRAME, ErrorCodes.NOISE_DECRYPT]));
  }, 120_000);
});
