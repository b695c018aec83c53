import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError } from '../../errors.js';
import { asBuffer } from '../../util/bytes.js';

/** Raw X25519 key pair (RFC 7748): both halves are 32 bytes. */
export interface X25519KeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

export const X25519_KEY_LENGTH = 32;

// node:crypto imports raw curve keys only wrapped, as DER or JWK. DER is the fallback: its OpenSSL
// decoder costs ~0.1 ms per public and ~0.7 ms per private key, 10x the JWK path, which would make
// key import, not the DH, the cost of a handshake. These are the RFC 8410 headers: prefix + raw key
// is a complete PKCS8 / SPKI document.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

function checkLength(field: string, bytes: Uint8Array): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== X25519_KEY_LENGTH) {
    const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes;
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field}: expected a ${X25519_KEY_LENGTH}-byte X25519 key, got ${got}`);
  }
}

function privateKeyObject(privateKey: Uint8Array): KeyObject {
  const raw = asBuffer(privateKey);
  try {
    // node derives the public half from `d` and only checks that `x` is a string (RFC 8037 makes
    // it required), so an empty one saves computing it here.
    const key = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: raw.toString('base64url'), x: '' }, format: 'jwk' });
    // Guard against a node that would keep the given `x` instead of deriving it: use DER then.
    if (key.export({ format: 'jwk' }).x?.length === 43) return key;
  } catch {
    // fall through to DER
  }
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const raw = asBuffer(publicKey);
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
  } catch {
    return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  }
}

function fromBase64Url(field: string | undefined): Uint8Array {
  return new Uint8Array(Buffer.from(field ?? '', 'base64url'));
}

/** Raw public key of a private (or public) KeyObject: an OKP JWK carries `x` either way. */
function rawPublic(key: KeyObject): Uint8Array {
  return fromBase64Url(key.export({ format: 'jwk' }).x);
}

function rawPrivate(key: KeyObject): Uint8Array {
  return fromBase64Url(key.export({ format: 'jwk' }).d);
}

/**
 * An X25519 private key with its node KeyObject cached: importing the DER document costs about as
 * much as the DH itself, and a Noise static key is used for every handshake.
 */
export class X25519Private implements X25519KeyPair {
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
  readonly #key: KeyObject;

  private constructor(key: KeyObject, privateKey: Uint8Array, publicKey: Uint8Array) {
    this.#key = key;
    this.privateKey = privateKey;
    this.publicKey = publicKey;
  }

  static generate(): X25519Private {
    const { privateKey } = generateKeyPairSync('x25519');
    return new X25519Private(privateKey, rawPrivate(privateKey), rawPublic(privateKey));
  }

  static fromPrivate(privateKey: Uint8Array): X25519Private {
    checkLength('x25519 private key', privateKey);
    const key = privateKeyObject(privateKey);
    return new X25519Private(key, new Uint8Array(privateKey), rawPublic(key));
  }

  /** Reuses `pair` when it already is an X25519Private, so callers can pass either shape. */
  static from(pair: X25519KeyPair): X25519Private {
    return pair instanceof X25519Private ? pair : X25519Private.fromPrivate(pair.privateKey);
  }

  /** X25519(this, remotePublic); throws HANDSHAKE_FAILED for low-order points (all-zero result). */
  dh(remotePublic: Uint8Array): Uint8Array {
    checkLength('x25519 public key', remotePublic);
    let shared: Buffer;
    try {
      shared = diffieHellman({ privateKey: this.#key, publicKey: publicKeyObject(remotePublic) });
    } catch (err) {
      // OpenSSL refuses to return the all-zero secret a small-order point yields (RFC 7748 §6.1);
      // the check below covers any backend that does not.
      throw new MeshError(ErrorCodes.HANDSHAKE_FAILED, 'x25519: remote public key is a small-order point (shared secret would be all zero)', { cause: err });
    }
    let acc = 0;
    for (let i = 0; i < shared.length; i++) acc |= shared[i]!;
    if (acc === 0) {
      throw new MeshError(ErrorCodes.HANDSHAKE_FAILED, 'x25519: remote public key is a small-order point (shared secret is all zero)');
    }
    return new Uint8Array(shared);
  }
}

export function generateX25519(): X25519KeyPair {
  const k = X25519Private.generate();
  return { publicKey: k.publicKey, privateKey: k.privateKey };
}

export function x25519FromPrivate(privateKey: Uint8Array): X25519KeyPair {
  const k = X25519Private.fromPrivate(privateKey);
  return { publicKey: k.publicKey, privateKey: k.privateKey };
}

/** X25519(privateKey, publicKey); rejects small-order public keys with HANDSHAKE_FAILED. */
export function x25519(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  return X25519Private.fromPrivate(privateKey).dh(publicKey);
}
