/**
 * The agent's resolver (SPEC §2 names): answers `svc` and `svc.<domain>` for mesh services from
 * `lookup`, forwards every other name to the upstream resolvers, over UDP and TCP on one host:port.
 *
 * Clients are glibc stubs with `search mesh`, so `redis-cli -h cache` asks `cache.mesh` A *and*
 * AAAA: the AAAA must be NOERROR with no answers (NODATA), because NXDOMAIN for it would make glibc
 * report the whole name as unknown. Single-label names that `lookup` does not know are answered
 * NXDOMAIN here rather than forwarded: they are service names by intent and must not leak to the
 * upstream resolvers (or the network behind them).
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import type { Logger } from 'pino';
import { MeshError, ErrorCodes, toMeshError } from '../errors.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { systemRandom, type Random } from '../util/random.js';
import {
  DNS_CLASSIC_UDP_BYTES,
  DNS_HEADER_BYTES,
  Opcode,
  Rcode,
  RecordClass,
  RecordType,
  buildResponse,
  emptyFlags,
  parseHeader,
  parseMessage,
  serializeMessage,
  splitName,
  type DnsMessage,
  type DnsQuestion,
  type DnsRecord,
} from './dns-codec.js';

export interface DnsLookupResult {
  addresses: string[];
  ttlSeconds: number;
}

/** Called with the bare service name, lowercased ('cache' for `cache` and `Cache.mesh.`). */
export type DnsLookup = (name: string) => DnsLookupResult | 'nxdomain' | undefined;

export interface DnsServerInit {
  /** Default 127.77.0.53. */
  host?: string;
  /** Default 53; 0 picks a free port (the same one for UDP and TCP). */
  port?: number;
  /** Default 'mesh'. */
  domain?: string;
  lookup: DnsLookup;
  /** IP literals, 'host' or 'host:port' ('[v6]:port' for IPv6), tried in order. Default none. */
  upstreams?: readonly string[];
  logger: Logger;
  /** Queries being answered at once (in practice: waiting on an upstream). Default 256. */
  maxInFlight?: number;
  /** Per upstream attempt. Default 2000. */
  upstreamTimeoutMs?: number;
  /** A TCP client silent this long with nothing pending is disconnected. Default 10000 (RFC 7766 §6.2.3). */
  tcpIdleTimeoutMs?: number;
  /** Further connections are closed at once. Default 64. */
  maxTcpConnections?: number;
  /** Pipelined queries per TCP connection before reading from it pauses. Default 16. */
  maxQueriesPerConnection?: number;
  /** How long close() waits for in-flight queries before destroying. Default 2000. */
  closeTimeoutMs?: number;
  clock?: Clock;
  random?: Random;
}

export interface DnsServerStats {
  /** Messages received on either transport, malformed ones included. */
  queries: number;
  /** Responses sent. */
  answers: number;
  /** Queries sent on to an upstream resolver. */
  forwarded: number;
  /** Malformed queries, failed upstream exchanges, lookup failures. */
  errors: number;
  answeredLocally: number;
  nxdomain: number;
  servfail: number;
  formerr: number;
  refused: number;
  /** Messages dropped without an answer (unreadable header, responses sent to us, shutting down). */
  dropped: number;
  inFlight: number;
  tcpConnections: number;
}

interface Upstream {
  host: string;
  port: number;
  label: string;
}

interface TcpConn {
  socket: net.Socket;
  chunks: Buffer[];
  buffered: number;
  /** Length of the message being assembled, once its 2-byte prefix has arrived. */
  expected: number;
  pending: number;
}

const DEFAULTS = {
  host: '127.77.0.53',
  port: 53,
  domain: 'mesh',
  maxInFlight: 256,
  upstreamTimeoutMs: 2000,
  tcpIdleTimeoutMs: 10_000,
  maxTcpConnections: 64,
  maxQueriesPerConnection: 16,
  closeTimeoutMs: 2000,
} as const;

/** Attempts to find a port free for both UDP and TCP when asked for port 0. */
const PORT_ZERO_ATTEMPTS = 16;

function hostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function configError(field: string, what: string): MeshError {
  return new MeshError(ErrorCodes.INVALID_CONFIG, `dns ${field}: ${what}`);
}

function positiveInt(field: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1) throw configError(field, `expected a positive integer, got ${v}`);
  return v;
}

