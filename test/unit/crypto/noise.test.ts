import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../src/errors.js';
import { generateX25519 } from '../../../src/crypto/keys/index.js';
import type { X25519KeyPair } from '../../../src/crypto/keys/index.js';
import {
  CipherState,
  HandshakeState,
  MESH_JOIN_PROTOCOL,
  MESH_NOISE_PROTOCOL,
  NOISE_MAX_NONCE,
  NOISE_MAX_PLAINTEXT_LENGTH,
  NoiseTransport,
  parseProtocolName,
} from '../../../src/crypto/noise/index.js';
import { equalBytes, toHex, utf8Bytes } from '../../../src/util/bytes.js';
import { seededRandom } from '../../../src/util/random.js';
import { expectMeshError } from '../../helpers/mesh-error.js';


function key(fill: number): Uint8Array {
  return new Uint8Array(32).fill(fill);
}

interface Pair {
  init: HandshakeState;
  resp: HandshakeState;
}

function xxPair(protocolName = MESH_NOISE_PROTOCOL, initPsk?: Uint8Array, respPsk?: Uint8Array): Pair & { si: X25519KeyPair; sr: X25519KeyPair } {
  const si = generateX25519();
  const sr = generateX25519();
  const init = new HandshakeState({ protocolName, initiator: true, s: si, prologue: utf8Bytes('osmoda'), psks: initPsk ? [initPsk] : [] });
  const resp = new HandshakeState({ protocolName, initiator: false, s: sr, prologue: utf8Bytes('osmoda'), psks: respPsk ? [respPsk] : [] });
  return { init, resp, si, sr };
}

function runHandshake({ init, resp }: Pair, payloads: Uint8Array[] = []): Uint8Array[] {
  const received: Uint8Array[] = [];
  for (let i = 0; !init.isComplete; i++) {
    const [sender, receiver] = i % 2 === 0 ? [init, resp] : [resp, init];
    received.push(receiver.readMessage(sender.writeMessage(payloads[i] ?? new Uint8Array(0))));
  }
  return received;
}

