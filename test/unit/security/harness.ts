import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import WebSocket from 'ws';
import { Ed25519Private, X25519Private } from '../../../src/crypto/keys/index.js';
import { JOIN_PATH, TUNNEL_PATH } from '../../../src/config/index.js';
import { TokenStore, createToken, issueCert, meshIdOf, nodeIdOf, parseToken, verifyCert, type NodeIdentity, type VerifiedCert } from '../../../src/mesh/index.js';
import { joinMesh, serveJoin } from '../../../src/mesh/join.js';
import { MessageSocket, TunnelServer, dialWebSocket, performTunnelHandshake, type HandshakeResult } from '../../../src/tunnel/index.js';
import { toHex } from '../../../src/util/bytes.js';
import { systemClock } from '../../../src/util/clock.js';
import { seededRandom } from '../../../src/util/random.js';
import type { TokenBody } from '../../../src/wire/index.js';

/** Shared by the security tests: a mesh authority, members, a tunnel port and a join issuer in one process. */

export const silent = pino({ level: 'silent' });

export interface Authority {
  key: Ed25519Private;
  meshId: Uint8Array;
}

export interface Member {
  name: string;
  identity: NodeIdentity;
  cert: Uint8Array;
}

export function newAuthority(): Authority {
  const key = Ed25519Private.generate();
  return { key, meshId: meshIdOf(key.publicKey) };
}

export function newIdentity(): NodeIdentity {
  const signing = Ed25519Private.generate();
  const noise = X25519Private.generate();
  const nodeId = nodeIdOf(signing.publicKey);
  return { signing, noise, nodeId, nodeIdHex: toHex(nodeId) };
}

export function newMember(authority: Authority, name: string, identity = newIdentity()): Member {
  const cert = issueCert(authority.key, {
    meshName: 'sec',
    name,
    ed25519Public: identity.signing.publicKey,
    x25519Public: identity.noise.publicKey,
    tags: [],
    isAdmin: false,
    nowMs: Date.now(),
  });
  return { name, identity, cert };
}

/** One side of the tunnel handshake: `self` presents `cert` with Noise key `noise`, trusts `trusted`. */
export function tunnelHandshake(
  isInitiator: boolean,
  ws: WebSocket,
  self: { cert: Uint8Array; noise: X25519Private },
  trusted: Authority,
  timeoutMs = 3_000,
): Promise<HandshakeResult<VerifiedCert>> {
  return performTunnelHandshake<VerifiedCert>(isInitiator, {
    socket: new MessageSocket(ws),
    clock: systemClock,
    timeoutMs,
    staticKey: self.noise,
    meshId: trusted.meshId,
    payload: self.cert,
    verifyRemote: (payload, remoteStatic) => verifyCert(payload, { authorityPublic: trusted.key.publicKey, nowMs: Date.now(), expectedX25519: remoteStatic }),
  });
}

export interface Port {
  server: TunnelServer;
  port: number;
  url(path?: string): string;
}

/** A tunnel port on 127.0.0.1 whose routes are given by the test. */
export async function startPort(routes: Record<string, (ws: WebSocket) => void>): Promise<Port> {
  const server = new TunnelServer({ host: '127.0.0.1', port: 0, routes, maxPendingHandshakes: 64, pendingHandshakes: () => 0, logger: silent });
  const { port } = await server.listen();
  return { server, port, url: (path = TUNNEL_PATH) => `ws://127.0.0.1:${port}${path}` };
}

export function dial(url: string): Promise<WebSocket> {
  return dialWebSocket(url, 3_000);
}

/** Every binary message `ws` sends from now on, in order. */
export function recordSent(ws: WebSocket): Uint8Array[] {
  const sent: Uint8Array[] = [];
  const original = ws.send.bind(ws) as (data: unknown, ...rest: unknown[]) => void;
  (ws as unknown as { send: (data: unknown, ...rest: unknown[]) => void }).send = (data: unknown, ...rest: unknown[]) => {
    if (data instanceof Uint8Array) sent.push(Uint8Array.from(data));
    original(data, ...rest);
  };
  return sent;
}

