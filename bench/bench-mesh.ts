import { Ed25519Private, X25519Private } from '../src/crypto/keys/index.js';
import { issueCert, meshIdOf, verifyCert } from '../src/mesh/index.js';
import { decodeHandshakePayload, encodeHandshakePayload } from '../src/wire/index.js';

/**
 * A throwaway mesh for the in-process benchmarks: an authority, node identities whose handshake
 * payload is a certificate it signed, and the check the agent makes of a peer's payload (the
 * Ed25519 signature, the mesh, the node's Noise key).
 */
export interface BenchMesh {
  meshId: Uint8Array;
  /** A node: its Noise static key (a new one unless given) and its handshake payload. */
  identity(name: string, staticKey?: X25519Private): { staticKey: X25519Private; payload: Uint8Array };
  /** Verifies a peer's payload against the Noise static key it proved; returns the node's name. */
  verifyRemote(payload: Uint8Array, remoteStatic: Uint8Array | undefined): string;
}

export function benchMesh(): BenchMesh {
  const authority = Ed25519Private.generate();
  return {
    meshId: meshIdOf(authority.publicKey),
    identity(name, staticKey = X25519Private.generate()) {
      const signing = Ed25519Private.generate();
      const cert = issueCert(authority, { meshName: 'bench', name, ed25519Public: signing.publicKey, x25519Public: staticKey.publicKey, tags: [], isAdmin: false, nowMs: Date.now() });
      return { staticKey, payload: encodeHandshakePayload({ cert, record: undefined }) };
    },
    verifyRemote(payload, remoteStatic) {
      return verifyCert(decodeHandshakePayload(payload).cert, { authorityPublic: authority.publicKey, nowMs: Date.now(), expectedX25519: remoteStatic }).name;
    },
  };
}
