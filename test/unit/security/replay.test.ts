import { afterEach, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { CipherState, NoiseTransport } from '../../../src/crypto/noise/index.js';
import { JOIN_PATH, TUNNEL_PATH } from '../../../src/config/index.js';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { Tunnel, defaultTunnelConfig } from '../../../src/tunnel/index.js';
import { systemClock } from '../../../src/util/clock.js';
import { seededRandom } from '../../../src/util/random.js';
import { decodeBatch, encodeBatch, type Frame } from '../../../src/wire/index.js';
import { expectMeshErrorValue } from '../../helpers/mesh-error.js';
import {
  closeOf,
  dial,
  joinWith,
  newAuthority,
  newMember,
  nextMessage,
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
 * Replay (issue 5): a recorded handshake message is worthless on another connection (every
 * handshake mixes both sides' fresh ephemeral keys), a recorded transport message is refused inside
 * its own session (the receive nonce has moved on), and a join captured on the wire proves nothing
 * on another connection (XXpsk3: the psk is mixed after both ephemerals, so message 3 of one join
 * decrypts in no other).
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

describe('replayed tunnel handshake messages', () => {
  it("Alice's recorded messages 1 and 3, replayed on a new connection to Bob: refused at message 3 (NOISE_DECRYPT, close 4001)", async () => {
    const mesh = newAuthority();
    const alice = newMember(mesh, 'alice');
    const bob = newMember(mesh, 'bob');
    const outcomes: Promise<unknown>[] = [];
    const p = await port({ [TUNNEL_PATH]: (ws) => void outcomes.push(tunnelHandshake(false, ws, { cert: bob.cert, noise: bob.identity.noise }, mesh).then((r) => r.remote.name, (err: unknown) => err)) });

    // the genuine handshake, recorded on the wire
    const ws1 = await dial(p.url());
    const aliceSent = recordSent(ws1);
    const genuine = await tunnelHandshake(true, ws1, { cert: alice.cert, noise: alice.identity.noise }, mesh);
    expect(genuine.remote.name).toBe('bob');
    expect(await outcomes[0]).toBe('alice');
    expect(aliceSent).toHaveLength(2); // message 1 (e) and message 3 (s, se, certificate)
    ws1.terminate();

    // the recording replayed: message 1 is answered (it carries nothing secret), message 3 is not
    const ws2 = await dial(p.url());
    const closed = closeOf(ws2);
    ws2.send(aliceSent[0]!);
    const message2 = await nextMessage(ws2);
    expect(message2.length).toBeGreaterThan(32); // Bob's fresh e and his encrypted static key and certificate
    ws2.send(aliceSent[1]!);
    const refused = await outcomes[1];
    expectMeshErrorValue(refused, ErrorCodes.NOISE_DECRYPT, /noise readMessage 3/);
    expect(await closed).toEqual({ code: 4001, reason: 'noise decrypt failed' });
  });

  it("Bob's recorded message 2, replayed to Alice on a new connection: Alice refuses it (NOISE_DECRYPT)", async () => {
    const mesh = newAuthority();
    const alice = newMember(mesh, 'alice');
    const bob = newMember(mesh, 'bob');
    let bobSent: Uint8Array[] = [];
    const genuinePort = await port({
      [TUNNEL_PATH]: (ws) => {
        bobSent = recordSent(ws);
        void tunnelHandshake(false, ws, { cert: bob.cert, noise: bob.identity.noise }, mesh).catch(() => undefined);
      },
    });
    const ws1 = await dial(genuinePort.url());
    await tunnelHandshake(true, ws1, { cert: alice.cert, noise: alice.identity.noise }, mesh);
    ws1.terminate();
    expect(bobSent.length).toBeGreaterThanOrEqual(1);
    // an impostor that answers every message 1 with Bob's recorded message 2
    const replayPort = await port({ [TUNNEL_PATH]: (ws) => ws.once('message', () => ws.send(bobSent[0]!)) });
    const ws2 = await dial(replayPort.url());
    let refused: unknown;
    try {
      await tunnelHandshake(true, ws2, { cert: alice.cert, noise: alice.identity.noise }, mesh);
    } catch (err) {
      refused = err;
    }
    // Alice's new ephemeral key makes `ee` differ from the recorded one: Bob's static key does not decrypt
    expectMeshErrorValue(refused, ErrorCodes.NOISE_DECRYPT, /noise readMessage 2/);
  });
});

describe('replayed transport messages', () => {
  it('NoiseTransport: a message opens once; replayed or reordered, it fails and the nonce does not move', () => {
    const key = new Uint8Array(32).fill(3);
    const sender = new NoiseTransport({ send: new CipherState(key), receive: new CipherState(new Uint8Array(32).fill(4)) });
    const receiver = new NoiseTransport({ send: new CipherState(new Uint8Array(32).fill(4)), receive: new CipherState(key) });
    const m0 = sender.seal(new Uint8Array([0]));
    const m1 = sender.seal(new Uint8Array([1]));
    const m2 = sender.seal(new Uint8Array([2]));
    expect(receiver.open(m0)).toEqual(new Uint8Array([0]));
    expectMeshErrorValue(captured(() => receiver.open(m0)), ErrorCodes.NOISE_DECRYPT, /at nonce 1/); // replayed
    expectMeshErrorValue(captured(() => receiver.open(m2)), ErrorCodes.NOISE_DECRYPT); // skipped ahead
    expect(receiver.receiveNonce).toBe(1n);
    expect(receiver.open(m1)).toEqual(new Uint8Array([1]));
    expect(receiver.open(m2)).toEqual(new Uint8Array([2]));
  });

  it('a transport message sent twice on a live tunnel: the second closes the tunnel (NOISE_DECRYPT, 4000)', async () => {
    const mesh = newAuthority();
    const alice = newMember(mesh, 'alice');
    const bob = newMember(mesh, 'bob');
    // Subscribed the moment Bob's tunnel exists: the replay can close it before a poll would look.
    let bobClosedWith: (err: Error | undefined) => void = () => undefined;
    const bobClosed = new Promise<Error | undefined>((resolve) => (bobClosedWith = resolve));
    const p = await port({
      [TUNNEL_PATH]: (ws) =>
        void tunnelHandshake(false, ws, { cert: bob.cert, noise: bob.identity.noise }, mesh).then((r) => {
          const bobTunnel = new Tunnel({ ws, transport: r.transport, config: defaultTunnelConfig, clock: systemClock, random: seededRandom(1), logger: silent, path: 'test', earlyMessages: r.earlyMessages });
          bobTunnel.onClose(bobClosedWith);
        }),
    });
    const ws = await dial(p.url());
    const result = await tunnelHandshake(true, ws, { cert: alice.cert, noise: alice.identity.noise }, mesh);
    const frames: Frame[] = [];
    ws.on('message', (data: Buffer) => frames.push(...decodeBatch(result.transport.open(Uint8Array.from(data)))));
    const closed = closeOf(ws);
    const ping = result.transport.seal(encodeBatch([{ kind: 'ping', id: 42 }]));
    ws.send(ping);
    await waitFor(() => frames.some((f) => f.kind === 'pong' && f.id === 42), 5_000, 'pong 42');
    ws.send(ping); // recorded and sent again
    expectMeshErrorValue(await bobClosed, ErrorCodes.NOISE_DECRYPT);
    expect(await closed).toEqual({ code: 4000, reason: 'noise decrypt failed' });
    expect(frames.filter((f) => f.kind === 'pong' && f.id === 42)).toHaveLength(1);
  });
});

describe('a captured join proves nothing on another connection (XXpsk3)', () => {
  let issuer: Issuer;
  afterEach(async () => issuer?.close());

  it("the joiner's recorded messages 1 and 3 (and its join request), replayed: refused at message 3, no use spent", async () => {
    issuer = await startIssuer();
    const token = issuer.token({ uses: 5 });
    const joined = await joinWith(token.body, 'newcomer');
    expect(joined.cert.name).toBe('newcomer');
    expect(usesLeft(issuer.tokens, token.idHex)).toBe(4);
    const recorded = issuer.received[0]!;
    expect(recorded).toHaveLength(3); // message 1 (e + token id), message 3 (s, se, psk), the JoinRequest

    for (const third of [recorded[1]!, recorded[2]!]) {
      const ws = await dial(issuer.port.url(JOIN_PATH));
      const closed = closeOf(ws);
      ws.send(recorded[0]!); // names a known token: the issuer answers with message 2
      const message2 = await nextMessage(ws);
      expect(message2.length).toBeGreaterThanOrEqual(32 + 48 + 16); // e, encrypted s, tag: no refusal inside
      ws.send(third);
      expect(await closed).toEqual({ code: 4003, reason: 'token secret does not match' });
    }
    // nothing was spent, nobody else joined, and the refusals were counted
    expect(usesLeft(issuer.tokens, token.idHex)).toBe(4);
    expect(issuer.joined.map((c) => c.name)).toEqual(['newcomer']);
    expect(issuer.refusals).toEqual([ErrorCodes.TOKEN_MALFORMED, ErrorCodes.TOKEN_MALFORMED]);
  });

  it('a replayed message 1 alone gets a message 2 nobody but the original joiner can read, then the deadline', async () => {
    issuer = await startIssuer();
    const token = issuer.token({ uses: 2 }); // a use left: the issuer does answer message 1
    await joinWith(token.body, 'first');
    const ws = await dial(issuer.port.url(JOIN_PATH));
    const closed = closeOf(ws);
    ws.send(issuer.received[0]![0]!);
    await nextMessage(ws);
    // the replayer holds neither the joiner's ephemeral key nor the psk: it can only wait
    const verdict = await closed;
    expect(verdict.code).toBe(4003);
    expect(issuer.refusals).toEqual([ErrorCodes.HANDSHAKE_TIMEOUT]);
    expect(usesLeft(issuer.tokens, token.idHex)).toBe(1);
    expect(issuer.joined).toHaveLength(1);
  }, 10_000);
});

function captured(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    if (err instanceof MeshError) return err;
    throw err;
  }
  return undefined;
}
