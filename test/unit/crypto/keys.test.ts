import { ED25519_TORSION_SUBGROUP, ed25519 as nobleEd25519, x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import {
  Ed25519Private,
  X25519Private,
  type CurveBackend,
  ed25519FromPrivate,
  ed25519Sign,
  ed25519Verify,
  generateEd25519,
  generateX25519,
  hkdfSha256,
  sha256,
  ed25519Backend,
  forceCurveBackend,
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
describe.each<CurveBackend>(['libsodium', 'node:crypto'])('X25519 (%s)', (backend) => {
  beforeAll(() => forceCurveBackend(backend === 'node:crypto' ? 'node:crypto' : undefined));
  afterAll(() => forceCurveBackend(undefined));

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
  afterAll(() => forceCurveBackend(undefined));

  it('libsodium and node:crypto derive the same public keys and secrets, unclamped scalars included', () => {
    const rng = seededRandom(7);
    for (let i = 0; i < 16; i++) {
      // raw random scalars, not clamped: both must clamp them the same way (RFC 7748 decodeScalar25519)
      const a = rng.bytes(32);
      const b = rng.bytes(32);
      forceCurveBackend(undefined);
      expect(x25519Backend()).toBe('libsodium');
      const sodiumA = X25519Private.fromPrivate(a);
      const sodiumShared = toHex(sodiumA.dh(x25519FromPrivate(b).publicKey));
      forceCurveBackend('node:crypto');
      const nodeA = X25519Private.fromPrivate(a);
      expect(toHex(nodeA.publicKey)).toBe(toHex(sodiumA.publicKey));
      expect(toHex(nodeA.dh(x25519FromPrivate(b).publicKey))).toBe(sodiumShared);
      // a key made under one backend works under the other (the node path imports it on first use)
      expect(toHex(sodiumA.dh(x25519FromPrivate(b).publicKey))).toBe(sodiumShared);
      expect(toHex(nobleX25519.getSharedSecret(a, nobleX25519.getPublicKey(b)))).toBe(sodiumShared);
    }
  });
});

// Every Ed25519 test runs with both verifiers: libsodium (the default, as sodium-native loads here)
// and node:crypto (the fallback). Signing is node:crypto's either way.
describe.each<CurveBackend>(['libsodium', 'node:crypto'])('Ed25519 (%s verifies)', (backend) => {
  beforeAll(() => forceCurveBackend(backend === 'node:crypto' ? 'node:crypto' : undefined));
  afterAll(() => forceCurveBackend(undefined));

  it('verifies with that backend', () => {
    expect(ed25519Backend()).toBe(backend);
  });

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

  it('matches RFC 8032 §7.1 tests 2 and 3', () => {
    const cases = [
      ['4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', '72',
        '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'],
      ['c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7', 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025', 'af82',
        '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a'],
    ];
    for (const [seed, publicKey, message, signature] of cases) {
      expect(toHex(ed25519FromPrivate(fromHex(seed!)).publicKey)).toBe(publicKey);
      expect(toHex(ed25519Sign(fromHex(seed!), fromHex(message!)))).toBe(signature);
      expect(ed25519Verify(fromHex(publicKey!), fromHex(message!), fromHex(signature!))).toBe(true);
      expect(ed25519Verify(fromHex(publicKey!), fromHex(message! + '00'), fromHex(signature!))).toBe(false);
    }
  });

  it('refuses a second encoding of a valid signature (S + L)', () => {
    const k = generateEd25519();
    const msg = utf8Bytes('renewal');
    const sig = ed25519Sign(k.privateKey, msg);
    const malleated = new Uint8Array(64);
    malleated.set(sig.subarray(0, 32));
    malleated.set(littleEndian32(fromLittleEndian(sig.subarray(32)) + GROUP_ORDER), 32);
    expect(ed25519Verify(k.publicKey, msg, sig)).toBe(true);
    expect(ed25519Verify(k.publicKey, msg, malleated)).toBe(false);
  });

  it('refuses public keys of small order (one signature by the identity fits every message, and OpenSSL 3.0 alone accepts it)', () => {
    // public key and R the identity, S = 0: [0]B = O + [k]O holds for every k, so every message
    const identity = fromHex(ED25519_TORSION_SUBGROUP[0]!);
    const universal = new Uint8Array(64);
    universal.set(identity);
    const messages = [utf8Bytes('any'), utf8Bytes('other'), new Uint8Array(0)];
    for (const msg of messages) {
      // what the check below guards against: OpenSSL 3.0 (Node 20's) accepts it, 3.5 (Node 22's and 24's) refuses it too
      if (OPENSSL_ACCEPTS_SMALL_ORDER) expect(rawOpenSslVerify(identity, msg, universal)).toBe(true);
      expect(ed25519Verify(identity, msg, universal)).toBe(false);
    }
    // every point of small order, both signs of x, and the non-canonical encodings of 0 and 1
    const encodings = [...ED25519_TORSION_SUBGROUP, 'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'];
    for (const hex of encodings) {
      for (const sign of [0, 0x80]) {
        const key = fromHex(hex);
        key[31] = (key[31]! & 0x7f) | sign;
        // an independent implementation agrees that each one it can decode has small order
        let point: ReturnType<typeof nobleEd25519.Point.fromHex> | undefined;
        try {
          point = nobleEd25519.Point.fromHex(toHex(key));
        } catch {
          point = undefined; // x = 0 with the sign bit set: no point at all
        }
        if (point !== undefined) expect(point.isSmallOrder()).toBe(true);
        for (const sig of [universal, new Uint8Array(64).fill(1)]) expect(ed25519Verify(key, messages[0]!, sig)).toBe(false);
      }
    }
  });

  it('refuses a signature whose R has small order, though it satisfies the RFC 8032 equation', () => {
    // The signer can make one: R = the identity, S = k·a, with k = SHA-512(R || A || M).
    const seed = fromHex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
    const publicKey = ed25519FromPrivate(seed).publicKey;
    const h = createHash('sha512').update(seed).digest();
    h[0]! &= 248;
    h[31]! &= 127;
    h[31]! |= 64;
    const a = fromLittleEndian(h.subarray(0, 32));
    const msg = utf8Bytes('record');
    const r = fromHex(ED25519_TORSION_SUBGROUP[0]!);
    const k = fromLittleEndian(createHash('sha512').update(r).update(publicKey).update(msg).digest()) % GROUP_ORDER;
    const sig = new Uint8Array(64);
    sig.set(r);
    sig.set(littleEndian32((k * a) % GROUP_ORDER), 32);
    if (OPENSSL_ACCEPTS_SMALL_ORDER) expect(rawOpenSslVerify(publicKey, msg, sig)).toBe(true);
    expect(ed25519Verify(publicKey, msg, sig)).toBe(false);
  });

  it('refuses non-canonical public key encodings (y >= p)', () => {
    const msg = utf8Bytes('m');
    for (const low of [0xef, 0xf0, 0xfe, 0xff]) {
      const key = new Uint8Array(32).fill(0xff);
      key[0] = low;
      key[31] = 0x7f;
      expect(ed25519Verify(key, msg, new Uint8Array(64).fill(2))).toBe(false);
    }
  });
});

/** The Ed25519 group order L. */
const GROUP_ORDER = 2n ** 252n + 27742317777372353535851937790883648493n;

function fromLittleEndian(bytes: Uint8Array): bigint {
  return BigInt('0x' + (Buffer.from(bytes).reverse().toString('hex') || '0'));
}

function littleEndian32(n: bigint): Uint8Array {
  return new Uint8Array(Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse());
}

/**
 * Whether this Node's OpenSSL verifies signatures by or with points of small order as plain RFC 8032
 * says: OpenSSL 3.0 (Node 20) does, 3.5 (Node 22 and 24) refuses them. Where it does, the tests
 * show the signature ed25519Verify's own checks refuse.
 */
const OPENSSL_ACCEPTS_SMALL_ORDER = process.versions.openssl.startsWith('3.0.');

/** OpenSSL's RFC 8032 verification alone, without ed25519Verify's extra checks. */
function rawOpenSslVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') }, format: 'jwk' });
  return verify(null, message, key, signature);
}

describe('Ed25519 verifiers agree', () => {
  afterAll(() => forceCurveBackend(undefined));

  it('libsodium and node:crypto accept and refuse the same signatures, changed ones included', () => {
    const rng = seededRandom(11);
    let accepted = 0;
    for (let i = 0; i < 150; i++) {
      const k = Ed25519Private.fromPrivate(rng.bytes(32));
      const msg = rng.bytes(i % 90);
      const sig = k.sign(msg);
      const publicKey = new Uint8Array(k.publicKey);
      // a quarter stay valid, the rest get one bit of the key, the signature or the message changed
      const which = (['none', 'key', 'sig', 'msg'] as const)[i % 4]!;
      const target = which === 'key' ? publicKey : which === 'sig' ? sig : which === 'msg' && msg.length > 0 ? msg : undefined;
      if (target !== undefined) target[Math.floor(rng.float() * target.length)]! ^= 1 << Math.floor(rng.float() * 8);
      forceCurveBackend(undefined);
      const bySodium = ed25519Verify(publicKey, msg, sig);
      forceCurveBackend('node:crypto');
      const byNode = ed25519Verify(publicKey, msg, sig);
      expect(byNode, `case ${i} (${which})`).toBe(bySodium);
      expect(nobleEd25519.verify(sig, msg, publicKey), `case ${i} (${which})`).toBe(bySodium);
      if (bySodium) accepted++;
    }
    expect(accepted).toBeGreaterThanOrEqual(38);
    expect(accepted).toBeLessThan(60);
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
