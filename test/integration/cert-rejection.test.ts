import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TUNNEL_PATH } from '../../src/config/index.js';
import { Ed25519Private, X25519Private } from '../../src/crypto/keys/index.js';
import type { Agent } from '../../src/daemon/index.js';
import { ErrorCodes, MeshError } from '../../src/errors.js';
import { AUTHORITY_FILE, issueCert, meshIdOf, nodeIdOf } from '../../src/mesh/index.js';
import { MessageSocket, performTunnelHandshake } from '../../src/tunnel/index.js';
import { concatBytes, fromHex, utf8Bytes } from '../../src/util/bytes.js';
import { systemClock } from '../../src/util/clock.js';
import { encodeCertBody, encodeHandshakePayload, encodeSigned } from '../../src/wire/index.js';
import { freePort, makeAgent } from './helpers.js';

/**
 * Certificates refused during the tunnel handshake (SPEC §3: "Anything else: close, log the
 * reason, count it in metrics"), against a real agent: each bad certificate is presented in
 * message 3 by a peer that completes the Noise part correctly, and the agent closes with 4002 and
 * the reason, logs it, counts it in handshake_rejected_total{reason} and serves that on /metrics.
 */

const DAY = 86_400_000;

describe('certificates refused during the tunnel handshake: logged, counted, exported', () => {
  let root: string;
  let a: Agent;
  let metricsPort: number;
  let authority: Ed25519Private;
  let meshId: Uint8Array;
  const logLines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'osm-certs-'));
    metricsPort = await freePort('127.0.0.113');
    const logStream = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line.startsWith('{')) logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    a = await makeAgent(root, 'a', 113, { metricsListen: `127.0.0.113:${metricsPort}` }, { logger: pino({ level: 'info' }, logStream) });
    a.node.initMesh('certs');
    const key = JSON.parse(readFileSync(join(root, 'a', 'state', AUTHORITY_FILE), 'utf8')) as { ed25519Private: string };
    authority = Ed25519Private.fromPrivate(fromHex(key.ed25519Private));
    meshId = meshIdOf(authority.publicKey);
  }, 30_000);

  afterAll(async () => {
    await a?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** Completes the Noise part with `noise` and presents `cert`; returns A's close code and reason. */
  async function present(cert: Uint8Array, noise: X25519Private): Promise<{ code: number; reason: string; error: unknown }> {
    const port = Number(a.config.listen.split(':')[1]);
    const ws = new WebSocket(`ws://127.0.0.1:${port}${TUNNEL_PATH}`, { perMessageDeflate: false });
    ws.on('error', () => undefined);
    await new Promise<void>((resolve) => ws.once('open', () => resolve()));
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
    let error: unknown;
    try {
      await performTunnelHandshake(true, {
        socket: new MessageSocket(ws),
        clock: systemClock,
        timeoutMs: 5_000,
        staticKey: noise,
        meshId,
        payload: encodeHandshakePayload({ cert, record: undefined }),
        verifyRemote: (payload) => payload, // the rogue trusts anything; A must not
      });
    } catch (err) {
      error = err;
    }
    return { ...(await closed), error };
  }

  function member(name: string, signer: Ed25519Private, opts: { nowMs?: number; lifetimeMs?: number; noise?: X25519Private } = {}): { cert: Uint8Array; noise: X25519Private } {
    const noise = opts.noise ?? X25519Private.generate();
    const signing = Ed25519Private.generate();
    const cert = issueCert(signer, {
      meshName: 'certs',
      name,
      ed25519Public: signing.publicKey,
      x25519Public: noise.publicKey,
      tags: [],
      isAdmin: false,
      nowMs: opts.nowMs ?? Date.now(),
      ...(opts.lifetimeMs === undefined ? {} : { lifetimeMs: opts.lifetimeMs }),
    });
    return { cert, noise };
  }

  /** A certificate body signed by `signer` over fields chosen freely (a forger's certificate). */
  function forged(signer: Ed25519Private, claimedMeshId: Uint8Array, name: string): { cert: Uint8Array; noise: X25519Private } {
    const noise = X25519Private.generate();
    const signing = Ed25519Private.generate();
    const body = encodeCertBody({
      version: 1,
      meshId: claimedMeshId,
      meshName: 'certs',
      nodeId: nodeIdOf(signing.publicKey),
      name,
      ed25519Public: signing.publicKey,
      x25519Public: noise.publicKey,
      tags: [],
      issuedAtMs: Date.now(),
      expiresAtMs: Date.now() + DAY,
      isAdmin: true,
    });
    const signature = signer.sign(concatBytes(utf8Bytes('osmoda-mesh cert v1\0'), body));
    return { cert: encodeSigned('cert', { body, signature }), noise };
  }

  const cases: { label: string; make(): { cert: Uint8Array; noise: X25519Private }; code: string; reason: string; log: RegExp }[] = [
    {
      label: 'a node certificate from another mesh (signed by that mesh’s authority)',
      make: () => member('other-mesh', Ed25519Private.generate()),
      code: ErrorCodes.CERT_UNTRUSTED,
      reason: 'untrusted-cert',
      log: /certificate for 'other-mesh' is not signed by this mesh's authority/,
    },
    {
      label: "this authority's signature over another mesh id",
      make: () => forged(authority, new Uint8Array(16).fill(0xee), 'wrong-mesh-id'),
      code: ErrorCodes.CERT_UNTRUSTED,
      reason: 'wrong-mesh',
      log: /certificate for 'wrong-mesh-id' belongs to another mesh/,
    },
    {
      label: 'an expired certificate',
      make: () => member('expired', authority, { nowMs: Date.now() - 10 * DAY, lifetimeMs: DAY }),
      code: ErrorCodes.CERT_EXPIRED,
      reason: 'expired-cert',
      log: /certificate for 'expired' expired at \d{4}-/,
    },
    {
      label: 'a valid certificate whose Noise key is not the handshake static key',
      make: () => ({ cert: member('stolen', authority).cert, noise: X25519Private.generate() }),
      code: ErrorCodes.CERT_KEY_MISMATCH,
      reason: 'key-mismatch',
      log: /certificate for 'stolen' names another Noise key than the one used in the handshake/,
    },
    {
      label: 'a certificate for this mesh signed by a key that is not the authority',
      make: () => forged(Ed25519Private.generate(), meshId, 'forged'),
      code: ErrorCodes.CERT_UNTRUSTED,
      reason: 'untrusted-cert',
      log: /certificate for 'forged' is not signed by this mesh's authority/,
    },
  ];

  for (const c of cases) {
    it(`${c.label}: closed with 4002 '${c.reason}', logged with the reason, counted`, async () => {
      const before = a.node.metrics.get('handshake_rejected_total', c.reason);
      const { cert, noise } = c.make();
      const result = await present(cert, noise);
      expect(result.code).toBe(4002);
      expect(result.reason).toBe(c.reason);
      // the rogue, as initiator, finished its part; what it learns is the close
      if (result.error !== undefined) expect(result.error).toBeInstanceOf(MeshError);
      expect(a.node.metrics.get('handshake_rejected_total', c.reason)).toBe(before + 1);
      expect(a.node.metrics.get('peer_rejected_total', c.code)).toBeGreaterThanOrEqual(1);
      const line = logLines.find((l) => l['msg'] === 'peer rejected: certificate' && typeof l['reason'] === 'string' && c.log.test(l['reason']));
      expect(line, JSON.stringify(logLines.slice(-3))).toBeDefined();
      expect(line!['code']).toBe(c.code);
      expect(line!['wireReason']).toBe(c.reason);
      expect(line!['level']).toBe(40); // warn
    });
  }

  it('the Prometheus endpoint exports handshake_rejected_total by reason', async () => {
    const text = await (await fetch(`http://127.0.0.113:${metricsPort}/metrics`)).text();
    expect(text).toContain('# TYPE osmoda_mesh_handshake_rejected_total counter');
    expect(text).toMatch(/^osmoda_mesh_handshake_rejected_total\{reason="untrusted-cert"\} 2$/m);
    for (const reason of ['wrong-mesh', 'expired-cert', 'key-mismatch']) {
      expect(text).toMatch(new RegExp(`^osmoda_mesh_handshake_rejected_total\\{reason="${reason}"\\} 1$`, 'm'));
    }
    console.log(`[certs] ${text.split('\n').filter((l) => l.startsWith('osmoda_mesh_handshake_rejected_total')).join('; ')}`);
    // and the agent kept no tunnel to any of them
    expect(a.status().peers).toEqual([]);
  });
});