describe('HandshakeState', () => {
  it('XX: two fresh key pairs complete, exchange payloads and learn each other’s static keys', () => {
    const p = xxPair();
    const payloads = [utf8Bytes('hello'), utf8Bytes('cert of responder'), utf8Bytes('cert of initiator')];
    const received = runHandshake(p, payloads);
    expect(received.map((r) => Buffer.from(r).toString())).toEqual(['hello', 'cert of responder', 'cert of initiator']);
    expect(p.init.isComplete && p.resp.isComplete).toBe(true);
    expect(toHex(p.init.remoteStatic!)).toBe(toHex(p.sr.publicKey));
    expect(toHex(p.resp.remoteStatic!)).toBe(toHex(p.si.publicKey));
    expect(toHex(p.init.handshakeHash)).toBe(toHex(p.resp.handshakeHash));

    const a = new NoiseTransport(p.init.split());
    const b = new NoiseTransport(p.resp.split());
    const m1 = a.seal(utf8Bytes('ping'));
    expect(m1.length).toBe(4 + 16);
    expect(Buffer.from(b.open(m1)).toString()).toBe('ping');
    expect(Buffer.from(a.open(b.seal(utf8Bytes('pong')))).toString()).toBe('pong');
    expect([a.sentBytes, a.receivedBytes, b.sentBytes, b.receivedBytes]).toEqual([20, 20, 20, 20]);
    expect([a.sendNonce, b.receiveNonce]).toEqual([1n, 1n]);
  });

  it('XX: different prologues make the handshake fail', () => {
    const si = generateX25519();
    const sr = generateX25519();
    const init = new HandshakeState({ protocolName: MESH_NOISE_PROTOCOL, initiator: true, s: si, prologue: utf8Bytes('a') });
    const resp = new HandshakeState({ protocolName: MESH_NOISE_PROTOCOL, initiator: false, s: sr, prologue: utf8Bytes('b') });
    resp.readMessage(init.writeMessage());
    expectMeshError(() => init.readMessage(resp.writeMessage()), ErrorCodes.NOISE_DECRYPT);
  });

  it('IK and KK complete with pre-known static keys', () => {
    const si = generateX25519();
    const sr = generateX25519();
    for (const protocolName of ['Noise_IK_25519_ChaChaPoly_BLAKE2s', 'Noise_KK_25519_ChaChaPoly_SHA256']) {
      const isKK = protocolName.includes('_KK_');
      const init = new HandshakeState({ protocolName, initiator: true, s: si, rs: sr.publicKey });
      const resp = new HandshakeState({ protocolName, initiator: false, s: sr, ...(isKK ? { rs: si.publicKey } : {}) });
      const got = runHandshake({ init, resp }, [utf8Bytes('0-rtt'), utf8Bytes('ok')]);
      expect(got.map((g) => Buffer.from(g).toString())).toEqual(['0-rtt', 'ok']);
      expect(toHex(resp.remoteStatic!)).toBe(toHex(si.publicKey));
      expect(toHex(init.handshakeHash)).toBe(toHex(resp.handshakeHash));
    }
  });

  it('IK: an initiator with the wrong responder key fails on message 1 with NOISE_DECRYPT', () => {
    const init = new HandshakeState({ protocolName: 'Noise_IK_25519_ChaChaPoly_BLAKE2s', initiator: true, s: generateX25519(), rs: generateX25519().publicKey });
    const resp = new HandshakeState({ protocolName: 'Noise_IK_25519_ChaChaPoly_BLAKE2s', initiator: false, s: generateX25519() });
    expectMeshError(() => resp.readMessage(init.writeMessage()), ErrorCodes.NOISE_DECRYPT);
  });

  it('XXpsk3: the same psk completes; a wrong psk fails with NOISE_DECRYPT', () => {
    const ok = xxPair(MESH_JOIN_PROTOCOL, key(7), key(7));
    runHandshake(ok);
    expect(ok.resp.isComplete).toBe(true);

    const bad = xxPair(MESH_JOIN_PROTOCOL, key(7), key(8));
    bad.resp.readMessage(bad.init.writeMessage());
    bad.init.readMessage(bad.resp.writeMessage());
    const msg3 = bad.init.writeMessage(utf8Bytes('join request'));
    expectMeshError(() => bad.resp.readMessage(msg3), ErrorCodes.NOISE_DECRYPT);
    expect(bad.resp.isFailed).toBe(true);
    expectMeshError(() => bad.resp.split(), ErrorCodes.NOISE_STATE);
  });

  it('XXpsk3: the responder may set the psk after reading message 1, and must before message 3', () => {
    const si = generateX25519();
    const sr = generateX25519();
    const init = new HandshakeState({ protocolName: MESH_JOIN_PROTOCOL, initiator: true, s: si, psks: [key(3)] });
    const resp = new HandshakeState({ protocolName: MESH_JOIN_PROTOCOL, initiator: false, s: sr });
    expect(Buffer.from(resp.readMessage(init.writeMessage(utf8Bytes('token-id-42')))).toString()).toBe('token-id-42');
    init.readMessage(resp.writeMessage());
    const msg3 = init.writeMessage();
    expectMeshError(() => resp.readMessage(msg3), ErrorCodes.NOISE_STATE);
    expect(resp.isFailed).toBe(false); // rejected before any state changed
    resp.setPsk(key(3));
    resp.readMessage(msg3);
    expect(resp.isComplete).toBe(true);
    expectMeshError(() => resp.setPsk(key(3)), ErrorCodes.NOISE_STATE);
    expectMeshError(() => resp.setPsk(new Uint8Array(31), 0), ErrorCodes.NOISE_STATE);
  });

  it('a tampered handshake message fails with NOISE_DECRYPT and the state stays failed', () => {
    const p = xxPair();
    p.resp.readMessage(p.init.writeMessage());
    const msg2 = p.resp.writeMessage(utf8Bytes('payload'));
    msg2[msg2.length - 20]! ^= 0x01;
    const err = expectMeshError(() => p.init.readMessage(msg2), ErrorCodes.NOISE_DECRYPT);
    expect(err.message).toMatch(/readMessage 2/);
    expectMeshError(() => p.init.writeMessage(), ErrorCodes.NOISE_STATE);
    expectMeshError(() => p.init.readMessage(msg2), ErrorCodes.NOISE_STATE);
  });

  it('calls out of turn, after completion or a second split raise NOISE_STATE', () => {
    const p = xxPair();
    expectMeshError(() => p.init.readMessage(new Uint8Array(64)), ErrorCodes.NOISE_STATE);
    expectMeshError(() => p.resp.writeMessage(), ErrorCodes.NOISE_STATE);
    expectMeshError(() => p.init.split(), ErrorCodes.NOISE_STATE);
    expect(p.init.isWriteTurn).toBe(true);
    expect(p.resp.isWriteTurn).toBe(false);
    p.resp.readMessage(p.init.writeMessage());
    expectMeshError(() => p.init.writeMessage(), ErrorCodes.NOISE_STATE);
    p.init.readMessage(p.resp.writeMessage());
    p.resp.readMessage(p.init.writeMessage());
    expectMeshError(() => p.init.writeMessage(), ErrorCodes.NOISE_STATE);
    expectMeshError(() => p.resp.readMessage(new Uint8Array(64)), ErrorCodes.NOISE_STATE);
    p.init.split();
    expectMeshError(() => p.init.split(), ErrorCodes.NOISE_STATE);
  });

  it('truncated and oversized messages raise MALFORMED_FRAME / FRAME_TOO_LARGE and change nothing', () => {
    const p = xxPair();
    expectMeshError(() => p.resp.readMessage(new Uint8Array(31)), ErrorCodes.MALFORMED_FRAME);
    expectMeshError(() => p.resp.readMessage(new Uint8Array(65536)), ErrorCodes.FRAME_TOO_LARGE);
    // Message 1 of XX is `e` + cleartext payload: 32 bytes of overhead, so 65503 is the largest payload.
    expectMeshError(() => p.init.writeMessage(new Uint8Array(65504)), ErrorCodes.FRAME_TOO_LARGE);
    const msg1 = p.init.writeMessage(new Uint8Array(65503));
    expect(msg1.length).toBe(65535);
    p.resp.readMessage(msg1);
    const msg2 = p.resp.writeMessage();
    expect(msg2.length).toBe(32 + 48 + 16);
    const err = expectMeshError(() => p.init.readMessage(msg2.subarray(0, 95)), ErrorCodes.MALFORMED_FRAME);
    expect(err.message).toMatch(/at least 96 bytes.*got 95/);
    expect(p.init.isFailed).toBe(false);
    p.init.readMessage(msg2);
    expect(p.init.messageIndex).toBe(2);
  });

  it('a small-order remote ephemeral fails the handshake with HANDSHAKE_FAILED', () => {
    const resp = new HandshakeState({ protocolName: MESH_NOISE_PROTOCOL, initiator: false, s: generateX25519() });
    resp.readMessage(new Uint8Array(32)); // all-zero `e`, empty payload
    expectMeshError(() => resp.writeMessage(), ErrorCodes.HANDSHAKE_FAILED);
  });

  it('uses an injected Random for ephemeral keys (deterministic handshakes)', () => {
    const s = generateX25519();
    const rs = generateX25519();
    const run = (): Uint8Array => {
      const init = new HandshakeState({ protocolName: 'Noise_IK_25519_ChaChaPoly_BLAKE2s', initiator: true, s, rs: rs.publicKey, random: seededRandom(42) });
      return init.writeMessage();
    };
    expect(toHex(run())).toBe(toHex(run()));
  });

  it('rejects bad options and unsupported protocol names with INVALID_ARGUMENT', () => {
    for (const name of [
      'Noise_XX_448_ChaChaPoly_BLAKE2s',
      'Noise_XX_25519_AESGCM_BLAKE2s',
      'Noise_XX_25519_ChaChaPoly_BLAKE2b',
      'Noise_NK_25519_ChaChaPoly_BLAKE2s',
      'Noise_XXfallback_25519_ChaChaPoly_BLAKE2s',
      'Noise_XXpsk4_25519_ChaChaPoly_BLAKE2s',
      'Noise_XX_25519_ChaChaPoly',
      'XX',
    ]) {
      const err = expectMeshError(() => parseProtocolName(name), ErrorCodes.INVALID_ARGUMENT);
      expect(err.message).toContain(name);
    }
    expect(parseProtocolName(MESH_JOIN_PROTOCOL).pattern.messages).toEqual([['e'], ['e', 'ee', 's', 'es'], ['s', 'se', 'psk']]);
    expect(parseProtocolName('Noise_IKpsk2_25519_ChaChaPoly_SHA256').pattern.messages[1]).toEqual(['e', 'ee', 'se', 'psk']);
    expect(parseProtocolName('Noise_NNpsk0+psk2_25519_ChaChaPoly_SHA256').pattern.messages).toEqual([['psk', 'e'], ['e', 'ee', 'psk']]);

    expectMeshError(() => new HandshakeState({ protocolName: MESH_NOISE_PROTOCOL, initiator: true }), ErrorCodes.INVALID_ARGUMENT);
    expectMeshError(() => new HandshakeState({ protocolName: 'Noise_NN_25519_ChaChaPoly_BLAKE2s', initiator: true, s: generateX25519() }), ErrorCodes.INVALID_ARGUMENT);
    expectMeshError(() => new HandshakeState({ protocolName: 'Noise_IK_25519_ChaChaPoly_BLAKE2s', initiator: true, s: generateX25519() }), ErrorCodes.INVALID_ARGUMENT);
    expectMeshError(
      () => new HandshakeState({ protocolName: MESH_JOIN_PROTOCOL, initiator: true, s: generateX25519(), psks: [new Uint8Array(16)] }),
      ErrorCodes.INVALID_ARGUMENT,
    );
    expectMeshError(
      () => new HandshakeState({ protocolName: MESH_NOISE_PROTOCOL, initiator: true, s: generateX25519(), psks: [key(1)] }),
      ErrorCodes.INVALID_ARGUMENT,
    );
  });
});