/** Every binary message `ws` receives from now on. */
export function recordReceived(ws: WebSocket): Uint8Array[] {
  const got: Uint8Array[] = [];
  ws.on('message', (data: Buffer) => got.push(Uint8Array.from(data)));
  return got;
}

export function closeOf(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
}

export function nextMessage(ws: WebSocket, timeoutMs = 3_000): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no message')), timeoutMs);
    ws.once('message', (data: Buffer) => {
      clearTimeout(timer);
      resolve(Uint8Array.from(data));
    });
  });
}

export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// ---- a join issuer -------------------------------------------------------------------------------

export interface Issuer {
  port: Port;
  authority: Authority;
  identity: NodeIdentity;
  tokens: TokenStore;
  refusals: string[];
  joined: VerifiedCert[];
  /** What every join connection received, one list per connection, in arrival order. */
  received: Uint8Array[][];
  /** A token this issuer stored (or, with `isStored: false`, one it never heard of). */
  token(opts?: { uses?: number; ttlMs?: number; isStored?: boolean; secretOverride?: Uint8Array }): { text: string; body: TokenBody; idHex: string };
  /** The token store as a restarted issuer reads it from disk. */
  reloadTokens(): TokenStore;
  close(): Promise<void>;
}

let seed = 0x5ec;

export async function startIssuer(): Promise<Issuer> {
  const dir = mkdtempSync(join(tmpdir(), 'osm-sec-'));
  const authority = newAuthority();
  const identity = newIdentity();
  const tokens = new TokenStore(dir);
  const refusals: string[] = [];
  const joined: VerifiedCert[] = [];
  const received: Uint8Array[][] = [];
  const names = new Map<string, string>();
  const port = await startPort({
    [JOIN_PATH]: (ws) => {
      received.push(recordReceived(ws));
      void serveJoin(ws, {
        identity,
        authority: authority.key,
        meshId: authority.meshId,
        meshName: 'sec',
        tokens,
        clock: systemClock,
        timeoutMs: 3_000,
        logger: silent,
        nameOwner: (name) => names.get(name),
        isRevoked: () => false,
        members: () => [],
        onRefused: (code) => refusals.push(code),
        onJoined: (cert) => {
          names.set(cert.name, cert.nodeIdHex);
          joined.push(cert);
        },
      });
    },
  });
  const random = seededRandom(seed++);
  return {
    port,
    authority,
    identity,
    tokens,
    refusals,
    joined,
    received,
    token(opts = {}) {
      const ttlMs = opts.ttlMs ?? 600_000;
      const made =
        opts.isStored === false
          ? { id: random.bytes(16), secret: random.bytes(32), expiresAtMs: Date.now() + ttlMs }
          : tokens.create(random, { nowMs: Date.now(), ttlMs, uses: opts.uses ?? 1 });
      const text = createToken(authority.key, {
        meshName: 'sec',
        issuerEndpoints: [`ws://127.0.0.1:${port.port}`],
        issuerX25519: identity.noise.publicKey,
        tokenId: made.id,
        secret: opts.secretOverride ?? made.secret,
        expiresAtMs: made.expiresAtMs,
      });
      return { text, body: parseToken(text, Date.now()), idHex: toHex(made.id) };
    },
    reloadTokens: () => new TokenStore(dir),
    async close() {
      await port.server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function joinWith(issuerToken: TokenBody, name: string, identity = newIdentity()): ReturnType<typeof joinMesh> {
  return joinMesh({ token: issuerToken, name, identity, endpoints: [], tags: [], clock: systemClock, timeoutMs: 3_000, logger: silent });
}

export function usesLeft(tokens: TokenStore, idHex: string): number | undefined {
  return tokens.list().find((t) => t.id === idHex)?.usesLeft;
}

export { X25519Private };
