import { createHash, hkdfSync } from 'node:crypto';
import { ErrorCodes, MeshError } from '../../errors.js';
import { asBuffer } from '../../util/bytes.js';

export function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(asBuffer(bytes)).digest());
}

/** RFC 5869 HKDF-SHA256 (extract + expand), for key derivation outside Noise (join tokens, files). */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  // RFC 5869 §2.3 caps the output at 255 hash blocks.
  if (!Number.isInteger(length) || length < 1 || length > 255 * 32) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `hkdfSha256 length: expected an integer in 1..8160, got ${length}`);
  }
  return new Uint8Array(hkdfSync('sha256', asBuffer(ikm), asBuffer(salt), asBuffer(info), length));
}
