import { describe, it, expect, afterEach } from 'vitest';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { promises as dnsPromises } from 'node:dns';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { pino } from 'pino';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import {
  DnsServer,
  Rcode,
  RecordType,
  buildQuery,
  buildResponse,
  parseMessage,
  serializeMessage,
  type DnsLookup,
  type DnsMessage,
  type DnsServerInit,
} from '../../../src/names/index.js';

const logger = pino({ level: 'silent' });
const HOST = '127.0.0.1';
const QUERY_TIMEOUT_MS = 3000;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const services: Record<string, string[]> = {
  cache: ['127.77.1.2'],
  db: ['127.77.1.3', '127.77.1.4'],
  svc: ['127.77.0.9'],
  many: Array.from({ length: 60 }, (_, i) => `127.77.2.${i + 1}`),
};
const meshLookup: DnsLookup = (name) => (services[name] === undefined ? undefined : { addresses: services[name]!, ttlSeconds: 5 });

async function startServer(init: Partial<DnsServerInit> = {}): Promise<{ server: DnsServer; port: number }> {
  const server = new DnsServer({ host: HOST, port: 0, logger, lookup: meshLookup, upstreamTimeoutMs: 500, ...init });
  await server.start();
  cleanups.push(() => server.close());
  return { server, port: server.address().port };
}

function resolverFor(port: number): dnsPromises.Resolver {
  const r = new dnsPromises.Resolver({ timeout: 1000, tries: 1 });
  r.setServers([`${HOST}:${port}`]);
  return r;
}

/** Sends one datagram and returns the first answer, or undefined after `waitMs`. */
function udpExchange(port: number, packet: Uint8Array, waitMs = QUERY_TIMEOUT_MS): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      socket.close();
      resolve(undefined);
    }, waitMs);
    socket.on('message', (msg) => {
      clearTimeout(timer);
      socket.close();
      resolve(new Uint8Array(msg));
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
    socket.send(packet, port, HOST);
  });
}

async function udpQuery(port: number, msg: DnsMessage): Promise<DnsMessage> {
  const answer = await udpExchange(port, serializeMessage(msg));
  if (answer === undefined) throw new Error('no udp answer');
  return parseMessage(answer);
}

/** Writes all packets framed on one connection at once and collects `expect` framed answers. */
function tcpExchange(port: number, packets: Uint8Array[], expectCount = packets.length): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port });
    const answers: Uint8Array[] = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`tcp: got ${answers.length} of ${expectCount} answers`));
    }, QUERY_TIMEOUT_MS);
    socket.on('connect', () => {
      socket.write(Buffer.concat(packets.map((p) => Buffer.concat([Buffer.from([p.length >> 8, p.length & 0xff]), p]))));
    });
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        answers.push(new Uint8Array(buf.subarray(2, 2 + len)));
        buf = buf.subarray(2 + len);
      }
      if (answers.length >= expectCount) {
        clearTimeout(timer);
        socket.destroy();
        resolve(answers);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function rejectionCode(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}

/**
 * A tiny upstream on one port for UDP and TCP. Its UDP side can be told to answer with TC set (to
 * force the TCP retry) or to stay silent (to force a timeout).
 */
async function startResponder(opts: { udp: 'answer' | 'truncate' | 'silent'; address: string }): Promise<{ port: number; udpSeen: () => number; tcpSeen: () => number }> {
  let udpSeen = 0;
  let tcpSeen = 0;
  const answerFor = (bytes: Uint8Array, truncate: boolean): Uint8Array => {
    const q = parseMessage(bytes);
    const r = buildResponse(q, {
      rcode: Rcode.NOERROR,
      truncated: truncate,
      answers: truncate ? [] : [{ name: q.questions[0]!.name, type: RecordType.A, class: 1, ttl: 42, data: { kind: 'a', address: opts.address } }],
    });
    return serializeMessage(r);
  };
  for (let attempt = 0; attempt < 10; attempt++) {
    const tcp = net.createServer((socket) => {
      let buf = Buffer.alloc(0);
      socket.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          tcpSeen++;
          const answer = answerFor(new Uint8Array(buf.subarray(2, 2 + buf.readUInt16BE(0))), false);
          socket.end(Buffer.concat([Buffer.from([answer.length >> 8, answer.length & 0xff]), answer]));
        }
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => tcp.listen(0, HOST, resolve));
    const port = (tcp.address() as net.AddressInfo).port;
    const udp = dgram.createSocket('udp4');
    const bound = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, HOST, () => resolve(true));
    });
    if (!bound) {
      tcp.close();
      continue;
    }
    udp.on('message', (msg, rinfo) => {
      udpSeen++;
      if (opts.udp === 'silent') return;
      udp.send(answerFor(new Uint8Array(msg), opts.udp === 'truncate'), rinfo.port, rinfo.address);
    });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          udp.close();
          tcp.close(() => resolve());
        }),
    );
    return { port, udpSeen: () => udpSeen, tcpSeen: () => tcpSeen };
  }
  throw new Error('no port free for udp and tcp');
}

