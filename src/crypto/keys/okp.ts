import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { asBuffer } from '../../util/bytes.js';

/**
 * Raw 32-byte Ed25519 / X25519 keys to node KeyObjects and back. node:crypto imports raw curve keys
 * only wrapped, as DER or JWK (RFC 8037 "OKP"). DER is the fallback: its OpenSSL decoder costs
 * ~0.1 ms per public and ~0.7 ms per private key, 10x the JWK path, which would make key import,
 * not the DH, the cost of a handshake. Callers cache the KeyObjects of long-lived keys.
 */

export type OkpCurve = 'Ed25519' | 'X25519';

// Fixed RFC 8410 DER headers: node imports raw OKP keys only inside PKCS8 / SPKI (or as JWK).
const DER_PREFIXES: Record<OkpCurve, { pkcs8: Buffer; spki: Buffer }> = {
  Ed25519: { pkcs8: Buffer.from('302e020100300506032b657004220420', 'hex'), spki: Buffer.from('302a300506032b6570032100', 'hex') },
  X25519: { pkcs8: Buffer.from('302e020100300506032b656e04220420', 'hex'), spki: Buffer.from('302a300506032b656e032100', 'hex') },
};

/** A private key's KeyObject and its raw 32-byte public half (which node derives on import). */
export interface OkpPrivate {
  key: KeyObject;
  publicKey: Uint8Array;
}

export function okpPrivateKey(curve: OkpCurve, privateKey: Uint8Array): OkpPrivate {
  const raw = asBuffer(privateKey);
  try {
    // node derives the public half from `d` and only checks that `x` is a string (RFC 8037 makes
    // it required), so an empty one saves computing it here.
    const key = createPrivateKey({ key: { kty: 'OKP', crv: curve, d: raw.toString('base64url'), x: '' }, format: 'jwk' });
    // Guard against a node that would keep the given `x` instead of deriving it: use DER then.
    const x = key.export({ format: 'jwk' }).x;
    if (x?.length === 43) return { key, publicKey: jwkBytes(x) };
  } catch {
    // fall through to DER
  }
  const key = createPrivateKey({ key: Buffer.concat([DER_PREFIXES[curve].pkcs8, raw]), format: 'der', type: 'pkcs8' });
  return { key, publicKey: jwkBytes(key.export({ format: 'jwk' }).x) };
}

export function okpPublicKey(curve: OkpCurve, publicKey: Uint8Array): KeyObject {
  const raw = asBuffer(publicKey);
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: curve, x: raw.toString('base64url') }, format: 'jwk' });
  } catch {
    return createPublicKey({ key: Buffer.concat([DER_PREFIXES[curve].spki, raw]), format: 'der', type: 'spki' });
  }
}

/** A JWK member (`d` or `x`) as raw bytes. */
export function jwkBytes(field: string | undefined): Uint8Array {
  return new Uint8Array(Buffer.from(field ?? '', 'base64url'));
}
