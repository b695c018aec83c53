import { randomBytes, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError } from '../../errors.js';
import { asBuffer } from '../../util/bytes.js';
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

/**
 * True only for a valid signature. Never throws: a verifier sees attacker-chosen bytes, and a
 * malformed key or signature is just "not valid".
 */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_KEY_LENGTH) return false;
  if (!(signature instanceof Uint8Array) || signature.length !== ED25519_SIGNATURE_LENGTH) return false;
  if (!(message instanceof Uint8Array)) return false;
  try {
    return verify(null, asBuffer(message), okpPublicKey('Ed25519', publicKey), asBuffer(signature));
  } catch {
    return false;
  }
}
