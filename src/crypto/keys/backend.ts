import { loadSodiumNative, type SodiumNative } from '../sodium-native.js';

/**
 * Who computes the curve operations: libsodium through `sodium-native` (the addon the tunnel's AEAD
 * uses) when it loads, node:crypto (OpenSSL) otherwise. The functions are the same (RFC 7748,
 * RFC 8032; tests run their vectors through both). libsodium is the faster here: it takes raw
 * 32-byte keys where node:crypto wants each key imported into a KeyObject first, and its Ed25519
 * verification is about twice as fast as the one in Node's OpenSSL (83 against 181 µs per
 * signature on this 2-vCPU machine, with the key already imported).
 */
export type CurveBackend = 'libsodium' | 'node:crypto';

let forced: CurveBackend | undefined;

/** Tests: compute with node:crypto even where libsodium loads (undefined: the default again). */
export function forceCurveBackend(backend: CurveBackend | undefined): void {
  forced = backend;
}

/**
 * libsodium's functions `names`, or null when node:crypto is forced, the addon did not load, or it
 * lacks one of them (the addon loads on first use, see sodium-native.ts).
 */
export function sodiumCurveFunctions<K extends keyof SodiumNative>(names: readonly K[]): Pick<SodiumNative, K> | null {
  if (forced === 'node:crypto') return null;
  const { sodium } = loadSodiumNative();
  if (sodium === null) return null;
  for (const name of names) if (typeof sodium[name] !== 'function') return null;
  return sodium as Pick<SodiumNative, K>;
}
