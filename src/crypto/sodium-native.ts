import { createRequire } from 'node:module';

/**
 * The libsodium functions the agent calls, through the `sodium-native` addon (holepunch's
 * prebuilt N-API module): the tunnel's ChaCha20-Poly1305 (noise/aead.ts) and X25519
 * (keys/x25519.ts). Each caller checks that the functions it needs are there, and falls back to
 * node:crypto when they are not.
 */
export interface SodiumNative {
  crypto_aead_chacha20poly1305_ietf_encrypt(c: Buffer, m: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, k: Buffer): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(m: Buffer, nsec: null, c: Buffer, ad: Buffer | null, npub: Buffer, k: Buffer): number;
  crypto_scalarmult(q: Buffer, n: Buffer, p: Buffer): void;
  crypto_scalarmult_base(q: Buffer, n: Buffer): void;
}

export interface LoadedSodium {
  sodium: Partial<SodiumNative> | null;
  /** Why it did not load (the first line of the error), or null. */
  problem: string | null;
}

let loaded: LoadedSodium | undefined;

/**
 * The addon, loaded once, on first use: loading takes 14-25 ms, which CLI verbs that never seal a
 * message or compute a key need not pay.
 */
export function loadSodiumNative(): LoadedSodium {
  if (loaded === undefined) {
    try {
      loaded = { sodium: createRequire(import.meta.url)('sodium-native') as Partial<SodiumNative>, problem: null };
    } catch (err) {
      loaded = { sodium: null, problem: `sodium-native did not load: ${(err as Error).message.split('\n')[0]}` };
    }
  }
  return loaded;
}