/** Upstreams must be IP literals: resolving a resolver's name would ask ourselves. */
export function parseUpstream(text: string): Upstream {
  const fail = (): MeshError =>
    configError('upstreams', `expected 'ip' or 'ip:port' ('[v6]:port' for IPv6), got '${String(text).slice(0, 60)}'`);
  if (typeof text !== 'string') throw fail();
  let host: string;
  let portText: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text);
  if (bracket !== null) {
    host = bracket[1]!;
    portText = bracket[2];
    if (!net.isIPv6(host)) throw fail();
  } else if (net.isIPv6(text)) {
    host = text;
  } else {
    const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(text);
    if (m === null || !net.isIPv4(m[1]!)) throw fail();
    host = m[1]!;
    portText = m[2];
  }
  const port = portText === undefined ? 53 : Number(portText);
  if (port < 1 || port > 65535) throw configError('upstreams', `port in '${text}' must be 1..65535, got ${port}`);
  return { host, port, label: hostPort(host, port) };
}

function bindError(err: unknown, proto: string, host: string, port: number): MeshError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const where = `${proto} ${hostPort(host, port)}`;
  switch (code) {
    case 'EADDRINUSE':
      return new MeshError(
        ErrorCodes.PORT_IN_USE,
        `dns: ${where} is already in use (another resolver such as systemd-resolved or dnsmasq?); free it or choose another dns listen address`,
        { cause: err },
      );
    case 'EACCES':
      return new MeshError(
        ErrorCodes.INVALID_CONFIG,
        `dns: not permitted to bind ${where} (ports below 1024 need CAP_NET_BIND_SERVICE); grant it or choose a port ≥ 1024`,
        { cause: err },
      );
    case 'EADDRNOTAVAIL':
      return new MeshError(ErrorCodes.INVALID_CONFIG, `dns: ${host} is not an address of this host (binding ${where})`, { cause: err });
    default:
      return toMeshError(err, ErrorCodes.INTERNAL, `dns: binding ${where}`);
  }
}

function sameQuestion(a: DnsQuestion | undefined, b: DnsQuestion | undefined): boolean {
  return a !== undefined && b !== undefined && a.type === b.type && a.class === b.class && a.name.toLowerCase() === b.name.toLowerCase();
}

/** What a UDP client can take: 512 bytes, or the size it advertises in an EDNS OPT record. */
function udpLimit(query: DnsMessage | undefined): number {
  const opt = query?.additionals.find((r) => r.type === RecordType.OPT);
  return opt === undefined ? DNS_CLASSIC_UDP_BYTES : Math.max(DNS_CLASSIC_UDP_BYTES, opt.class);
}

function withId(bytes: Uint8Array, id: number): Uint8Array {
  const out = new Uint8Array(bytes);
  out[0] = id >>> 8;
  out[1] = id & 0xff;
  return out;
}

function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  out.set(message, 2);
  return out;
}

export class DnsServer {
  private readonly host: string;
  private readonly requestedPort: number;
  private readonly domainLabels: string[];
  private readonly lookup: DnsLookup;
  private readonly upstreams: Upstream[];
  private readonly log: Logger;
  private readonly maxInFlight: number;
  private readonly upstreamTimeoutMs: number;
  private readonly tcpIdleTimeoutMs: number;
  private readonly maxTcpConnections: number;
  private readonly maxQueriesPerConnection: number;
  private readonly closeTimeoutMs: number;
  private readonly clock: Clock;
  private readonly random: Random;

  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private boundPort: number | undefined;
  private state: 'new' | 'starting' | 'running' | 'closing' | 'closed' = 'new';
  private closePromise: Promise<void> | undefined;
  private readonly conns = new Set<TcpConn>();
  /** Aborts every upstream exchange still waiting; used by destroy(). */
  private readonly upstreamAborts = new Set<() => void>();
  private readonly idleWaiters = new Set<() => void>();
  private inFlight = 0;
  private readonly counters = {
    queries: 0,
    answers: 0,
    forwarded: 0,
    errors: 0,
    answeredLocally: 0,
    nxdomain: 0,
    servfail: 0,
    formerr: 0,
    refused: 0,
    dropped: 0,
  };

