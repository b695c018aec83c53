/**
 * ChaChaPoly, Noise §12.3's cipher (RFC 8439 ChaCha20-Poly1305 with a 96-bit nonce), behind one
 * small interface with two implementations of the same function:
 *
 * - libsodium through `sodium-native` (prebuilt N-API addon): one native call per message, in place.
 *   Measured here for one message: 100 bytes 0.9-1.5 µs against 7-11 µs for node:crypto on Node 20
 *   and 35 µs on Node 24 (node:crypto builds a new OpenSSL cipher context for every message); 64 KiB
 *   45-54 µs against 54-61 µs on Node 20, 41-47 against 64-95 on Node 24.
 * - node:crypto (OpenSSL), used when the addon cannot load (a platform without a prebuild), or
 *   when OSMODA_MESH_AEAD=node:crypto asks for it.
 *
 * Both produce the same bytes (tests check each against RFC 8439's vector and against each other),
 * so peers using different ones interoperate.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { asBuffer } from '../../util/bytes.js';
import { loadSodiumNative, type SodiumNative } from '../sodium-native.js';

export const TAG_LENGTH = 16;

export type AeadName = 'libsodium' | 'node:crypto';

export interface ChaChaPolyAead {
  readonly name: AeadName;
  /** ciphertext ‖ tag of the concatenation of `parts` (none copied first when there is one). */
  sealParts(key: Buffer, iv: Buffer, ad: Uint8Array, parts: readonly Uint8Array[]): Buffer;
  /** The plaintext, or a throw (any Error) when the tag does not authenticate. */
  open(key: Buffer, iv: Buffer, ad: Uint8Array, ciphertext: Uint8Array): Buffer;
}

function totalLength(parts: readonly Uint8Array[]): number {
  let total = 0;
  for (const part of parts) total += part.length;
  return total;
}

export const nodeCryptoAead: ChaChaPolyAead = {
  name: 'node:crypto',
  sealParts(key, iv, ad, parts) {
    const total = totalLength(parts);
    const cipher = createCipheriv('chacha20-poly1305', key, iv, { authTagLength: TAG_LENGTH });
    // Empty AD contributes nothing to Poly1305 (RFC 8439 §2.8), so the call can be skipped.
    if (ad.length > 0) cipher.setAAD(asBuffer(ad), { plaintextLength: total });
    // One exact-size output; each update() output and the tag are copied in, no concat.
    const out = Buffer.allocUnsafe(total + TAG_LENGTH);
    let offset = 0;
    for (const part of parts) {
      if (part.length === 0) continue;
      const chunk = cipher.update(asBuffer(part));
      out.set(chunk, offset);
      offset += chunk.length;
    }
    const rest = cipher.final();
    if (rest.length > 0) out.set(rest, offset);
    out.set(cipher.getAuthTag(), total);
    return out;
  },
  open(key, iv, ad, ciphertext) {
    const bodyLength = ciphertext.length - TAG_LENGTH;
    const ct = asBuffer(ciphertext);
    const decipher = createDecipheriv('chacha20-poly1305', key, iv, { authTagLength: TAG_LENGTH });
    if (ad.length > 0) decipher.setAAD(asBuffer(ad), { plaintextLength: bodyLength });
    decipher.setAuthTag(ct.subarray(bodyLength));
    const body = decipher.update(ct.subarray(0, bodyLength));
    const rest = decipher.final();
    return rest.length === 0 ? body : Buffer.concat([body, rest]);
  },
};

function sodiumAead(sodium: Pick<SodiumNative, 'crypto_aead_chacha20poly1305_ietf_encrypt' | 'crypto_aead_chacha20poly1305_ietf_decrypt'>): ChaChaPolyAead {
  return {
    name: 'libsodium',
    sealParts(key, iv, ad, parts) {
      const total = totalLength(parts);
      const out = Buffer.allocUnsafe(total + TAG_LENGTH);
      const adBuf = ad.length > 0 ? asBuffer(ad) : null;
      if (parts.length === 1) {
        sodium.crypto_aead_chacha20poly1305_ietf_encrypt(out, asBuffer(parts[0]!), adBuf, null, iv, key);
        return out;
      }
      // libsodium has no multi-part AEAD: the parts go into the output first and are encrypted in
      // place (ChaCha20 XORs each byte where it is; the tag is computed over the ciphertext after)
      let offset = 0;
      for (const part of parts) {
        out.set(part, offset);
        offset += part.length;
      }
      sodium.crypto_aead_chacha20poly1305_ietf_encrypt(out, out.subarray(0, total), adBuf, null, iv, key);
      return out;
    },
    open(key, iv, ad, ciphertext) {
      const out = Buffer.allocUnsafe(ciphertext.length - TAG_LENGTH);
      sodium.crypto_aead_chacha20poly1305_ietf_decrypt(out, null, asBuffer(ciphertext), ad.length > 0 ? asBuffer(ad) : null, iv, key);
      return out;
    },
  };
}

/** libsodium's ChaChaPoly, or null with the reason when the addon does not load here. */
export function loadSodiumAead(): { aead: ChaChaPolyAead | null; problem: string | null } {
  const { sodium, problem } = loadSodiumNative();
  if (sodium === null) return { aead: null, problem };
  if (typeof sodium.crypto_aead_chacha20poly1305_ietf_encrypt !== 'function') return { aead: null, problem: 'sodium-native has no crypto_aead_chacha20poly1305_ietf_encrypt' };
  return { aead: sodiumAead(sodium as SodiumNative), problem: null };
}

/**
 * The implementation to use: OSMODA_MESH_AEAD (`libsodium` or `node:crypto`) when set, otherwise
 * libsodium when it loads. `problem` is a warning for the log: why libsodium is not in use when it
 * was wanted, or a bad OSMODA_MESH_AEAD value; null when all is as asked.
 */
export function chooseAead(env: NodeJS.ProcessEnv = process.env): { aead: ChaChaPolyAead; problem: string | null } {
  const wanted = env['OSMODA_MESH_AEAD'];
  if (wanted === 'node:crypto') return { aead: nodeCryptoAead, problem: null };
  const badValue = wanted === undefined || wanted === 'libsodium' ? null : `OSMODA_MESH_AEAD=${wanted}: expected libsodium or node:crypto; using the default`;
  const sodium = loadSodiumAead();
  if (sodium.aead !== null) return { aead: sodium.aead, problem: badValue };
  return { aead: nodeCryptoAead, problem: [badValue, `${sodium.problem ?? 'libsodium unavailable'}: using node:crypto, slower per message (expect lower throughput)`].filter((p) => p !== null).join('; ') };
}

let chosen: { aead: ChaChaPolyAead; problem: string | null } | undefined;

/**
 * The process-wide ChaChaPoly and chooseAead's warning, chosen on first use: loading the addon
 * takes 14-25 ms, which CLI verbs that never seal a message (`peers`, `status`, …) need not pay.
 */
export function processAead(): { aead: ChaChaPolyAead; problem: string | null } {
  return (chosen ??= chooseAead());
}
