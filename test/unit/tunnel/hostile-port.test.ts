import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { ErrorCodes } from '../../../src/errors.js';
import { AddressRateLimiter, TunnelServer, defaultTunnelConfig, sourceKey, type TunnelRefusal, type TunnelServerInit } from '../../../src/tunnel/index.js';
import { expectMeshError } from '../../helpers/mesh-error.js';

/**
 * The tunnel port before any Noise byte (issue 5, hostile input): the per-source token bucket, the
 * per-source bound on connections in their handshake, and the handshake deadline for sockets that
 * never finish their HTTP request (Slowloris).
 */

const logger = pino({ level: 'silent' });
const PATH = '/osmoda-mesh/v1';

function fakeClock(): { monotonicMs: () => number; advance: (ms: number) => void } {
  let now = 1_000;
  return { monotonicMs: () => now, advance: (ms) => (now += ms) };
}

describe('AddressRateLimiter', () => {
  it('lets a source burst, then refills at ratePerSecond; other sources have their own bucket', () => {
    const clock = fakeClock();
    const limiter = new AddressRateLimiter(clock, { ratePerSecond: 10, burst: 5 });
    for (let i = 0; i < 5; i++) expect(limiter.tryTake('192.0.2.1')).toBe(true);
    expect(limiter.tryTake('192.0.2.1')).toBe(false);
    expect(limiter.tryTake('192.0.2.2')).toBe(true);
    clock.advance(100); // one token
    expect(limiter.tryTake('192.0.2.1')).toBe(true);
    expect(limiter.tryTake('192.0.2.1')).toBe(false);
    clock.advance(10_000); // refills to the burst, not beyond
    for (let i = 0; i < 5; i++) expect(limiter.tryTake('192.0.2.1')).toBe(true);
    expect(limiter.tryTake('192.0.2.1')).toBe(false);
    expect(limiter.refused).toBe(3);
  });

  it('1,000 attempts in one second from one address: burst + rate get through', () => {
    const clock = fakeClock();
    const limiter = new AddressRateLimiter(clock);
    let allowed = 0;
    for (let i = 0; i < 1_000; i++) {
      clock.advance(1);
      if (limiter.tryTake('198.51.100.7')) allowed++;
    }
    const { ratePerSecond, burst } = limiter.config;
    expect(allowed).toBeGreaterThanOrEqual(burst);
    expect(allowed).toBeLessThanOrEqual(burst + ratePerSecond + 1);
  });

  it('keys IPv6 by /64 and IPv4-mapped addresses by their IPv4 address', () => {
    expect(sourceKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:0db8:0001:0002::')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
    expect(sourceKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(sourceKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(sourceKey('192.0.2.1')).toBe('192.0.2.1');
    expect(sourceKey(undefined)).toBe('?');
    const limiter = new AddressRateLimiter(fakeClock(), { ratePerSecond: 1, burst: 2 });
    expect(limiter.tryTake('2001:db8:1:2::1')).toBe(true);
    expect(limiter.tryTake('2001:db8:1:2::2')).toBe(true);
    expect(limiter.tryTake('2001:db8:1:2:ffff::3')).toBe(false); // same /64: one bucket
    expect(limiter.tryTake('2001:db8:1:3::1')).toBe(true);
  });

  it('tracks at most maxSources sources, forgetting the least recently seen', () => {
    const limiter = new AddressRateLimiter(fakeClock(), { ratePerSecond: 1, burst: 1, maxSources: 100 });
    for (let i = 0; i < 10_000; i++) limiter.tryTake(`10.0.${i >> 8}.${i & 0xff}`);
    expect(limiter.size).toBe(100);
  });

  it('refuses a limit that is not a positive number', () => {
    expectMeshError(() => new AddressRateLimiter(fakeClock(), { ratePerSecond: 0 }), ErrorCodes.INVALID_CONFIG, /ratePerSecond/);
    expectMeshError(() => new AddressRateLimiter(fakeClock(), { burst: Number.NaN }), ErrorCodes.INVALID_CONFIG, /burst/);
  });
});

// ---- a TunnelServer on 127.0.0.1, attacked from other loopback addresses -----------------------

interface Harness {
  server: TunnelServer;
  port: number;
  refused: { reason: TunnelRefusal; from: string | undefined }[];
  upgraded: WebSocket[];
}

const servers: TunnelServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function startServer(init: Partial<TunnelServerInit> = {}): Promise<Harness> {
  const refused: Harness['refused'] = [];
  const upgraded: WebSocket[] = [];
  const server = new TunnelServer({
    host: '127.0.0.1',
    port: 0,
    // the route keeps upgraded sockets open and silent: only the server's own limits act on them
    routes: { [PATH]: (ws) => void upgraded.push(ws) },
    maxPendingHandshakes: 1_000,
    pendingHandshakes: () => 0,
    logger,
    onRefused: (reason, from) => void refused.push({ reason, from }),
    ...init,
  });
  servers.push(server);
  const { port } = await server.listen();
  return { server, port, refused, upgraded };
}

interface Probe {
  socket: Socket;
  /** The status line of the first answer ('' when closed without one). */
  status: Promise<string>;
  /** ms from connect until the server closed the connection. */
  closedAfterMs: Promise<number>;
}

function probe(port: number, localAddress: string, send: string | Buffer | undefined): Probe {
  const started = performance.now();
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  sockets.push(socket);
  let data = '';
  socket.on('error', () => undefined);
  if (send !== undefined) socket.on('connect', () => socket.write(send));
  const closedAfterMs = new Promise<number>((resolve) => socket.on('close', () => resolve(performance.now() - started)));
  const status = new Promise<string>((resolve) => {
    socket.on('data', (d: Buffer) => {
      data += d.toString('latin1');
      if (data.includes('\r\n')) resolve(data.slice(0, data.indexOf('\r\n')));
    });
    socket.on('close', () => resolve(data.split('\r\n')[0] ?? ''));
  });
  return { socket, status, closedAfterMs };
}

function upgradeRequest(port: number): string {
  return (
    `GET ${PATH} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('TunnelServer under abuse', () => {
  it('Slowloris: a partial HTTP header then silence is closed at the handshake deadline, not 30 s later', async () => {
    const h = await startServer({ handshakeTimeoutMs: 500 });
    const partial = probe(h.port, '127.0.0.2', `GET ${PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n`);
    const nothing = probe(h.port, '127.0.0.2', undefined); // connects and never sends a byte
    const [a, b] = await Promise.all([partial.closedAfterMs, nothing.closedAfterMs]);
    console.log(`[abuse] slowloris on TunnelServer (deadline 500 ms): partial header closed after ${a.toFixed(0)} ms, silent connection after ${b.toFixed(0)} ms`);
    for (const ms of [a, b]) {
      expect(ms).toBeGreaterThanOrEqual(450);
      expect(ms).toBeLessThan(1_500);
    }
    expect(h.refused.filter((r) => r.reason === 'request-timeout')).toHaveLength(2);
    expect(h.server.refusals()['request-timeout']).toBe(2);
  });

  it('the default deadline is the 10 s of SPEC §4 (node alone checked it only every 30 s)', () => {
    expect(defaultTunnelConfig.handshakeTimeoutMs).toBe(10_000);
  });

  it('an upgraded socket is left to the Noise handshake deadline (the HTTP deadline does not cut it)', async () => {
    const h = await startServer({ handshakeTimeoutMs: 300 });
    const p = probe(h.port, '127.0.0.3', upgradeRequest(h.port));
    expect(await p.status).toBe('HTTP/1.1 101 Switching Protocols');
    await sleep(600);
    expect(p.socket.destroyed).toBe(false);
    expect(h.upgraded).toHaveLength(1);
    expect(h.refused).toEqual([]);
  });

  it('1,000 upgrade attempts per second from one address: burst + rate are upgraded, the rest get 429, another address is served at once', async () => {
    const h = await startServer({ handshakeTimeoutMs: 10_000, maxPendingPerSource: 10_000 });
    const { handshakeRatePerSecond: rate, handshakeBurst: burst } = defaultTunnelConfig;
    const statuses = new Map<string, number>();
    const probes: Probe[] = [];
    const started = performance.now();
    // 1,000 attempts spread over one second, 50 every 50 ms
    for (let tick = 0; tick < 20; tick++) {
      for (let i = 0; i < 50; i++) probes.push(probe(h.port, '127.0.0.4', upgradeRequest(h.port)));
      if (tick === 10) {
        // a real peer from another address in the middle of the flood
        const peer = probe(h.port, '127.0.0.5', upgradeRequest(h.port));
        expect(await peer.status).toBe('HTTP/1.1 101 Switching Protocols');
      }
      await sleep(50);
    }
    for (const p of probes) {
      const status = (await p.status) || '(closed)';
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    const elapsedS = (performance.now() - started) / 1000;
    const upgraded = statuses.get('HTTP/1.1 101 Switching Protocols') ?? 0;
    console.log(`[abuse] 1,000 upgrade attempts from one address in ${elapsedS.toFixed(2)} s: ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(upgraded).toBeGreaterThanOrEqual(burst);
    expect(upgraded).toBeLessThanOrEqual(burst + Math.ceil(rate * elapsedS) + 1);
    expect(statuses.get('HTTP/1.1 429 Too Many Requests') ?? 0).toBeGreaterThan(1_000 - upgraded - 50); // a few may see only the close
    expect(h.refused.filter((r) => r.reason === 'rate-limited').length).toBe(1_000 - upgraded);
    expect(h.refused.every((r) => r.from === '127.0.0.4')).toBe(true);
  }, 30_000);

  it('one address cannot hold more than maxPendingPerSource connections in their handshake; others still can', async () => {
    const h = await startServer({ handshakeTimeoutMs: 700, maxPendingPerSource: 4, handshakeBurst: 100 });
    const held = Array.from({ length: 4 }, () => probe(h.port, '127.0.0.6', upgradeRequest(h.port)));
    for (const p of held) expect(await p.status).toBe('HTTP/1.1 101 Switching Protocols');
    expect(await probe(h.port, '127.0.0.6', upgradeRequest(h.port)).status).toBe('HTTP/1.1 429 Too Many Requests');
    expect(await probe(h.port, '127.0.0.7', upgradeRequest(h.port)).status).toBe('HTTP/1.1 101 Switching Protocols');
    expect(h.refused.map((r) => r.reason)).toEqual(['source-busy']);
    // past the deadline those connections are no longer young: the source may connect again
    await sleep(800);
    expect(await probe(h.port, '127.0.0.6', upgradeRequest(h.port)).status).toBe('HTTP/1.1 101 Switching Protocols');
  });

  it('random bytes, plain HTTP and other paths are refused with their reason', async () => {
    const h = await startServer();
    const garbage = randomBytes(4096);
    garbage[0] = 0; // never an HTTP method
    const g = probe(h.port, '127.0.0.8', garbage);
    const plain = probe(h.port, '127.0.0.8', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const other = probe(h.port, '127.0.0.8', upgradeRequest(h.port).replace(PATH, '/elsewhere'));
    await Promise.all([g.closedAfterMs, plain.status, other.closedAfterMs]);
    expect(await plain.status).toMatch(/^HTTP\/1\.1 426 /);
    expect(await other.status).toBe('HTTP/1.1 404 Not Found');
    expect(h.refused.map((r) => r.reason).sort()).toEqual(['malformed-request', 'not-found', 'not-websocket']);
  });
});
