import { diffieHellman, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError } from '../../errors.js';
import { asBuffer } from '../../util/bytes.js';
import type { SodiumNative } from '../sodium-native.js';
import { sodiumCurveFunctions, type CurveBackend } from './backend.js';
import { okpPrivateKey, okpPublicKey } from './okp.js';

/** Raw X25519 key pair (RFC 7748): both halves are 32 bytes. */
export interface X25519KeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

export const X25519_KEY_LENGTH = 32;

function checkLength(field: string, bytes: Uint8Array): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== X25519_KEY_LENGTH) {
    const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes;
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field}: expected a ${X25519_KEY_LENGTH}-byte X25519 key, got ${got}`);
  }
}

/**
 * X25519 through libsodium or node:crypto (backend.ts). Measured on this 2-vCPU machine: a DH with
 * a new remote key (each Noise ephemeral is new) 49-53 µs against 76-83, deriving a public key 29-32
 * against 67-87. A Noise XX handshake does 3 DHs and one key generation on each side.
 */
type SodiumScalarmult = Pick<SodiumNative, 'crypto_scalarmult' | 'crypto_scalarmult_base'>;

/** libsodium's scalar multiplication, or null (node:crypto computes). */
function sodiumScalarmult(): SodiumScalarmult | null {
  return sodiumCurveFunctions(['crypto_scalarmult', 'crypto_scalarmult_base']);
}

/** The backend new keys and DHs use. */
export function x25519Backend(): CurveBackend {
  return sodiumScalarmult() === null ? 'node:crypto' : 'libsodium';
}

/**
 * An X25519 private key. With node:crypto its KeyObject is cached (importing costs about as much
 * as the DH itself, and a Noise static key is used for every handshake); libsodium needs none.
 */
export class X25519Private implements X25519KeyPair {
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
  #key: KeyObject | undefined;

  private constructor(key: KeyObject | undefined, privateKey: Uint8Array, publicKey: Uint8Array) {
    this.#key = key;
    this.privateKey = privateKey;
    this.publicKey = publicKey;
  }

  /**
   * A fresh key from the CSPRNG, clamped as RFC 7748 §5 (and OpenSSL's key generation) does.
   *
   * Not generateKeyPairSync: on Node 20 its key stays tied to the dead key-generation job, and when
   * a garbage collection finalises that job while the key is being exported (the export holds the
   * key's lock and allocates), the job's destructor waits for the same lock and the process hangs
   * for good, every thread asleep. A Noise ephemeral is generated per handshake, so this hung
   * agents at start-up and could hang one at any handshake; test/e2e/keygen-gc.test.ts reproduces
   * it. Node 24 does not have the bug. Importing random bytes (okpPrivateKey) involves no job.
   */
  static generate(): X25519Private {
    const scalar = randomBytes(X25519_KEY_LENGTH);
    scalar[0]! &= 248;
    scalar[31]! &= 127;
    scalar[31]! |= 64;
    return X25519Private.fromPrivate(scalar);
  }

  static fromPrivate(privateKey: Uint8Array): X25519Private {
    checkLength('x25519 private key', privateKey);
    const own = new Uint8Array(privateKey);
    const lib = sodiumScalarmult();
    if (lib !== null) {
      // clamps a copy of the scalar as RFC 7748 says, like OpenSSL's derivation
      const publicKey = Buffer.alloc(X25519_KEY_LENGTH);
      lib.crypto_scalarmult_base(publicKey, asBuffer(own));
      return new X25519Private(undefined, own, new Uint8Array(publicKey));
    }
    const { key, publicKey } = okpPrivateKey('X25519', own);
    return new X25519Private(key, own, publicKey);
  }

  /** Reuses `pair` when it already is an X25519Private, so callers can pass either shape. */
  static from(pair: X25519KeyPair): X25519Private {
    return pair instanceof X25519Private ? pair : X25519Private.fromPrivate(pair.privateKey);
  }

  /** X25519(this, remotePublic); throws HANDSHAKE_FAILED for low-order points (all-zero result). */
  dh(remotePublic: Uint8Array): Uint8Array {
    checkLength('x25519 public key', remotePublic);
    const lib = sodiumScalarmult();
    // a key made while libsodium computed has no KeyObject yet (outside the try: an import failure
    // is not the remote key's fault)
    if (lib === null) this.#key ??= okpPrivateKey('X25519', this.privateKey).key;
    let shared: Buffer;
    try {
      if (lib !== null) {
        shared = Buffer.alloc(X25519_KEY_LENGTH);
        lib.crypto_scalarmult(shared, asBuffer(this.privateKey), asBuffer(remotePublic));
      } else {
        shared = diffieHellman({ privateKey: this.#key!, publicKey: okpPublicKey('X25519', remotePublic) });
      }
    } catch (err) {
      // OpenSSL and libsodium both refuse to return the all-zero secret a small-order point yields
      // (RFC 7748 §6.1); the check below covers a backend that would not.
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