describe('DnsServer: mesh names', () => {
  it('answers A for svc and svc.mesh (any case, trailing dot), through node:dns', async () => {
    const { port } = await startServer();
    const r = resolverFor(port);
    expect(await r.resolve4('cache')).toEqual(['127.77.1.2']);
    expect(await r.resolve4('cache.mesh')).toEqual(['127.77.1.2']);
    expect(await r.resolve4('CACHE.Mesh.')).toEqual(['127.77.1.2']);
    expect((await r.resolve4('db.mesh')).sort()).toEqual(['127.77.1.3', '127.77.1.4']);
    expect(await r.resolve4('svc.mesh', { ttl: true })).toEqual([{ address: '127.77.0.9', ttl: 5 }]);
  });

  it('calls lookup with the bare lowercased service name', async () => {
    const seen: string[] = [];
    const { port } = await startServer({ lookup: (n) => (seen.push(n), { addresses: ['127.77.0.7'], ttlSeconds: 1 }) });
    const r = resolverFor(port);
    await r.resolve4('Cache');
    await r.resolve4('cache.MESH.');
    expect(seen).toEqual(['cache', 'cache']);
  });

  it('AAAA and other types for a mesh name are NODATA (NOERROR, no answers), never NXDOMAIN', async () => {
    const { port } = await startServer();
    expect(await rejectionCode(resolverFor(port).resolve6('cache.mesh'))).toBe('ENODATA');
    for (const type of [RecordType.AAAA, RecordType.TXT, RecordType.MX]) {
      const answer = await udpQuery(port, buildQuery('cache.mesh', type, { id: 77 }));
      expect(answer.id).toBe(77);
      expect(answer.flags).toMatchObject({ qr: true, aa: true, rcode: Rcode.NOERROR });
      expect(answer.answers).toEqual([]);
    }
    // The zone apex exists too.
    const apex = await udpQuery(port, buildQuery('mesh', RecordType.A, { id: 78 }));
    expect(apex.flags.rcode).toBe(Rcode.NOERROR);
  });

  it('unknown x.mesh and unknown single labels are NXDOMAIN and never forwarded', async () => {
    const upstream = await startResponder({ udp: 'answer', address: '192.0.2.99' });
    const { server, port } = await startServer({ upstreams: [`${HOST}:${upstream.port}`] });
    const r = resolverFor(port);
    expect(await rejectionCode(r.resolve4('x.mesh'))).toBe('ENOTFOUND');
    expect(await rejectionCode(r.resolve4('nosuchsvc'))).toBe('ENOTFOUND');
    const raw = await udpQuery(port, buildQuery('nosuchsvc', RecordType.AAAA, { id: 5 }));
    expect(raw.flags.rcode).toBe(Rcode.NXDOMAIN);
    expect(raw.authorities).toEqual([]);
    expect(upstream.udpSeen()).toBe(0);
    expect(server.stats()).toMatchObject({ forwarded: 0, nxdomain: 3 });
  });

  it("lookup returning 'nxdomain' or throwing: NXDOMAIN and SERVFAIL", async () => {
    const { server, port } = await startServer({
      lookup: (n) => {
        if (n === 'boom') throw new Error('catalog broken');
        return 'nxdomain';
      },
    });
    expect((await udpQuery(port, buildQuery('gone.mesh', 1, { id: 1 }))).flags.rcode).toBe(Rcode.NXDOMAIN);
    expect((await udpQuery(port, buildQuery('boom.mesh', 1, { id: 2 }))).flags.rcode).toBe(Rcode.SERVFAIL);
    expect(server.stats().errors).toBe(1);
  });

  it('an answer too big for UDP comes back truncated (TC) and whole over TCP', async () => {
    const { port } = await startServer();
    const udp = await udpQuery(port, buildQuery('many.mesh', RecordType.A, { id: 9 }));
    expect(udp.flags.tc).toBe(true);
    expect(udp.answers).toEqual([]);
    expect(udp.questions[0]!.name).toBe('many.mesh');
    const [tcp] = await tcpExchange(port, [serializeMessage(buildQuery('many.mesh', RecordType.A, { id: 9 }))]);
    const msg = parseMessage(tcp!);
    expect(msg.flags.tc).toBe(false);
    expect(msg.answers).toHaveLength(60);
    // node:dns (c-ares) retries over TCP on its own when it sees TC.
    expect(await resolverFor(port).resolve4('many.mesh')).toHaveLength(60);
  });
});

