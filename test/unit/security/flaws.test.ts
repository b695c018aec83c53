import { afterEach, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { HandshakeState, MESH_NOISE_PROTOCOL, NoiseTransport } from '../../../src/crypto/noise/index.js';
import { X25519Private } from '../../../src/crypto/keys/index.js';
import { TUNNEL_PATH } from '../../../src/config/index.js';
import { ErrorCodes } from '../../../src/errors.js';
import { Tunnel, defaultTunnelConfig } from '../../../src/tunnel/index.js';
import { equalBytes } from '../../../src/util/bytes.js';
import { systemClock } from '../../../src/util/clock.js';
import { seededRandom } from '../../../src/util/random.js';
import { expectMeshError, expectMeshErrorValue } from '../../helpers/mesh-error.js';
import {
  closeOf,
  dial,
  joinWith,
  newAuthority,
  newIdentity,
  newMember,
  recordSent,
  silent,
  startIssuer,
  startPort,
  tunnelHandshake,
  usesLeft,
  waitFor,
  type Issuer,
  type Port,
} from './harness.js';

/**
 * The three flaws of the original Rust osmoda-mesh, each shown absent here by a test that would
 * have failed there.
 */

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function port(routes: Record<string, (ws: WebSocket) => void>): Promise<Port> {
  const p = await startPort(routes);
  cleanups.push(() => p.server.close());
  return p;
}

async function handshakePair(): Promise<{ initiator: NoiseTransport; responder: NoiseTransport }> {
  const i = new HandshakeState({ protocolName: MESH_NOISE_PROTOCOL, initiator: true, s: X25519Private.generate() });
  const r = new HandshakeState({ protocolName: MESH_NOISE_PROTOCOL, initiator: false, s: X25519Private.generate() });
  r.readMessage(i.writeMessage());
  i.readMessage(r.writeMessage());
  r.readMessage(i.writeMessage());
  return { initiator: new NoiseTransport(i.split()), responder: new NoiseTransport(r.split()) };
}

describe('flaw (a) of the Rust version: one key and nonce sequence reused in both directions', () => {
  // There, A→B and B→A were sealed with the same key from the same nonce 0: the same plaintext at
  // the same position gave the same ciphertext both ways (a two-time pad), and a message could be
  // reflected back to its sender and accepted. Here Split() gives each direction its own key.

  it('the same plaintext at the same nonce seals to different ciphertexts in the two directions', async () => {
    const { initiator, responder } = await handshakePair();
    const plaintext = new Uint8Array(64).fill(0x41);
    const aToB = initiator.seal(plaintext);
    const bToA = responder.seal(plaintext);
    expect(initiator.sendNonce).toBe(1n);
    expect(responder.sendNonce).toBe(1n);
    expect(equalBytes(aToB, bToA)).toBe(false);
    // and XORing them does not cancel the keystream: nothing in common but the length
    const same = aToB.slice(0, 64).filter((byte, i) => byte === bToA[i]).length;
    expect(same).toBeLessThan(8);
    expect(responder.open(aToB)).toEqual(plaintext);
    expect(initiator.open(bToA)).toEqual(plaintext);
  });

  it('a message A sent cannot be opened as B→A: reflected to its sender it fails (NOISE_DECRYPT)', async () => {
    const { initiator, responder } = await handshakePair();
    const aToB = initiator.seal(new Uint8Array([1, 2, 3]));
    expectMeshError(() => initiator.open(aToB), ErrorCodes.NOISE_DECRYPT);
    expect(initiator.receiveNonce).toBe(0n);
    // the genuine direction still works after the reflection attempt
    expect(responder.open(aToB)).toEqual(new Uint8Array([1, 2, 3]));
  });

  it("on a live tunnel, A's own message reflected back to A closes A's tunnel instead of being accepted", async () => {
    const mesh = newAuthority();
    const alice = newMember(mesh, 'alice');
    const bob = newMember(mesh, 'bob');
    // Bob's side is the reflector: it completes the handshake, then echoes every message back
    const p = await port({
      [TUNNEL_PATH]: (ws) =>
        void tunnelHandshake(false, ws, { cert: bob.cert, noise: bob.identity.noise }, mesh).then((r) => {
          for (const early of r.earlyMessages) ws.send(early);
          ws.on('message', (data: Buffer) => ws.send(Uint8Array.from(data)));
        }),
    });
    const ws = await dial(p.url());
    const aliceSent = recordSent(ws);
    const r = await tunnelHandshake(true, ws, { cert: alice.cert, noise: alice.identity.noise }, mesh);
    const tunnel = new Tunnel({ ws, transport: r.transport, config: defaultTunnelConfig, clock: systemClock, random: seededRandom(2), logger: silent, path: 'test' });
    let closedWith: Error | undefined;
    let isClosed = false;
    const received: string[] = [];
    tunnel.onFrame((f) => received.push(f.kind));
    tunnel.onClose((err) => {
      closedWith = err;
      isClosed = true;
    });
    tunnel.send({ kind: 'gossip', records: [] });
    await waitFor(() => isClosed, 5_000, "alice's tunnel to close");
    expect(aliceSent.length).toBeGreaterThanOrEqual(3); // message 1, message 3, the reflected transport message
    expectMeshErrorValue(closedWith, ErrorCodes.NOISE_DECRYPT);
    expect(received).toEqual([]); // the reflected gossip frame was never delivered
  });
});

describe('flaw (b) of the Rust version: the Noise static key was never bound to the claimed identity', () => {
  // There, any Noise key was accepted next to any valid certificate: whoever had seen node X's
  // certificate (it is sent in every handshake) could present it with its own key and be X.
  // Here the certificate must name the very X25519 key the peer proved it holds (es / se).

  it("Mallory presents X's valid certificate with her own static key to X's peer: refused (CERT_KEY_MISMATCH, 4002)", async () => {
    const mesh = newAuthority();
    const x = newMember(mesh, 'x');
    const bob = newMember(mesh, 'bob');
    const mallory = X25519Private.generate();
    let bobVerdict: unknown;
    const p = await port({
      [TUNNEL_PATH]: (ws) =>
        void tunnelHandshake(false, ws, { cert: bob.cert, noise: bob.identity.noise }, mesh).then(
          (r) => (bobVerdict = r.remote.name),
          (err: unknown) => (bobVerdict = err),
        ),
    });
    const ws = await dial(p.url());
    const closed = closeOf(ws);
    // Mallory's side trusts what it gets; the question is what Bob does
    await tunnelHandshake(true, ws, { cert: x.cert, noise: mallory }, mesh).catch(() => undefined);
    expect(await closed).toEqual({ code: 4002, reason: 'key-mismatch' });
    await waitFor(() => bobVerdict !== undefined, 5_000, "bob's verdict");
    expectMeshErrorValue(bobVerdict, ErrorCodes.CERT_KEY_MISMATCH, /certificate for 'x' names another Noise key than the one used in the handshake/);
  });

  it("a dialler reaching Mallory posing as X (X's certificate, Mallory's key) refuses her at message 2", async () => {
    const mesh = newAuthority();
    const x = newMember(mesh, 'x');
    const alice = newMember(mesh, 'alice');
    const mallory = X25519Private.generate();
    const p = await port({ [TUNNEL_PATH]: (ws) => void tunnelHandshake(false, ws, { cert: x.cert, noise: mallory }, mesh).catch(() => undefined) });
    const ws = await dial(p.url());
    let refused: unknown;
    try {
      await tunnelHandshake(true, ws, { cert: alice.cert, noise: alice.identity.noise }, mesh);
    } catch (err) {
      refused = err;
    }
    // Alice refuses before sending message 3, so her own certificate never reaches Mallory
    expectMeshErrorValue(refused, ErrorCodes.CERT_KEY_MISMATCH);
  });

  it('with its own key the same certificate is accepted (the check is the binding, nothing else)', async () => {
    const mesh = newAuthority();
    const x = newMember(mesh, 'x');
    const bob = newMember(mesh, 'bob');
    let name: string | undefined;
    const p = await port({ [TUNNEL_PATH]: (ws) => void tunnelHandshake(false, ws, { cert: bob.cert, noise: bob.identity.noise }, mesh).then((r) => (name = r.remote.name)) });
    const ws = await dial(p.url());
    await tunnelHandshake(true, ws, { cert: x.cert, noise: x.identity.noise }, mesh);
    await waitFor(() => name !== undefined, 5_000, 'bob to accept x');
    expect(name).toBe('x');
    ws.terminate();
  });
});

describe('flaw (c) of the Rust version: invites authorised nothing on the issuer side', () => {
  // There, an invite was checked only by the joiner; the issuer kept no record, so any
  // well-formed invite was honoured, revocation was impossible and uses were not counted. Here the
  // issuer answers only tokens in its own store, proven by their secret, revocable, counted on disk.
  let issuer: Issuer;
  afterEach(async () => issuer?.close());

  async function refusal(promise: Promise<unknown>): Promise<unknown> {
    try {
      await promise;
    } catch (err) {
      return err;
    }
    throw new Error('the join was accepted');
  }

  it('a well-formed token this issuer never issued (signed by the authority, right pins, unknown id): refused TOKEN_UNKNOWN', async () => {
    issuer = await startIssuer();
    const forged = issuer.token({ isStored: false });
    const err = await refusal(joinWith(forged.body, 'intruder'));
    expectMeshErrorValue(err, ErrorCodes.TOKEN_UNKNOWN, /not known to this issuer/);
    expect(issuer.refusals).toEqual([ErrorCodes.TOKEN_UNKNOWN]);
    expect(issuer.joined).toEqual([]);
  });

  it('a stored token id with the wrong secret: refused at message 3, no use spent', async () => {
    issuer = await startIssuer();
    const wrong = issuer.token({ uses: 1, secretOverride: new Uint8Array(32).fill(9) });
    const err = await refusal(joinWith(wrong.body, 'guesser'));
    expectMeshErrorValue(err, ErrorCodes.JOIN_FAILED, /token secret does not match/);
    expect(issuer.refusals).toEqual([ErrorCodes.TOKEN_MALFORMED]);
    expect(usesLeft(issuer.tokens, wrong.idHex)).toBe(1);
    expect(issuer.joined).toEqual([]);
  });

  it('a revoked token: refused TOKEN_UNKNOWN, though it is otherwise perfect', async () => {
    issuer = await startIssuer();
    const token = issuer.token({ uses: 3 });
    expect(issuer.tokens.revoke(token.idHex)).toBe(true);
    const err = await refusal(joinWith(token.body, 'late'));
    expectMeshErrorValue(err, ErrorCodes.TOKEN_UNKNOWN);
    expect(issuer.joined).toEqual([]);
  });

  it('uses are counted on the issuer, on disk: two nodes join a 2-use token, a repeat is free, a third node is refused', async () => {
    issuer = await startIssuer();
    const token = issuer.token({ uses: 2 });
    const first = newIdentity();
    await joinWith(token.body, 'first', first);
    expect(usesLeft(issuer.tokens, token.idHex)).toBe(1);
    await joinWith(token.body, 'first', first); // the same node again (a restart with joinTokenFile)
    expect(usesLeft(issuer.tokens, token.idHex)).toBe(1);
    await joinWith(token.body, 'second');
    expect(usesLeft(issuer.tokens, token.idHex)).toBe(0);
    const err = await refusal(joinWith(token.body, 'third'));
    expectMeshErrorValue(err, ErrorCodes.TOKEN_USED_UP, /no uses left/);
    expect(issuer.joined.map((c) => c.name)).toEqual(['first', 'first', 'second']);
    // the count survives a restart of the issuer: it was written before the answer
    expect(usesLeft(issuer.reloadTokens(), token.idHex)).toBe(0);
  });

  it('a token sealed for one issuer is refused by another issuer of the same mesh (its key is pinned)', async () => {
    issuer = await startIssuer();
    const token = issuer.token({ uses: 1 });
    // the joiner finds another node at the endpoint: it checks the pinned key before proving anything
    const other = await startIssuer();
    cleanups.push(() => other.close());
    const moved = { ...token.body, issuerEndpoints: [`ws://127.0.0.1:${other.port.port}`], meshId: other.authority.meshId };
    const err = await refusal(joinWith(moved, 'misdirected'));
    expectMeshErrorValue(err, ErrorCodes.HANDSHAKE_FAILED, /not the issuer named in the token/);
    expect(other.joined).toEqual([]);
    expect(usesLeft(issuer.tokens, token.idHex)).toBe(1);
  });
});