describe('CipherState', () => {
  // Independent reference: @noble/ciphers (pure JS), with the Noise nonce layout of spec §12.3.
  function reference(k: Uint8Array, n: bigint, ad: Uint8Array, pt: Uint8Array): Uint8Array {
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setBigUint64(4, n, true);
    return chacha20poly1305(k, nonce, ad).encrypt(pt);
  }

  it('matches an independent ChaChaPoly at nonces that use both 32-bit halves', () => {
    const k = key(0x42);
    const cs = new CipherState(k);
    const pt = utf8Bytes('nonce layout check');
    const ad = utf8Bytes('ad');
    for (const n of [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, 0x1234_5678_9abc_def0n, NOISE_MAX_NONCE - 1n]) {
      cs.setNonce(n);
      expect(toHex(cs.encryptWithAd(ad, pt)), `nonce ${n}`).toBe(toHex(reference(k, n, ad, pt)));
      expect(cs.nonce).toBe(n + 1n);
    }
    cs.setNonce(0xffff_ffffn);
    cs.encryptWithAd(ad, pt);
    expect(cs.nonce).toBe(0x1_0000_0000n);
  });

  it('passes plaintext through before a key exists', () => {
    const cs = new CipherState();
    expect(cs.hasKey()).toBe(false);
    expect(toHex(cs.encryptWithAd(new Uint8Array(0), utf8Bytes('x')))).toBe(toHex(utf8Bytes('x')));
    expectMeshError(() => cs.rekey(), ErrorCodes.NOISE_STATE);
  });

  it('a failed decryption raises NOISE_DECRYPT and does not advance the nonce', () => {
    const tx = new CipherState(key(1));
    const rx = new CipherState(key(1));
    const c0 = tx.encryptWithAd(new Uint8Array(0), utf8Bytes('first'));
    const c1 = tx.encryptWithAd(new Uint8Array(0), utf8Bytes('second'));
    const forged = new Uint8Array(c0);
    forged[0]! ^= 0x80;
    expectMeshError(() => rx.decryptWithAd(new Uint8Array(0), forged), ErrorCodes.NOISE_DECRYPT);
    expectMeshError(() => rx.decryptWithAd(new Uint8Array(0), c0.subarray(0, 15)), ErrorCodes.NOISE_DECRYPT);
    expectMeshError(() => rx.decryptWithAd(utf8Bytes('other ad'), c0), ErrorCodes.NOISE_DECRYPT);
    expect(rx.nonce).toBe(0n);
    expect(Buffer.from(rx.decryptWithAd(new Uint8Array(0), c0)).toString()).toBe('first');
    expect(Buffer.from(rx.decryptWithAd(new Uint8Array(0), c1)).toString()).toBe('second');
    expect(rx.nonce).toBe(2n);
  });

  it('refuses to use nonce 2^64-1 (NOISE_NONCE_EXHAUSTED) for both directions', () => {
    const tx = new CipherState(key(9));
    const rx = new CipherState(key(9));
    tx.setNonce(NOISE_MAX_NONCE - 1n);
    rx.setNonce(NOISE_MAX_NONCE - 1n);
    const last = tx.encryptWithAd(new Uint8Array(0), utf8Bytes('last'));
    expect(Buffer.from(rx.decryptWithAd(new Uint8Array(0), last)).toString()).toBe('last');
    expect(tx.nonce).toBe(NOISE_MAX_NONCE);
    expectMeshError(() => tx.encryptWithAd(new Uint8Array(0), utf8Bytes('one more')), ErrorCodes.NOISE_NONCE_EXHAUSTED);
    expectMeshError(() => rx.decryptWithAd(new Uint8Array(0), last), ErrorCodes.NOISE_NONCE_EXHAUSTED);
    expectMeshError(() => tx.setNonce(NOISE_MAX_NONCE + 1n), ErrorCodes.INVALID_ARGUMENT);
  });

  it('rekey derives ENCRYPT(k, 2^64-1, empty, zeros32)[0:32] and keeps the nonce', () => {
    const k = key(5);
    const cs = new CipherState(k);
    cs.setNonce(3n);
    cs.rekey();
    expect(cs.nonce).toBe(3n);
    const newKey = reference(k, NOISE_MAX_NONCE, new Uint8Array(0), new Uint8Array(32)).subarray(0, 32);
    const pt = utf8Bytes('after rekey');
    expect(toHex(cs.encryptWithAd(new Uint8Array(0), pt))).toBe(toHex(reference(newKey, 3n, new Uint8Array(0), pt)));
  });
});