describe('DnsServer: forwarding', () => {
  it('forwards other names to an upstream DnsServer and relays its answer with the client id', async () => {
    // The upstream owns the "test" domain, so it answers example.test itself.
    const { server: up, port: upPort } = await startServer({
      domain: 'test',
      lookup: (n) => (n === 'example' ? { addresses: ['192.0.2.7'], ttlSeconds: 30 } : undefined),
    });
    const { server, port } = await startServer({ upstreams: [`${HOST}:${upPort}`] });
    expect(await resolverFor(port).resolve4('example.test')).toEqual(['192.0.2.7']);
    const raw = await udpQuery(port, buildQuery('Example.TEST', RecordType.A, { id: 0x4242 }));
    expect(raw.id).toBe(0x4242);
    expect(raw.questions[0]!.name).toBe('Example.TEST');
    expect(raw.answers.map((a) => a.data)).toEqual([{ kind: 'a', address: '192.0.2.7' }]);
    expect(raw.flags.aa).toBe(true); // the upstream's flags are relayed as they are
    expect((await udpQuery(port, buildQuery('nope.test', RecordType.A, { id: 3 }))).flags.rcode).toBe(Rcode.NXDOMAIN);
    expect(server.stats().forwarded).toBe(3);
    expect(up.stats().queries).toBe(3);
  });

  it('SERVFAIL when there is no upstream', async () => {
    const { server, port } = await startServer();
    expect(await rejectionCode(resolverFor(port).resolve4('example.test'))).toBe('ESERVFAIL');
    const raw = await udpQuery(port, buildQuery('example.test', RecordType.A, { id: 11 }));
    expect(raw.flags.rcode).toBe(Rcode.SERVFAIL);
    expect(raw.id).toBe(11);
    expect(server.stats().servfail).toBe(2);
  });

  it('tries the next upstream after a timeout, and SERVFAILs when all fail', async () => {
    const silent = await startResponder({ udp: 'silent', address: '0.0.0.0' });
    const good = await startResponder({ udp: 'answer', address: '192.0.2.55' });
    const { port } = await startServer({ upstreams: [`${HOST}:${silent.port}`, `${HOST}:${good.port}`], upstreamTimeoutMs: 200 });
    const started = Date.now();
    const answer = await udpQuery(port, buildQuery('a.example', RecordType.A, { id: 12 }));
    expect(answer.answers.map((a) => a.data)).toEqual([{ kind: 'a', address: '192.0.2.55' }]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(silent.udpSeen()).toBe(1);

    const { server: lonely, port: lonelyPort } = await startServer({ upstreams: [`${HOST}:${silent.port}`], upstreamTimeoutMs: 200 });
    expect((await udpQuery(lonelyPort, buildQuery('b.example', 1, { id: 13 }))).flags.rcode).toBe(Rcode.SERVFAIL);
    expect(lonely.stats().errors).toBe(1);
  });

  it('retries over TCP when the upstream UDP answer is truncated, and uses TCP upstream for TCP clients', async () => {
    const up = await startResponder({ udp: 'truncate', address: '192.0.2.77' });
    const { port } = await startServer({ upstreams: [`${HOST}:${up.port}`] });
    const viaUdp = await udpQuery(port, buildQuery('big.example', RecordType.A, { id: 21 }));
    expect(viaUdp.flags.tc).toBe(false);
    expect(viaUdp.answers.map((a) => a.data)).toEqual([{ kind: 'a', address: '192.0.2.77' }]);
    expect([up.udpSeen(), up.tcpSeen()]).toEqual([1, 1]);
    const [viaTcp] = await tcpExchange(port, [serializeMessage(buildQuery('big.example', RecordType.A, { id: 22 }))]);
    expect(parseMessage(viaTcp!).id).toBe(22);
    expect([up.udpSeen(), up.tcpSeen()]).toEqual([1, 2]);
  });

  it('answers REFUSED beyond maxInFlight', async () => {
    const silent = await startResponder({ udp: 'silent', address: '0.0.0.0' });
    const { server, port } = await startServer({ upstreams: [`${HOST}:${silent.port}`], upstreamTimeoutMs: 800, maxInFlight: 1 });
    const pending = udpQuery(port, buildQuery('slow.example', 1, { id: 31 }));
    await new Promise((r) => setTimeout(r, 50));
    expect(server.stats().inFlight).toBe(1);
    const refused = await udpQuery(port, buildQuery('other.example', 1, { id: 32 }));
    expect(refused.flags.rcode).toBe(Rcode.REFUSED);
    expect((await pending).flags.rcode).toBe(Rcode.SERVFAIL);
  });
});

describe('DnsServer: transports and robustness', () => {
  it('answers several pipelined queries on one TCP connection', async () => {
    const { port } = await startServer();
    const answers = await tcpExchange(port, [
      serializeMessage(buildQuery('cache.mesh', RecordType.A, { id: 1 })),
      serializeMessage(buildQuery('cache.mesh', RecordType.AAAA, { id: 2 })),
      serializeMessage(buildQuery('nope.mesh', RecordType.A, { id: 3 })),
    ]);
    const byId = new Map(answers.map((a) => parseMessage(a)).map((m) => [m.id, m]));
    expect(byId.get(1)!.answers.map((a) => a.data)).toEqual([{ kind: 'a', address: '127.77.1.2' }]);
    expect(byId.get(2)!.flags.rcode).toBe(Rcode.NOERROR);
    expect(byId.get(2)!.answers).toEqual([]);
    expect(byId.get(3)!.flags.rcode).toBe(Rcode.NXDOMAIN);
  });

  it('malformed query: FORMERR with its id, unreadable header: no answer; the server keeps serving', async () => {
    const { server, port } = await startServer();
    // Header says one question, none follows.
    const broken = Uint8Array.from([0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    const formerr = parseMessage((await udpExchange(port, broken))!);
    expect(formerr).toMatchObject({ id: 0xabcd, flags: { qr: true, rcode: Rcode.FORMERR } });
    expect(await udpExchange(port, Uint8Array.from([1, 2, 3]), 300)).toBeUndefined();
    expect(await resolverFor(port).resolve4('cache.mesh')).toEqual(['127.77.1.2']);
    const [overTcp] = await tcpExchange(port, [broken]);
    expect(parseMessage(overTcp!).flags.rcode).toBe(Rcode.FORMERR);
    expect(server.stats()).toMatchObject({ formerr: 2, dropped: 1 });
    expect(server.stats().errors).toBeGreaterThanOrEqual(3);
  });

  it('ignores responses sent to it and answers NOTIMP for other opcodes', async () => {
    const { port } = await startServer();
    const response = serializeMessage(buildResponse(buildQuery('cache.mesh', 1, { id: 4 }), { rcode: 0 }));
    expect(await udpExchange(port, response, 300)).toBeUndefined();
    const notify = buildQuery('cache.mesh', 1, { id: 5 });
    notify.flags.opcode = 4;
    expect((await udpQuery(port, notify)).flags.rcode).toBe(Rcode.NOTIMP);
  });

  it('closes idle TCP connections', async () => {
    const { server, port } = await startServer({ tcpIdleTimeoutMs: 150 });
    const socket = net.connect({ host: HOST, port });
    const closedAfterMs = await new Promise<number>((resolve, reject) => {
      const started = Date.now();
      const guard = setTimeout(() => reject(new Error('idle connection not closed')), 3000);
      socket.on('close', () => {
        clearTimeout(guard);
        resolve(Date.now() - started);
      });
      socket.on('error', () => {});
    });
    expect(closedAfterMs).toBeGreaterThanOrEqual(100);
    // The server's side of the close may land a moment after the client's.
    for (let i = 0; i < 50 && server.stats().tcpConnections > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(server.stats().tcpConnections).toBe(0);
  });

  it.skipIf(!existsSync('/usr/bin/dig'))('dig +tcp gets the A record', async () => {
    const { port } = await startServer();
    const out = await new Promise<string>((resolve, reject) => {
      execFile('/usr/bin/dig', [`@${HOST}`, '-p', String(port), '+tcp', '+short', '+time=2', '+tries=1', 'svc.mesh'], { timeout: 5000 }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      );
    });
    expect(out.trim()).toBe('127.77.0.9');
  });
});

describe('DnsServer: lifecycle and config', () => {
  it('bind failure is PORT_IN_USE naming host:port', async () => {
    const { port } = await startServer();
    const second = new DnsServer({ host: HOST, port, logger, lookup: meshLookup });
    const err = await second.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MeshError);
    expect((err as MeshError).code).toBe(ErrorCodes.PORT_IN_USE);
    expect((err as MeshError).message).toContain(`${HOST}:${port}`);
    await second.close();
  });

  it('close() and destroy() are idempotent; close waits for an in-flight forward', async () => {
    const silent = await startResponder({ udp: 'silent', address: '0.0.0.0' });
    const server = new DnsServer({ host: HOST, port: 0, logger, lookup: meshLookup, upstreams: [`${HOST}:${silent.port}`], upstreamTimeoutMs: 300 });
    await server.start();
    const { port } = server.address();
    const pending = udpQuery(port, buildQuery('slow.example', 1, { id: 41 }));
    await new Promise((r) => setTimeout(r, 50));
    const first = server.close();
    const second = server.close();
    await Promise.all([first, second]);
    // The forward timed out while closing and its SERVFAIL still went out.
    expect((await pending).flags.rcode).toBe(Rcode.SERVFAIL);
    server.destroy();
    await server.close();
    expect(server.stats().inFlight).toBe(0);
    // The port is free again.
    const again = new DnsServer({ host: HOST, port, logger, lookup: meshLookup });
    await again.start();
    again.destroy();
    again.destroy();
  });

  it('destroy() aborts upstream waits at once', async () => {
    const silent = await startResponder({ udp: 'silent', address: '0.0.0.0' });
    const server = new DnsServer({ host: HOST, port: 0, logger, lookup: meshLookup, upstreams: [`${HOST}:${silent.port}`], upstreamTimeoutMs: 5000 });
    await server.start();
    const client = udpExchange(server.address().port, serializeMessage(buildQuery('slow.example', 1, { id: 51 })), 300);
    await new Promise((r) => setTimeout(r, 50));
    expect(server.stats().inFlight).toBe(1);
    const destroyedAt = Date.now();
    server.destroy();
    for (let i = 0; i < 50 && server.stats().inFlight > 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(server.stats().inFlight).toBe(0);
    expect(Date.now() - destroyedAt).toBeLessThan(1000);
    // Destroyed means no answer at all, not a late SERVFAIL.
    expect(await client).toBeUndefined();
  });

  it('rejects bad config with INVALID_CONFIG naming the field', () => {
    const base = { logger, lookup: meshLookup };
    expect(() => new DnsServer({ ...base, upstreams: ['dns.example:53'] })).toThrow(/dns upstreams: expected 'ip' or 'ip:port'/);
    expect(() => new DnsServer({ ...base, upstreams: ['127.0.0.1:70000'] })).toThrow(/dns upstreams/);
    expect(() => new DnsServer({ ...base, port: -1 })).toThrow(/dns port: expected 0..65535/);
    expect(() => new DnsServer({ ...base, host: 'localhost' })).toThrow(/dns host/);
    expect(() => new DnsServer({ ...base, maxInFlight: 0 })).toThrow(/dns maxInFlight/);
    expect(() => new DnsServer({ ...base, domain: '' })).toThrow(/dns domain/);
    for (const ok of ['127.0.0.53', '127.0.0.53:5353', '::1', '[::1]:5353']) {
      expect(() => new DnsServer({ ...base, upstreams: [ok] })).not.toThrow();
    }
    try {
      new DnsServer({ ...base, upstreams: ['nope'] });
    } catch (err) {
      expect((err as MeshError).code).toBe(ErrorCodes.INVALID_CONFIG);
    }
    expect(() => new DnsServer({ ...base }).address()).toThrow(/before start/);
  });
});
