import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * The libsodium functions the agent calls, through the `sodium-native` addon (holepunch's
 * prebuilt N-API module): the tunnel's ChaCha20-Poly1305 (noise/aead.ts), X25519
 * (keys/x25519.ts) and Ed25519 verification (keys/ed25519.ts). Each caller checks that the
 * functions it needs are there, and falls back to node:crypto when they are not.
 */
export interface SodiumNative {
  crypto_aead_chacha20poly1305_ietf_encrypt(c: Buffer, m: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, k: Buffer): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(m: Buffer, nsec: null, c: Buffer, ad: Buffer | null, npub: Buffer, k: Buffer): number;
  crypto_scalarmult(q: Buffer, n: Buffer, p: Buffer): void;
  crypto_scalarmult_base(q: Buffer, n: Buffer): void;
  crypto_sign_verify_detached(signature: Buffer, message: Buffer, publicKey: Buffer): boolean;
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
      loaded = { sodium: requireSodiumNative(createRequire(import.meta.url)), problem: null };
    } catch (err) {
      loaded = { sodium: null, problem: `sodium-native did not load: ${(err as Error).message.split('\n')[0]}` };
    }
  }
  return loaded;
}

/**
 * The package's prebuilt binary for this platform, required directly; the package's own entry
 * point when that is not there or does not load (another libc, a build from source). The entry
 * point finds the same file through `require-addon` and `bare-addon-resolve`, two more packages
 * whose URL and package.json handling a bare Node pays 5.4 MB of resident memory for (41.2 MB
 * against 46.6 with the addon loaded); a fresh agent, which touches most of that code anyway, is
 * 0.3-0.5 MB smaller (57.35 against 57.9 MB on Node 20, 67.6 against 67.9 on Node 22, 2026-11-27).
 * Both give the same binding object.
 */
export function requireSodiumNative(require: NodeJS.Require): Partial<SodiumNative> {
  try {
    const root = dirname(require.resolve('sodium-native/package.json'));
    return require(join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'sodium-native.node')) as Partial<SodiumNative>;
  } catch {
    return require('sodium-native') as Partial<SodiumNative>;
  }
}