describe('NoiseTransport', () => {
  function transports(): [NoiseTransport, NoiseTransport] {
    const p = xxPair();
    runHandshake(p);
    return [new NoiseTransport(p.init.split()), new NoiseTransport(p.resp.split())];
  }

  it('rekey on both ends keeps them in agreement and changes the ciphertexts', () => {
    const [a, b] = transports();
    const pt = utf8Bytes('same plaintext');
    const before = a.seal(pt);
    expect(Buffer.from(b.open(before)).toString()).toBe('same plaintext');
    a.rekeySend();
    b.rekeyReceive();
    const after = a.seal(pt);
    expect(Buffer.from(b.open(after)).toString()).toBe('same plaintext');
    expect(a.sentBytesSinceRekey).toBe(after.length);
    expect(b.receivedBytesSinceRekey).toBe(after.length);
    expect(a.sentBytes).toBe(before.length + after.length);
    // The other direction is untouched by a one-sided rekey.
    expect(Buffer.from(a.open(b.seal(pt))).toString()).toBe('same plaintext');

    // Same key and nonce, with and without a rekey: different bytes, and the peer needs the rekey too.
    const plain = new NoiseTransport({ send: new CipherState(key(1)), receive: new CipherState(key(2)) });
    const rekeyed = new NoiseTransport({ send: new CipherState(key(1)), receive: new CipherState(key(2)) });
    const peer = new NoiseTransport({ send: new CipherState(key(2)), receive: new CipherState(key(1)) });
    rekeyed.rekeySend();
    const x = rekeyed.seal(pt);
    expect(equalBytes(x, plain.seal(pt))).toBe(false);
    expectMeshError(() => peer.open(x), ErrorCodes.NOISE_DECRYPT);
    peer.rekeyReceive();
    expect(Buffer.from(peer.open(x)).toString()).toBe('same plaintext');
  });

  it('seals up to 65519 bytes, refuses more, and rejects short or oversized ciphertexts', () => {
    const [a, b] = transports();
    const big = new Uint8Array(NOISE_MAX_PLAINTEXT_LENGTH).fill(0xab);
    const sealed = a.seal(big);
    expect(sealed.length).toBe(65535);
    expect(equalBytes(b.open(sealed), big)).toBe(true);
    expectMeshError(() => a.seal(new Uint8Array(NOISE_MAX_PLAINTEXT_LENGTH + 1)), ErrorCodes.FRAME_TOO_LARGE);
    expectMeshError(() => b.open(new Uint8Array(65536)), ErrorCodes.FRAME_TOO_LARGE);
    expectMeshError(() => b.open(new Uint8Array(15)), ErrorCodes.MALFORMED_FRAME);
    expect(a.seal(new Uint8Array(0)).length).toBe(16);
    expect(b.receiveNonce).toBe(1n);
  });
});
