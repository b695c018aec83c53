import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/index.js';
import { Agent } from '../../src/daemon/index.js';
import { ErrorCodes, MeshError } from '../../src/errors.js';
import { IDENTITY_FILE } from '../../src/mesh/identity.js';
import { makeAgent, peerState, sleep, waitFor } from './helpers.js';

/**
 * Revocation and certificate renewal (issue 5) with in-process agents on loopback: `revoke` is
 * admin only, cuts the revoked node's tunnels on every node, drops its services, and keeps it out
 * (no reconnect, no rejoin with its old identity); certificates renew before expiry while a
 * stream keeps flowing.
 */

function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => socket.pipe(socket));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })));
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<MeshError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MeshError);
  expect((err as MeshError).code).toBe(code);
  return err as MeshError;
}

describe('revoke NODE', () => {
  let root: string;
  let echo: { server: Server; port: number };
  let a: Agent;
  let b: Agent;
  let c: Agent;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'osm-revoke-'));
    echo = await echoServer();
    a = await makeAgent(root, 'a', 94);
    b = await makeAgent(root, 'b', 95, { services: { svc: { port: echo.port } } });
    c = await makeAgent(root, 'c', 96);
    a.node.initMesh('revoke');
    await b.node.join(a.node.createToken(600_000, 1).token, undefined);
    await c.node.join(a.node.createToken(600_000, 1).token, undefined);
    await waitFor(
      () => ['b', 'c'].every((p) => peerState(a, p) === 'up') && peerState(b, 'c') === 'up' && c.status().services.some((s) => s.name === 'svc'),
      30_000,
      'a full mesh with svc known on c',
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([a, b, c].filter((x) => x !== undefined).map((agent) => agent.close()));
    echo?.server.close();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 30_000);

  it('is refused on a node that is not an admin, with a clear error', async () => {
    const err = await expectCode(new ControlClient({ socketPath: c.config.control }).revoke({ node: 'b' }), ErrorCodes.NOT_ADMIN);
    expect(err.message).toMatch(/only an admin node/);
    expect(c.status().node.certWarning).toBeNull(); // a one-year certificate: nothing to warn about
  });

  it('cuts the revoked node off everywhere within 5 s and drops its services', async () => {
    const started = Date.now();
    const answer = await new ControlClient({ socketPath: a.config.control }).revoke({ node: 'b' });
    expect(answer).toMatchObject({ node: 'b', nodeId: b.node.identity.nodeIdHex, revokedCount: 1 });
    await waitFor(
      () =>
        [a, c].every((x) => x.status().peers.every((p) => p.name !== 'b')) &&
        !c.status().services.some((s) => s.name === 'svc') &&
        peerState(b, 'a') !== 'up' &&
        peerState(b, 'c') !== 'up',
      5_000,
      'b cut off by a and c, svc gone from c',
    );
    console.log(`REVOKE: tunnels to the revoked node cut and its services gone on every node after ${Date.now() - started} ms`);
    expect(c.status().node.revoked).toEqual(['b']);
    expect(c.node.metrics.get('revocations_applied_total')).toBe(1);
  });

  it('keeps it out: its redials are refused as revoked', async () => {
    const before = a.node.metrics.get('peer_rejected_total', ErrorCodes.CERT_REVOKED) + c.node.metrics.get('peer_rejected_total', ErrorCodes.CERT_REVOKED);
    await waitFor(
      () => a.node.metrics.get('peer_rejected_total', ErrorCodes.CERT_REVOKED) + c.node.metrics.get('peer_rejected_total', ErrorCodes.CERT_REVOKED) > before,
      15_000,
      "b's redial to be refused",
    );
    await sleep(200);
    expect(peerState(b, 'a')).not.toBe('up');
    expect(peerState(b, 'c')).not.toBe('up');
  });

  it('refuses a rejoin with the old identity, even with a fresh token, without using the token up', async () => {
    const dir = join(root, 'b-again', 'state');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    copyFileSync(join(b.config.stateDir, IDENTITY_FILE), join(dir, IDENTITY_FILE));
    const again = await makeAgent(root, 'b-again', 97, { stateDir: dir });
    try {
      const { token, tokenIdHex } = a.node.createToken(600_000, 1);
      const err = await expectCode(again.node.join(token, 'b'), ErrorCodes.CERT_REVOKED);
      expect(err.message).toMatch(/was revoked/);
      expect(a.node.listTokens().find((t) => t.id === tokenIdHex)?.usesLeft).toBe(1);
    } finally {
      await again.close();
    }
  });

  it('the list survives a restart of a node', async () => {
    const reopened = new Agent({ config: c.config });
    try {
      expect(reopened.node.revokedNames()).toEqual(['b']);
    } finally {
      await reopened.close();
    }
  });
});

describe('certificate renewal', () => {
  let root: string;
  let echo: { server: Server; port: number };
  let a: Agent;
  let b: Agent;
  const timings = { lifetimeMs: 12_000, renewBeforeMs: 9_000, renewCheckMs: 500 };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'osm-renew-'));
    echo = await echoServer();
    a = await makeAgent(root, 'a', 98, {}, { certTimings: timings });
    b = await makeAgent(root, 'b', 99, { services: { svc: { port: echo.port } } }, { certTimings: timings });
    a.node.initMesh('renew');
    await b.node.join(a.node.createToken(600_000, 1).token, undefined);
    await waitFor(() => peerState(a, 'b') === 'up' && a.status().services.some((s) => s.name === 'svc'), 30_000, 'a and b up');
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([a, b].filter((x) => x !== undefined).map((agent) => agent.close()));
    echo?.server.close();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 30_000);

  it('renews both certificates before expiry while a stream keeps flowing, past the first expiry', { timeout: 40_000 }, async () => {
    const firstExpiryB = b.node.cert!.expiresAtMs;
    const firstExpiryA = a.node.cert!.expiresAtMs;
    const vip = a.status().services.find((s) => s.name === 'svc')!.vip;
    const socket: Socket = connect({ host: vip, port: echo.port });
    let received = '';
    let socketError: Error | null = null;
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.on('error', (err) => (socketError = err));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    let sent = '';
    // past the first certificate's expiry (12 s), one line every 100 ms
    const deadline = firstExpiryB + 2_000;
    for (let i = 0; i < 400 && Date.now() < deadline; i++) {
      const line = `line ${i}\n`;
      sent += line;
      socket.write(line);
      await sleep(100);
    }
    await waitFor(() => received.length >= sent.length, 5_000, 'every line echoed');
    socket.end();
    expect(socketError).toBeNull();
    expect(received).toBe(sent);
    expect(b.node.cert!.expiresAtMs).toBeGreaterThan(firstExpiryB);
    expect(a.node.cert!.expiresAtMs).toBeGreaterThan(firstExpiryA);
    expect(b.node.metrics.get('cert_renewed_total')).toBeGreaterThanOrEqual(1);
    expect(peerState(a, 'b')).toBe('up');
    // the peers see the renewed certificate in b's re-signed record
    expect(a.node.members().find((m) => m.name === 'b')!.cert.expiresAtMs).toBeGreaterThan(firstExpiryB);
    // a certificate this short is always within 30 days of expiry: status says so
    expect(b.status().node.certWarning).toMatch(/expires at .* and has not been renewed/);
  });
});
