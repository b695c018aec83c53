import { ed25519 as nobleEd25519, x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import {
  Ed25519Private,
  X25519Private,
  type X25519Backend,
  ed25519FromPrivate,
  ed25519Sign,
  ed25519Verify,
  generateEd25519,
  generateX25519,
  hkdfSha256,
  sha256,
  forceX25519Backend,
  x25519,
  x25519Backend,
  x25519FromPrivate,
} from '../../../src/crypto/keys/index.js';
import { fromHex, toHex, utf8Bytes } from '../../../src/util/bytes.js';
import { seededRandom } from '../../../src/util/random.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof MeshError ? err.code : `non-MeshError: ${String(err)}`;
  }
  return undefined;
}

// Every X25519 test runs on both backends: libsodium (the default, as sodium-native loads here) and
// node:crypto (the fallback where it does not).
describe.each<X25519Backend>(['libsodium', 'node:crypto'])('X25519 (%s)', (backend) => {
  beforeAll(() => forceX25519Backend(backend === 'node:crypto' ? 'node:crypto' : undefined));
  afterAll(() => forceX25519Backend(undefined));

  it('computes with that backend', () => {
    expect(x25519Backend()).toBe(backend);
  });

  it('matches RFC 7748 §6.1', () => {
    const alice = x25519FromPrivate(fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
    const bob = x25519FromPrivate(fromHex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
    expect(toHex(alice.publicKey)).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(toHex(bob.publicKey)).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(toHex(x25519(alice.privateKey, bob.publicKey))).toBe(shared);
    expect(toHex(x25519(bob.privateKey, alice.publicKey))).toBe(shared);
  });

  it('agrees both ways for fresh keys; the cached-key class gives the same result', () => {
    const a = generateX25519();
    const b = generateX25519();
    expect(a.privateKey.length).toBe(32);
    expect(toHex(x25519(a.privateKey, b.publicKey))).toBe(toHex(x25519(b.privateKey, a.publicKey)));
    expect(toHex(X25519Private.from(a).dh(b.publicKey))).toBe(toHex(x25519(a.privateKey, b.publicKey)));
    expect(toHex(x25519FromPrivate(a.privateKey).publicKey)).toBe(toHex(a.publicKey));
    expect(toHex(a.publicKey)).not.toBe(toHex(b.publicKey));
  });

  it('fresh private keys are clamped as RFC 7748 §5 and their public key is the one an independent implementation derives', () => {
    for (let i = 0; i < 32; i++) {
      const k = X25519Private.generate();
      expect(k.privateKey[0]! & 7).toBe(0);
      expect(k.privateKey[31]! & 0xc0).toBe(0x40);
      expect(toHex(k.publicKey)).toBe(toHex(nobleX25519.getPublicKey(k.privateKey)));
    }
  });

  it('rejects small-order public keys with HANDSHAKE_FAILED and bad lengths with INVALID_ARGUMENT', () => {
    const a = generateX25519();
    expect(codeOf(() => x25519(a.privateKey, new Uint8Array(32)))).toBe(ErrorCodes.HANDSHAKE_FAILED);
    const one = new Uint8Array(32);
    one[0] = 1; // u = 1 has order 4 on the curve: the result is zero too
    expect(codeOf(() => x25519(a.privateKey, one))).toBe(ErrorCodes.HANDSHAKE_FAILED);
    expect(codeOf(() => x25519(a.privateKey, new Uint8Array(31)))).toBe(ErrorCodes.INVALID_ARGUMENT);
    expect(codeOf(() => x25519FromPrivate(new Uint8Array(33)))).toBe(ErrorCodes.INVALID_ARGUMENT);
  });
});

describe('X25519 backends agree', () => {
  afterAll(() => forceX25519Backend(undefined));

  it('libsodium and node:crypto derive the same public keys and secrets, unclamped scalars included', () => {
    const rng = seededRandom(7);
    for (let i = 0; i < 16; i++) {
      // raw random scalars, not clamped: both must clamp them the same way (RFC 7748 decodeScalar25519)
      const a = rng.bytes(32);
      const b = rng.bytes(32);
      forceX25519Backend(undefined);
      expect(x25519Backend()).toBe('libsodium');
      const sodiumA = X25519Private.fromPrivate(a);
      const sodiumShared = toHex(sodiumA.dh(x25519FromPrivate(b).publicKey));
      forceX25519Backend('node:crypto');
      const nodeA = X25519Private.fromPrivate(a);
      expect(toHex(nodeA.publicKey)).toBe(toHex(sodiumA.publicKey));
      expect(toHex(nodeA.dh(x25519FromPrivate(b).publicKey))).toBe(sodiumShared);
      // a key made under one backend works under the other (the node path imports it on first use)
      expect(toHex(sodiumA.dh(x25519FromPrivate(b).publicKey))).toBe(sodiumShared);
      expect(toHex(nobleX25519.getSharedSecret(a, nobleX25519.getPublicKey(b)))).toBe(sodiumShared);
    }
  });
});

describe('Ed25519', () => {
  it('matches RFC 8032 §7.1 test 1', () => {
    const k = ed25519FromPrivate(fromHex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'));
    expect(toHex(k.publicKey)).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    const sig = ed25519Sign(k.privateKey, new Uint8Array(0));
    expect(toHex(sig)).toBe(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    expect(ed25519Verify(k.publicKey, new Uint8Array(0), sig)).toBe(true);
  });

  it('the public half of a fresh key is the one an independent implementation derives from its seed', () => {
    for (let i = 0; i < 16; i++) {
      const k = Ed25519Private.generate();
      expect(k.privateKey.length).toBe(32);
      expect(toHex(k.publicKey)).toBe(toHex(nobleEd25519.getPublicKey(k.privateKey)));
    }
  });

  it('signs and verifies; any change to message, signature or key fails', () => {
    const k = generateEd25519();
    const msg = utf8Bytes('node certificate');
    const sig = ed25519Sign(k.privateKey, msg);
    expect(sig.length).toBe(64);
    expect(ed25519Verify(k.publicKey, msg, sig)).toBe(true);
    expect(toHex(Ed25519Private.fromPrivate(k.privateKey).sign(msg))).toBe(toHex(sig)); // deterministic
    expect(ed25519Verify(k.publicKey, utf8Bytes('node certificatE'), sig)).toBe(false);
    const badSig = new Uint8Array(sig);
    badSig[10]! ^= 1;
    expect(ed25519Verify(k.publicKey, msg, badSig)).toBe(false);
    expect(ed25519Verify(generateEd25519().publicKey, msg, sig)).toBe(false);
  });

  it('verify returns false, never throws, on garbage', () => {
    const k = generateEd25519();
    const msg = utf8Bytes('m');
    const sig = ed25519Sign(k.privateKey, msg);
    expect(ed25519Verify(k.publicKey.subarray(0, 31), msg, sig)).toBe(false);
    expect(ed25519Verify(k.publicKey, msg, sig.subarray(0, 63))).toBe(false);
    expect(ed25519Verify(k.publicKey, msg, new Uint8Array(65))).toBe(false);
    expect(ed25519Verify(new Uint8Array(32).fill(0xff), msg, sig)).toBe(false);
    expect(ed25519Verify(undefined as unknown as Uint8Array, msg, sig)).toBe(false);
    expect(ed25519Verify(k.publicKey, 'm' as unknown as Uint8Array, sig)).toBe(false);
    const rnd = seededRandom(7);
    for (let i = 0; i < 200; i++) {
      expect(ed25519Verify(rnd.bytes(32), rnd.bytes(i % 50), rnd.bytes(64))).toBe(false);
    }
    expect(codeOf(() => ed25519Sign(new Uint8Array(31), msg))).toBe(ErrorCodes.INVALID_ARGUMENT);
  });
});

describe('hashes', () => {
  it('sha256 and hkdfSha256 match FIPS 180-2 and RFC 5869 test case 1', () => {
    expect(toHex(sha256(utf8Bytes('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const okm = hkdfSha256(new Uint8Array(22).fill(0x0b), fromHex('000102030405060708090a0b0c'), fromHex('f0f1f2f3f4f5f6f7f8f9'), 42);
    expect(toHex(okm)).toBe('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
    expect(codeOf(() => hkdfSha256(new Uint8Array(1), new Uint8Array(0), new Uint8Array(0), 0))).toBe(ErrorCodes.INVALID_ARGUMENT);
  });
});
