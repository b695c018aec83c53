import { randomBytes, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError } from '../../errors.js';
import { asBuffer } from '../../util/bytes.js';
import type { SodiumNative } from '../sodium-native.js';
import { sodiumCurveFunctions, type CurveBackend } from './backend.js';
import { okpPrivateKey, okpPublicKey } from './okp.js';

/** Raw Ed25519 key pair (RFC 8032): `privateKey` is the 32-byte seed, `publicKey` 32 bytes. */
export interface Ed25519KeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

export const ED25519_KEY_LENGTH = 32;
export const ED25519_SIGNATURE_LENGTH = 64;

function checkLength(field: string, bytes: Uint8Array, expected: number): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== expected) {
    const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes;
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field}: expected ${expected} bytes, got ${got}`);
  }
}

/** An Ed25519 signing key with its KeyObject cached, for keys that sign repeatedly (authority, node). */
export class Ed25519Private implements Ed25519KeyPair {
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
  readonly #key: KeyObject;

  private constructor(key: KeyObject, seed: Uint8Array, publicKey: Uint8Array) {
    this.#key = key;
    this.privateKey = seed;
    this.publicKey = publicKey;
  }

  /** A fresh 32-byte seed from the CSPRNG (RFC 8032 §5.1.5). Not generateKeyPairSync: see x25519.ts. */
  static generate(): Ed25519Private {
    return Ed25519Private.fromPrivate(new Uint8Array(randomBytes(ED25519_KEY_LENGTH)));
  }

  static fromPrivate(seed: Uint8Array): Ed25519Private {
    checkLength('ed25519 private key (seed)', seed, ED25519_KEY_LENGTH);
    const { key, publicKey } = okpPrivateKey('Ed25519', seed);
    return new Ed25519Private(key, new Uint8Array(seed), publicKey);
  }

  sign(message: Uint8Array): Uint8Array {
    return new Uint8Array(sign(null, asBuffer(message), this.#key));
  }
}

export function generateEd25519(): Ed25519KeyPair {
  const k = Ed25519Private.generate();
  return { publicKey: k.publicKey, privateKey: k.privateKey };
}

export function ed25519FromPrivate(seed: Uint8Array): Ed25519KeyPair {
  const k = Ed25519Private.fromPrivate(seed);
  return { publicKey: k.publicKey, privateKey: k.privateKey };
}

export function ed25519Sign(privateKey: Uint8Array, message: Uint8Array): Uint8Array {
  return Ed25519Private.fromPrivate(privateKey).sign(message);
}

/** The libsodium verifier, or null (node:crypto verifies); see backend.ts. */
function sodiumVerify(): Pick<SodiumNative, 'crypto_sign_verify_detached'> | null {
  return sodiumCurveFunctions(['crypto_sign_verify_detached']);
}

/** The backend signatures are verified with (signing is rare and always node:crypto's). */
export function ed25519Backend(): CurveBackend {
  return sodiumVerify() === null ? 'node:crypto' : 'libsodium';
}

/**
 * The encodings of the eight points of small order (they generate the torsion subgroup), with the
 * sign bit of x cleared, plus y = p and y = p + 1, non-canonical encodings of two of them. Under
 * the plain RFC 8032 equation one signature "by" such a public key verifies for many messages (for
 * the identity, for every message). libsodium refuses these keys (and such an R), and so does the
 * OpenSSL of Node 22 and 24 (3.5), but Node 20's (3.0) does not. Checking them here, the same way
 * libsodium's ge25519_has_small_order does, makes every backend accept exactly the same signatures.
 */
const SMALL_ORDER_ENCODINGS: readonly Buffer[] = [
  '0000000000000000000000000000000000000000000000000000000000000000', // y = 0: order 4
  '0100000000000000000000000000000000000000000000000000000000000000', // y = 1: the identity
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', // order 8
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // y = p - 1: order 2
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // y = p (= 0)
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // y = p + 1 (= 1)
].map((hex) => Buffer.from(hex, 'hex'));

/** True when a 32-byte point encoding is one of SMALL_ORDER_ENCODINGS, whatever its sign bit. */
function hasSmallOrder(encoding: Uint8Array): boolean {
  return SMALL_ORDER_ENCODINGS.some((small) => {
    let diff = (encoding[31]! & 0x7f) ^ small[31]!;
    for (let i = 0; i < 31; i++) diff |= encoding[i]! ^ small[i]!;
    return diff === 0;
  });
}

/** A point encoding whose y is below p = 2^255 - 19 (libsodium's ge25519_is_canonical). */
function isCanonicalPoint(encoding: Uint8Array): boolean {
  if ((encoding[31]! & 0x7f) !== 0x7f) return true;
  for (let i = 30; i > 0; i--) if (encoding[i] !== 0xff) return true;
  return encoding[0]! < 0xed;
}

/** The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
const GROUP_ORDER = Buffer.from('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010', 'hex');

/** S < L (RFC 8032 §5.1.7: a larger S makes a second valid signature of the same message). */
function isCanonicalScalar(s: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    if (s[i]! < GROUP_ORDER[i]!) return true;
    if (s[i]! > GROUP_ORDER[i]!) return false;
  }
  return false;
}

/**
 * True only for a valid signature. Never throws: a verifier sees attacker-chosen bytes, and a
 * malformed key or signature is just "not valid". Beyond RFC 8032, both backends refuse a public
 * key or an R of small order and a non-canonical public key, as libsodium does.
 */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_KEY_LENGTH) return false;
  if (!(signature instanceof Uint8Array) || signature.length !== ED25519_SIGNATURE_LENGTH) return false;
  if (!(message instanceof Uint8Array)) return false;
  if (!isCanonicalPoint(publicKey) || hasSmallOrder(publicKey) || hasSmallOrder(signature.subarray(0, 32))) return false;
  if (!isCanonicalScalar(signature.subarray(32))) return false;
  try {
    const lib = sodiumVerify();
    if (lib !== null) return lib.crypto_sign_verify_detached(asBuffer(signature), asBuffer(message), asBuffer(publicKey));
    return verify(null, asBuffer(message), okpPublicKey('Ed25519', publicKey), asBuffer(signature));
  } catch {
    return false;
  }
}
