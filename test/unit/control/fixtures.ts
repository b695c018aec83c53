import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type {
  ControlHandlers,
  PeerState,
  PeerView,
  ServiceView,
  StatusResponse,
} from '../../../src/control/index.js';

/** Shared by the control and cli tests: stub handlers that record what they were called with. */

export function sampleService(name = 'db'): ServiceView {
  return {
    name,
    vip: '127.77.0.2',
    ports: [5432],
    providers: [{ node: 'server2', state: 'up' }],
    local: null,
    problems: [],
  };
}

export function samplePeer(name: string, state: PeerState): PeerView {
  return {
    name,
    nodeId: `id-${name}`,
    state,
    path: state === 'up' ? 'direct ws://127.0.0.2:18800/osmoda-mesh/v1 (dialled)' : null,
    lastHeartbeatAgeMs: state === 'up' ? 3_200 : null,
    rttMs: state === 'up' ? 1.5 : null,
    rxBytes: 1_258_291,
    txBytes: 2048,
    streams: 2,
    bufferedBytes: 0,
    rekeys: 0,
    services: ['db'],
    lastError: state === 'up' ? null : 'dial timeout',
  };
}

export function sampleStatus(peers: PeerView[]): StatusResponse {
  return {
    schema: 1,
    node: {
      name: 'server1',
      nodeId: 'n1',
      mesh: 'prod',
      meshId: 'abcdef0123456789abcdef',
      isAdmin: true,
      isJoined: true,
      endpoints: ['ws://127.0.0.1:18800/osmoda-mesh/v1'],
      listen: '0.0.0.0:18800',
      dns: '127.77.0.53:53',
      certExpiresAt: '2030-01-01T00:00:00.000Z',
      certWarning: null,
      revoked: [],
      version: '0.1.0',
    },
    peers,
    services: [sampleService()],
  };
}

export interface Call {
  method: keyof ControlHandlers;
  arg: unknown;
}

export interface Stub {
  handlers: ControlHandlers;
  calls: Call[];
  /** Peers the status and peers handlers answer with. */
  peers: PeerView[];
  /** When set, every handler throws it. */
  failWith: unknown;
}

export function makeStub(): Stub {
  const stub: Stub = {
    calls: [],
    peers: [samplePeer('server2', 'up')],
    failWith: undefined,
    handlers: undefined as unknown as ControlHandlers,
  };
  const record = (method: keyof ControlHandlers, arg: unknown): void => {
    stub.calls.push({ method, arg });
    if (stub.failWith !== undefined) throw stub.failWith;
  };
  stub.handlers = {
    status: async () => (record('status', undefined), sampleStatus(stub.peers)),
    peers: async () => (record('peers', undefined), { schema: 1, peers: stub.peers }),
    services: async () => (record('services', undefined), { schema: 1, services: [sampleService()] }),
    resolve: async (name) => (record('resolve', name), { schema: 1, name, addresses: ['127.77.0.2'], service: sampleService() }),
    init: async (req) => (record('init', req), { schema: 1, mesh: req.mesh, meshId: 'mesh-id', node: 'server1' }),
    createToken: async (req) => (
      record('createToken', req),
      { schema: 1, token: 'osmt1_SECRETTOKEN', tokenId: 'tok1', expiresAt: '2030-01-01T00:00:00.000Z', uses: req.uses ?? 1 }
    ),
    listTokens: async () => (
      record('listTokens', undefined),
      { schema: 1, tokens: [{ tokenId: 'a'.repeat(32), expiresAt: '2030-01-01T00:00:00.000Z', usesLeft: 2, isExpired: false }] }
    ),
    revokeToken: async (req) => (record('revokeToken', req), { schema: 1, tokenId: req.tokenId, wasKnown: req.tokenId === 'a'.repeat(32) }),
    ping: async (req) => (record('ping', req), { schema: 1, node: req.node, rttMs: Array.from({ length: req.count ?? 1 }, () => 0.42) }),
    revoke: async (req) => (record('revoke', req), { schema: 1, node: req.node, nodeId: 'f'.repeat(32), revokedCount: 1 }),
    join: async (req) => (record('join', req), { schema: 1, mesh: 'prod', node: req.name ?? 'server2', wasAlreadyJoined: false }),
    expose: async (req) => (
      record('expose', req),
      { schema: 1, service: { ...sampleService(req.name), local: { ports: [req.port], target: req.target ?? `127.0.0.1:${req.port}`, allowFrom: req.allowFrom ?? null } } }
    ),
    unexpose: async (req) => (record('unexpose', req), { schema: 1, name: req.name, wasExposed: true }),
  };
  return stub;
}

export interface TempDir {
  dir: string;
  cleanup(): void;
}

export function makeTempDir(): TempDir {
  // Short base: Unix socket paths are limited to 107 bytes.
  const dir = mkdtempSync(join(tmpdir(), 'omc-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A pino logger whose lines are kept in memory, at debug so request logs are visible. */
export function memoryLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

/** A bare HTTP request on the socket, for what the typed client never sends. */
export function rawRequest(
  socketPath: string,
  options: { method: string; path: string; headers?: Record<string, string>; body?: string | Buffer; chunked?: boolean },
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (options.body !== undefined && !options.chunked) headers['content-length'] = String(Buffer.byteLength(options.body));
    const req = request({ socketPath, method: options.method, path: options.path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.setTimeout(5_000, () => req.destroy(new Error('raw request timed out')));
    req.on('error', reject);
    req.end(options.body);
  });
}