  constructor(init: DnsServerInit) {
    this.host = init.host ?? DEFAULTS.host;
    if (!net.isIP(this.host)) throw configError('host', `expected an IP address, got '${String(this.host).slice(0, 60)}'`);
    const port = init.port ?? DEFAULTS.port;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw configError('port', `expected 0..65535, got ${port}`);
    this.requestedPort = port;
    const domain = init.domain ?? DEFAULTS.domain;
    try {
      this.domainLabels = splitName(domain.toLowerCase());
    } catch (err) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `dns domain: '${String(domain).slice(0, 60)}' is not a valid DNS name`, { cause: err });
    }
    if (this.domainLabels.length === 0) throw configError('domain', `expected a name such as 'mesh', got '${domain}'`);
    if (typeof init.lookup !== 'function') throw configError('lookup', `expected a function, got ${typeof init.lookup}`);
    this.lookup = init.lookup;
    this.upstreams = (init.upstreams ?? []).map(parseUpstream);
    this.maxInFlight = positiveInt('maxInFlight', init.maxInFlight, DEFAULTS.maxInFlight);
    this.upstreamTimeoutMs = positiveInt('upstreamTimeoutMs', init.upstreamTimeoutMs, DEFAULTS.upstreamTimeoutMs);
    this.tcpIdleTimeoutMs = positiveInt('tcpIdleTimeoutMs', init.tcpIdleTimeoutMs, DEFAULTS.tcpIdleTimeoutMs);
    this.maxTcpConnections = positiveInt('maxTcpConnections', init.maxTcpConnections, DEFAULTS.maxTcpConnections);
    this.maxQueriesPerConnection = positiveInt('maxQueriesPerConnection', init.maxQueriesPerConnection, DEFAULTS.maxQueriesPerConnection);
    this.closeTimeoutMs = positiveInt('closeTimeoutMs', init.closeTimeoutMs, DEFAULTS.closeTimeoutMs);
    this.clock = init.clock ?? systemClock;
    this.random = init.random ?? systemRandom;
    this.log = init.logger.child({ component: 'dns' });
  }

  /** Binds UDP and TCP on the same host:port. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `dns server: start() called in state '${this.state}'`);
    this.state = 'starting';
    const attempts = this.requestedPort === 0 ? PORT_ZERO_ATTEMPTS : 1;
    let lastError: MeshError | undefined;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const tcp = net.createServer((socket) => this.onTcpConnection(socket));
      let port: number;
      try {
        port = await this.listenTcp(tcp, this.requestedPort);
      } catch (err) {
        this.state = 'closed';
        throw bindError(err, 'tcp', this.host, this.requestedPort);
      }
      const udp = dgram.createSocket({ type: net.isIPv6(this.host) ? 'udp6' : 'udp4' });
      try {
        await this.bindUdp(udp, port);
      } catch (err) {
        udp.close();
        await new Promise<void>((resolve) => tcp.close(() => resolve()));
        lastError = bindError(err, 'udp', this.host, port);
        // With port 0 the kernel chose a TCP port whose UDP twin is taken: try another.
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && this.requestedPort === 0) continue;
        this.state = 'closed';
        throw lastError;
      }
      if (this.state !== 'starting') {
        // destroy() ran while binding.
        udp.close();
        tcp.close();
        throw new MeshError(ErrorCodes.INTERNAL, `dns server: destroyed while starting`);
      }
      this.tcp = tcp;
      this.udp = udp;
      this.boundPort = port;
      udp.on('message', (msg, rinfo) => this.onUdpMessage(msg, rinfo));
      udp.on('error', (err) => this.log.warn({ err }, 'dns udp socket error'));
      tcp.on('error', (err) => this.log.warn({ err }, 'dns tcp server error'));
      this.state = 'running';
      this.log.info({ listen: hostPort(this.host, port), upstreams: this.upstreams.map((u) => u.label) }, 'dns server listening');
      return;
    }
    this.state = 'closed';
    throw lastError ?? new MeshError(ErrorCodes.PORT_IN_USE, `dns: no port free for both udp and tcp on ${this.host}`);
  }

  address(): { host: string; port: number } {
    if (this.boundPort === undefined) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `dns server: address() before start()`);
    return { host: this.host, port: this.boundPort };
  }

  stats(): DnsServerStats {
    return { ...this.counters, inFlight: this.inFlight, tcpConnections: this.conns.size };
  }

  /** Stops taking queries, lets in-flight ones finish (up to closeTimeoutMs), then releases everything. */
  close(): Promise<void> {
    if (this.closePromise !== undefined) return this.closePromise;
    if (this.state === 'new' || this.state === 'closed') {
      this.state = 'closed';
      this.closePromise = Promise.resolve();
      return this.closePromise;
    }
    this.state = 'closing';
    this.tcp?.close();
    this.closePromise = (async () => {
      await this.waitIdle(this.closeTimeoutMs);
      // Let TCP clients receive the answers already written before the sockets go.
      for (const conn of this.conns) conn.socket.end();
      await this.waitConnsClosed(Math.min(this.closeTimeoutMs, 500));
      this.destroy();
    })();
    return this.closePromise;
  }

  /** Immediate: aborts upstream exchanges, drops connections, closes sockets. Idempotent. */
  destroy(err?: Error): void {
    if (this.state === 'closed') return;
    const wasRunning = this.state !== 'new';
    this.state = 'closed';
    if (err !== undefined) this.log.warn({ err }, 'dns server destroyed');
    for (const abort of [...this.upstreamAborts]) abort();
    this.upstreamAborts.clear();
    for (const conn of this.conns) conn.socket.destroy();
    this.conns.clear();
    if (this.udp !== undefined) {
      try {
        this.udp.close();
      } catch {
        // already closed
      }
    }
    this.tcp?.close();
    for (const wake of [...this.idleWaiters]) wake();
    this.closePromise ??= Promise.resolve();
    if (wasRunning) this.log.info('dns server closed');
  }

  // -------------------------------------------------------------------------------------------
  // transports

  private listenTcp(server: net.Server, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.host, port, exclusive: true }, () => {
        server.off('error', reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  private bindUdp(socket: dgram.Socket, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: this.host, port, exclusive: true }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
  }

  private onUdpMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const bytes = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
    void this.track(async () => {
      const response = await this.handle(bytes, 'udp');
      const udp = this.udp;
      if (response === undefined || this.state === 'closed' || udp === undefined) return;
      this.counters.answers++;
      // Stay in flight until the datagram is handed to the kernel, so close() does not close the
      // socket under a pending send.
      await new Promise<void>((resolve) => {
        udp.send(response, rinfo.port, rinfo.address, (err) => {
          if (err) this.log.debug({ err, client: hostPort(rinfo.address, rinfo.port) }, 'dns udp send failed');
          resolve();
        });
      });
    });
  }

  private onTcpConnection(socket: net.Socket): void {
    if (this.state !== 'running' || this.conns.size >= this.maxTcpConnections) {
      // Over the limit the connection is closed at once: the client falls back to another server
      // or retries, and nothing is buffered for it.
      this.counters.dropped++;
      socket.destroy();
      return;
    }
    const conn: TcpConn = { socket, chunks: [], buffered: 0, expected: -1, pending: 0 };
    this.conns.add(conn);
    socket.setNoDelay(true);
    socket.setTimeout(this.tcpIdleTimeoutMs, () => {
      if (conn.pending === 0) socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => {
      conn.chunks.push(chunk);
      conn.buffered += chunk.length;
      this.drainTcp(conn);
    });
    socket.on('error', (err) => this.log.debug({ err }, 'dns tcp client error'));
    socket.on('close', () => {
      this.conns.delete(conn);
      for (const wake of [...this.idleWaiters]) wake();
    });
  }

  /** Extracts whole length-prefixed messages; the 16-bit prefix caps each at 65535 bytes. */
  private drainTcp(conn: TcpConn): void {
    while (conn.pending < this.maxQueriesPerConnection && !conn.socket.destroyed) {
      if (conn.expected < 0) {
        if (conn.buffered < 2) return;
        this.flatten(conn);
        conn.expected = conn.chunks[0]!.readUInt16BE(0);
        conn.chunks[0] = conn.chunks[0]!.subarray(2);
        conn.buffered -= 2;
        if (conn.expected < DNS_HEADER_BYTES) {
          // No header to answer FORMERR with, and framing can no longer be trusted.
          this.counters.queries++;
          this.counters.errors++;
          this.counters.dropped++;
          conn.socket.destroy();
          return;
        }
      }
      if (conn.buffered < conn.expected) return;
      this.flatten(conn);
      const all = conn.chunks[0]!;
      const message = all.subarray(0, conn.expected);
      conn.chunks = all.length > conn.expected ? [all.subarray(conn.expected)] : [];
      conn.buffered -= conn.expected;
      conn.expected = -1;
      this.answerTcp(conn, new Uint8Array(message.buffer, message.byteOffset, message.byteLength));
    }
    // Too many answers outstanding: stop reading until some are written.
    conn.socket.pause();
  }

  private flatten(conn: TcpConn): void {
    if (conn.chunks.length > 1) conn.chunks = [Buffer.concat(conn.chunks)];
  }

  private answerTcp(conn: TcpConn, bytes: Uint8Array): void {
    conn.pending++;
    void this.track(async () => {
      let response: Uint8Array | undefined;
      try {
        response = await this.handle(bytes, 'tcp');
      } finally {
        conn.pending--;
      }
      if (conn.socket.destroyed) return;
      if (response !== undefined) {
        this.counters.answers++;
        conn.socket.write(frame(response));
      }
      if (conn.pending < this.maxQueriesPerConnection && this.state === 'running') {
        conn.socket.resume();
        this.drainTcp(conn);
      }
    }, () => conn.socket.destroy());
  }

  /**
   * Runs one query's work counted in `inFlight` from before its first line to after its answer is
   * handed over: the maxInFlight check and close() both rely on that count.
   */
  private async track(work: () => Promise<void>, onError?: () => void): Promise<void> {
    this.inFlight++;
    try {
      await work();
    } catch (err) {
      this.internalError(err);
      onError?.();
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) for (const wake of [...this.idleWaiters]) wake();
    }
  }

  private internalError(err: unknown): void {
    this.counters.errors++;
    this.log.error({ err }, 'dns query handling failed');
  }

  private waitIdle(timeoutMs: number): Promise<void> {
    return this.waitUntil(() => this.inFlight === 0 || this.state === 'closed', timeoutMs);
  }

  private waitConnsClosed(timeoutMs: number): Promise<void> {
    return this.waitUntil(() => this.conns.size === 0 || this.state === 'closed', timeoutMs);
  }

  private waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const finish = (): void => {
        this.idleWaiters.delete(check);
        this.clock.clearTimeout(timer);
        resolve();
      };
      const check = (): void => {
        if (done()) finish();
      };
      const timer = this.clock.setTimeout(finish, timeoutMs);
      this.idleWaiters.add(check);
    });
  }

  // -------------------------------------------------------------------------------------------
  // answering

  /** The response to send, or undefined to send nothing. Never throws for bad input. */
  private async handle(bytes: Uint8Array, transport: 'udp' | 'tcp'): Promise<Uint8Array | undefined> {
    this.counters.queries++;
    if (this.state !== 'running') {
      this.counters.dropped++;
      return undefined;
    }
    if (bytes.length < DNS_HEADER_BYTES) {
      this.counters.errors++;
      this.counters.dropped++;
      return undefined;
    }
    const header = parseHeader(bytes);
    if (header.flags.qr) {
      // A response sent to us: answering it could loop between two servers.
      this.counters.dropped++;
      return undefined;
    }
    let query: DnsMessage;
    try {
      query = parseMessage(bytes);
    } catch (err) {
      this.counters.errors++;
      this.counters.formerr++;
      this.log.debug({ err, transport }, 'malformed dns query');
      return serializeMessage({
        id: header.id,
        flags: { ...emptyFlags(), qr: true, opcode: header.flags.opcode, rd: header.flags.rd, ra: true, rcode: Rcode.FORMERR },
        questions: [],
        answers: [],
        authorities: [],
        additionals: [],
      });
    }
    const response = await this.respond(query, bytes, transport);
    if (transport === 'udp' && response.length > udpLimit(query)) return this.truncated(response, query);
    return response;
  }

  private async respond(query: DnsMessage, raw: Uint8Array, transport: 'udp' | 'tcp'): Promise<Uint8Array> {
    const reply = (rcode: number, answers: DnsRecord[] = [], authoritative = false): Uint8Array => {
      if (rcode === Rcode.NXDOMAIN) this.counters.nxdomain++;
      else if (rcode === Rcode.SERVFAIL) this.counters.servfail++;
      else if (rcode === Rcode.FORMERR) this.counters.formerr++;
      else if (rcode === Rcode.REFUSED) this.counters.refused++;
      return serializeMessage(buildResponse(query, { rcode, answers, authoritative }));
    };
    if (query.flags.opcode !== Opcode.QUERY) return reply(Rcode.NOTIMP);
    if (query.questions.length !== 1) {
      this.counters.errors++;
      return reply(Rcode.FORMERR);
    }
    // inFlight includes this query. Over the limit we answer REFUSED rather than drop: the
    // answer costs no more than the query (no amplification) and tells the stub to move to its
    // next nameserver now instead of after its timeout.
    if (this.inFlight > this.maxInFlight) return reply(Rcode.REFUSED);

    const question = query.questions[0]!;
    const labels = splitName(question.name.toLowerCase());
    const d = this.domainLabels;
    const underDomain = labels.length >= d.length && d.every((l, i) => labels[labels.length - d.length + i] === l);
    if (underDomain || labels.length === 1) {
      const service = underDomain ? labels.slice(0, labels.length - d.length).join('.') : labels[0]!;
      this.counters.answeredLocally++;
      if (service === '') return reply(Rcode.NOERROR, [], true); // the zone apex exists, holds no A
      return this.answerLocal(question, service, reply);
    }
    return this.forward(query, raw, transport, reply);
  }

  private answerLocal(
    question: DnsQuestion,
    service: string,
    reply: (rcode: number, answers?: DnsRecord[], authoritative?: boolean) => Uint8Array,
  ): Uint8Array {
    let found: DnsLookupResult | 'nxdomain' | undefined;
    try {
      found = this.lookup(service);
    } catch (err) {
      this.counters.errors++;
      this.log.error({ err, service }, 'dns lookup failed');
      return reply(Rcode.SERVFAIL);
    }
    if (found === undefined || found === 'nxdomain') {
      this.log.trace({ service, qtype: question.type }, 'dns unknown mesh name');
      return reply(Rcode.NXDOMAIN, [], true);
    }
    if (question.class !== RecordClass.IN && question.class !== RecordClass.ANY) return reply(Rcode.REFUSED);
    // Only A exists for mesh names; any other type is NODATA (NOERROR, empty), never NXDOMAIN,
    // so that glibc's parallel AAAA query does not sink the A answer.
    if (question.type !== RecordType.A && question.type !== RecordType.ANY) return reply(Rcode.NOERROR, [], true);
    const ttl = Number.isFinite(found.ttlSeconds) ? Math.min(Math.max(0, Math.floor(found.ttlSeconds)), 0x7fffffff) : 0;
    const answers: DnsRecord[] = found.addresses
      .filter((a) => net.isIPv4(a))
      .map((address) => ({ name: question.name, type: RecordType.A, class: RecordClass.IN, ttl, data: { kind: 'a', address } }));
    this.log.trace({ service, vip: found.addresses[0] }, 'dns answered mesh name');
    return reply(Rcode.NOERROR, answers, true);
  }

  private async forward(
    query: DnsMessage,
    raw: Uint8Array,
    transport: 'udp' | 'tcp',
    reply: (rcode: number) => Uint8Array,
  ): Promise<Uint8Array> {
    if (this.upstreams.length === 0) return reply(Rcode.SERVFAIL);
    this.counters.forwarded++;
    let fallback: Uint8Array | undefined;
    for (const upstream of this.upstreams) {
      if (this.state === 'closed') break;
      const idBytes = this.random.bytes(2);
      const id = (idBytes[0]! << 8) | idBytes[1]!;
      const wire = withId(raw, id);
      try {
        let answer = transport === 'tcp' ? await this.askTcp(upstream, wire, id, query) : await this.askUdp(upstream, wire, id, query);
        // A truncated UDP answer is incomplete: ask the same upstream again over TCP (RFC 7766 §5).
        if (answer.tc && transport === 'udp') answer = await this.askTcp(upstream, wire, id, query);
        const relayed = withId(answer.bytes, query.id);
        // SERVFAIL or REFUSED from one upstream says nothing about the next: try it, but keep
        // this answer to relay if none does better.
        if (answer.rcode === Rcode.SERVFAIL || answer.rcode === Rcode.REFUSED) {
          fallback = relayed;
          continue;
        }
        return relayed;
      } catch (err) {
        this.counters.errors++;
        this.log.debug({ err, upstream: upstream.label }, 'dns upstream failed');
      }
    }
    if (fallback !== undefined) return fallback;
    return reply(Rcode.SERVFAIL);
  }

  private truncated(response: Uint8Array, query: DnsMessage): Uint8Array {
    const header = parseHeader(response);
    return serializeMessage({
      id: header.id,
      flags: { ...header.flags, tc: true },
      questions: query.questions,
      answers: [],
      authorities: [],
      additionals: [],
    });
  }

  /** Accepts only a well-formed response from the upstream's address with our id and question. */
  private acceptAnswer(bytes: Uint8Array, id: number, query: DnsMessage): { bytes: Uint8Array; tc: boolean; rcode: number } | undefined {
    try {
      const msg = parseMessage(bytes);
      if (msg.id !== id || !msg.flags.qr || !sameQuestion(msg.questions[0], query.questions[0])) return undefined;
      return { bytes, tc: msg.flags.tc, rcode: msg.flags.rcode };
    } catch {
      return undefined;
    }
  }

  private exchange<T>(
    upstream: Upstream,
    start: (settle: { resolve: (v: T) => void; reject: (e: Error) => void }) => () => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      let cleanup: () => void = () => {};
      let timer: TimerHandle | undefined;
      const finish = (): void => {
        done = true;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        this.upstreamAborts.delete(abort);
        cleanup();
      };
      const abort = (): void => {
        if (done) return;
        finish();
        reject(new MeshError(ErrorCodes.DIAL_FAILED, `dns upstream ${upstream.label}: aborted, server closing`));
      };
      this.upstreamAborts.add(abort);
      timer = this.clock.setTimeout(() => {
        if (done) return;
        finish();
        reject(new MeshError(ErrorCodes.DIAL_FAILED, `dns upstream ${upstream.label}: no answer within ${this.upstreamTimeoutMs} ms`));
      }, this.upstreamTimeoutMs);
      cleanup = start({
        resolve: (v) => {
          if (done) return;
          finish();
          resolve(v);
        },
        reject: (e) => {
          if (done) return;
          finish();
          reject(toMeshError(e, ErrorCodes.DIAL_FAILED, `dns upstream ${upstream.label}`));
        },
      });
      if (done) cleanup();
    });
  }

  private askUdp(upstream: Upstream, wire: Uint8Array, id: number, query: DnsMessage): Promise<{ bytes: Uint8Array; tc: boolean; rcode: number }> {
    return this.exchange(upstream, ({ resolve, reject }) => {
      // A fresh socket per exchange gives each query its own random source port (spoofing defence).
      const socket = dgram.createSocket(net.isIPv6(upstream.host) ? 'udp6' : 'udp4');
      socket.on('error', reject);
      socket.on('message', (msg, rinfo) => {
        if (rinfo.port !== upstream.port || rinfo.address !== upstream.host) return;
        const answer = this.acceptAnswer(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), id, query);
        if (answer !== undefined) resolve(answer);
      });
      socket.send(wire, upstream.port, upstream.host, (err) => {
        if (err) reject(err);
      });
      return () => {
        try {
          socket.close();
        } catch {
          // already closed
        }
      };
    });
  }

  private askTcp(upstream: Upstream, wire: Uint8Array, id: number, query: DnsMessage): Promise<{ bytes: Uint8Array; tc: boolean; rcode: number }> {
    return this.exchange(upstream, ({ resolve, reject }) => {
      const socket = net.connect({ host: upstream.host, port: upstream.port });
      const chunks: Buffer[] = [];
      let buffered = 0;
      socket.on('connect', () => socket.write(frame(wire)));
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        buffered += chunk.length;
        // The length prefix bounds what we wait for (≤ 65535); a server sending more is cut off here.
        if (buffered < 2) return;
        const all = Buffer.concat(chunks);
        chunks.length = 0;
        chunks.push(all);
        const length = all.readUInt16BE(0);
        if (buffered < 2 + length) return;
        const message = all.subarray(2, 2 + length);
        const answer = this.acceptAnswer(new Uint8Array(message.buffer, message.byteOffset, message.byteLength), id, query);
        if (answer === undefined) reject(new MeshError(ErrorCodes.DNS_MALFORMED, `dns upstream ${upstream.label}: unusable tcp answer`));
        else resolve(answer);
      });
      socket.on('error', reject);
      socket.on('close', () => reject(new MeshError(ErrorCodes.DIAL_FAILED, `dns upstream ${upstream.label}: tcp connection closed before an answer`)));
      return () => socket.destroy();
    });
  }
}
