import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519 as nobleEd25519, x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { blake2s as nobleBlake2s } from '@noble/hashes/blake2.js';
import nacl from 'tweetnacl';
import { Ed25519Private, X25519Private, ed25519Backend, ed25519Verify, forceCurveBackend, x25519Backend } from '../src/crypto/keys/index.js';
import { loadSodiumAead, nodeCryptoAead } from '../src/crypto/noise/aead.js';
import { measure, withRatios, type Measurement } from './harness.js';

/**
 * Runs `fn` with X25519 and Ed25519 computed by node:crypto even where libsodium loads: the
 * baseline the agent's libsodium figures are compared with (crypto/keys/backend.ts).
 */
export function withNodeCryptoCurves<T>(fn: () => T): T {
  forceCurveBackend('node:crypto');
  try {
    return fn();
  } finally {
    forceCurveBackend(undefined);
  }
}

/**
 * node:crypto (OpenSSL) against libsodium (sodium-native, what the agent seals with when it loads)
 * and the pure-JS libraries of the design card, on the operations the agent does: AEAD per tunnel
 * message (a full 64 KiB one and a 100-byte one, where the cost per call dominates), X25519 and
 * Ed25519 per handshake, BLAKE2s in the Noise hash. The first case of each group is the baseline
 * its ratio is taken against.
 */
export function cryptoPrimitives(opts: { ms: number; repeats: number }): Measurement[] {
  const out: Measurement[] = [];
  const msg = randomBytes(65_519);
  const key = randomBytes(32);
  const nonce = Buffer.alloc(12);

  const noAd = new Uint8Array(0);
  const sodium = loadSodiumAead().aead;
  out.push(measure('node:crypto ChaCha20-Poly1305', 'AEAD seal 64 KiB', () => nodeCryptoAead.sealParts(key, nonce, noAd, [msg]), { ...opts, bytesPerOp: msg.length }));
  if (sodium !== null) out.push(measure('libsodium ChaCha20-Poly1305 (sodium-native)', 'AEAD seal 64 KiB', () => sodium.sealParts(key, nonce, noAd, [msg]), { ...opts, bytesPerOp: msg.length }));
  out.push(
    measure(
      'node:crypto AES-256-GCM',
      'AEAD seal 64 KiB',
      () => {
        const c = createCipheriv('aes-256-gcm', key, nonce);
        c.update(msg);
        c.final();
        c.getAuthTag();
      },
      { ...opts, bytesPerOp: msg.length },
    ),
  );
  const noble = chacha20poly1305(key, nonce);
  out.push(measure('@noble/ciphers ChaCha20-Poly1305', 'AEAD seal 64 KiB', () => chacha20poly1305(key, nonce).encrypt(msg), { ...opts, bytesPerOp: msg.length }));
  void noble;
  const naclKey = new Uint8Array(key);
  const naclNonce = new Uint8Array(24);
  out.push(measure('tweetnacl XSalsa20-Poly1305 (secretbox)', 'AEAD seal 64 KiB', () => nacl.secretbox(msg, naclNonce, naclKey), { ...opts, bytesPerOp: msg.length }));
  const request = randomBytes(100);
  out.push(measure('node:crypto ChaCha20-Poly1305', 'AEAD seal 100 B', () => nodeCryptoAead.sealParts(key, nonce, noAd, [request]), { ...opts, bytesPerOp: request.length }));
  if (sodium !== null) out.push(measure('libsodium ChaCha20-Poly1305 (sodium-native)', 'AEAD seal 100 B', () => sodium.sealParts(key, nonce, noAd, [request]), { ...opts, bytesPerOp: request.length }));
  out.push(measure('@noble/ciphers ChaCha20-Poly1305', 'AEAD seal 100 B', () => chacha20poly1305(key, nonce).encrypt(request), { ...opts, bytesPerOp: request.length }));

  const a = X25519Private.generate();
  const b = X25519Private.generate();
  // X25519Private computes with libsodium when it loads (the agent's choice), node:crypto otherwise
  out.push(withNodeCryptoCurves(() => measure('node:crypto (X25519Private.dh)', 'X25519 DH', () => a.dh(b.publicKey), opts)));
  if (x25519Backend() === 'libsodium') out.push(measure('libsodium crypto_scalarmult (X25519Private.dh, the agent\'s)', 'X25519 DH', () => a.dh(b.publicKey), opts));
  out.push(measure('@noble/curves x25519', 'X25519 DH', () => nobleX25519.getSharedSecret(a.privateKey, b.publicKey), opts));
  out.push(measure('tweetnacl scalarMult', 'X25519 DH', () => nacl.scalarMult(a.privateKey, b.publicKey), opts));

  const signer = Ed25519Private.generate();
  const small = randomBytes(200);
  const sig = signer.sign(small);
  out.push(measure('node:crypto', 'Ed25519 sign 200 B', () => signer.sign(small), opts));
  out.push(measure('@noble/curves ed25519', 'Ed25519 sign 200 B', () => nobleEd25519.sign(small, signer.privateKey), opts));
  const naclPair = nacl.sign.keyPair.fromSeed(signer.privateKey);
  out.push(measure('tweetnacl', 'Ed25519 sign 200 B', () => nacl.sign.detached(small, naclPair.secretKey), opts));
  // ed25519Verify verifies with libsodium when it loads (the agent's choice), node:crypto otherwise
  out.push(withNodeCryptoCurves(() => measure('node:crypto (ed25519Verify)', 'Ed25519 verify 200 B', () => ed25519Verify(signer.publicKey, small, sig), opts)));
  if (ed25519Backend() === 'libsodium') out.push(measure("libsodium crypto_sign_verify_detached (ed25519Verify, the agent's)", 'Ed25519 verify 200 B', () => ed25519Verify(signer.publicKey, small, sig), opts));
  out.push(measure('@noble/curves ed25519', 'Ed25519 verify 200 B', () => nobleEd25519.verify(sig, small, signer.publicKey), opts));
  out.push(measure('tweetnacl', 'Ed25519 verify 200 B', () => nacl.sign.detached.verify(small, sig, naclPair.publicKey), opts));

  const h = randomBytes(128);
  out.push(measure('node:crypto blake2s256', 'BLAKE2s 128 B', () => createHash('blake2s256').update(h).digest(), opts));
  out.push(measure('@noble/hashes blake2s', 'BLAKE2s 128 B', () => nobleBlake2s(h), opts));
  return withRatios(out);
}
