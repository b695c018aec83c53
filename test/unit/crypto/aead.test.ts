import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chooseAead, loadSodiumAead, nodeCryptoAead, processAead, type ChaChaPolyAead } from '../../../src/crypto/noise/aead.js';

const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');

// RFC 8439 §2.8.2
const RFC_KEY = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
const RFC_NONCE = hex('070000004041424344454647');
const RFC_AAD = hex('50515253c0c1c2c3c4c5c6c7');
const RFC_PLAINTEXT = Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
const RFC_CIPHERTEXT_START = hex('d31a8d34648e60db7b86afbc53ef7ec2');
const RFC_TAG = hex('1ae10b594f09e26a7e902ecbd0600691');

const sodium = loadSodiumAead().aead;
const implementations: ChaChaPolyAead[] = [nodeCryptoAead, ...(sodium === null ? [] : [sodium])];

describe('ChaChaPoly implementations', () => {
  it('libsodium loads on this platform and is the one in use (CI runs linux-x64)', () => {
    expect(loadSodiumAead().problem).toBeNull();
    expect(processAead().aead.name).toBe('libsodium');
    expect(processAead().problem).toBeNull();
  });

  for (const impl of implementations) {
    describe(impl.name, () => {
      it("matches RFC 8439's AEAD vector, and opens it", () => {
        const sealed = impl.sealParts(RFC_KEY, RFC_NONCE, RFC_AAD, [RFC_PLAINTEXT]);
        expect(sealed.length).toBe(RFC_PLAINTEXT.length + 16);
        expect(sealed.subarray(0, 16)).toEqual(RFC_CIPHERTEXT_START);
        expect(sealed.subarray(RFC_PLAINTEXT.length)).toEqual(RFC_TAG);
        expect(impl.open(RFC_KEY, RFC_NONCE, RFC_AAD, sealed)).toEqual(RFC_PLAINTEXT);
      });

      it('seals parts exactly as their concatenation, empty parts and empty AD included', () => {
        const key = randomBytes(32);
        const iv = randomBytes(12);
        for (const sizes of [[0], [5], [11, 64], [0, 3, 0, 70_000 - 100], [1, 1, 1, 1]]) {
          const parts = sizes.map((n) => randomBytes(n));
          const whole = impl.sealParts(key, iv, new Uint8Array(0), [Buffer.concat(parts)]);
          expect(impl.sealParts(key, iv, new Uint8Array(0), parts)).toEqual(whole);
          expect(impl.open(key, iv, new Uint8Array(0), whole)).toEqual(Buffer.concat(parts));
        }
      });

      it('refuses a flipped bit anywhere, a wrong nonce or a wrong AD', () => {
        const key = randomBytes(32);
        const iv = randomBytes(12);
        const sealed = impl.sealParts(key, iv, RFC_AAD, [randomBytes(200)]);
        for (const at of [0, 100, sealed.length - 1]) {
          const bad = Buffer.from(sealed);
          bad[at] ^= 1;
          expect(() => impl.open(key, iv, RFC_AAD, bad)).toThrow();
        }
        expect(() => impl.open(key, randomBytes(12), RFC_AAD, sealed)).toThrow();
        expect(() => impl.open(key, iv, new Uint8Array(0), sealed)).toThrow();
      });
    });
  }

  it('the two interoperate both ways', () => {
    expect(sodium).not.toBeNull();
    const key = randomBytes(32);
    const iv = randomBytes(12);
    for (const size of [0, 64, 65_519]) {
      const plaintext = randomBytes(size);
      expect(sodium!.open(key, iv, RFC_AAD, nodeCryptoAead.sealParts(key, iv, RFC_AAD, [plaintext]))).toEqual(plaintext);
      expect(nodeCryptoAead.open(key, iv, RFC_AAD, sodium!.sealParts(key, iv, RFC_AAD, [plaintext]))).toEqual(plaintext);
    }
  });

  it('OSMODA_MESH_AEAD picks node:crypto; an unknown value falls back to libsodium with a reason', () => {
    expect(chooseAead({ OSMODA_MESH_AEAD: 'node:crypto' })).toEqual({ aead: nodeCryptoAead, problem: null });
    expect(chooseAead({}).aead.name).toBe('libsodium');
    expect(chooseAead({ OSMODA_MESH_AEAD: 'libsodium' }).aead.name).toBe('libsodium');
    const odd = chooseAead({ OSMODA_MESH_AEAD: 'aes' });
    expect(odd.aead.name).toBe('libsodium');
    expect(odd.problem).toBe('OSMODA_MESH_AEAD=aes: expected libsodium or node:crypto; using the default');
  });
});
