import { join } from 'node:path';
import { Ed25519Private, X25519Private, sha256 } from '../crypto/keys/index.js';
import { ErrorCodes, MeshError } from '../errors.js';
import { fromHex, toHex } from '../util/bytes.js';
import { readJsonFile, writeJsonFile } from './state-files.js';

/** A node's own keys: Ed25519 for signing its records, X25519 as its Noise static key. */
export interface NodeIdentity {
  signing: Ed25519Private;
  noise: X25519Private;
  /** 16 bytes: SHA-256(Ed25519 public key)[0..16]. */
  nodeId: Uint8Array;
  nodeIdHex: string;
}

interface IdentityFile {
  version: 1;
  ed25519Private: string;
  x25519Private: string;
}

export const IDENTITY_FILE = 'identity.key';

export function nodeIdOf(ed25519Public: Uint8Array): Uint8Array {
  return sha256(ed25519Public).subarray(0, 16);
}

function fromKeys(signing: Ed25519Private, noise: X25519Private): NodeIdentity {
  const nodeId = nodeIdOf(signing.publicKey);
  return { signing, noise, nodeId, nodeIdHex: toHex(nodeId) };
}

/** Loads the identity from the state dir, creating it on first start. */
export function loadOrCreateIdentity(stateDir: string): NodeIdentity {
  const path = join(stateDir, IDENTITY_FILE);
  const stored = readJsonFile<IdentityFile>(path, true);
  if (stored !== undefined) {
    try {
      return fromKeys(Ed25519Private.fromPrivate(fromHex(stored.ed25519Private)), X25519Private.fromPrivate(fromHex(stored.x25519Private)));
    } catch (err) {
      throw new MeshError(ErrorCodes.STATE_DIR, `${path} holds no valid keys; restore it from backup (removing it makes this a new node)`, { cause: err });
    }
  }
  const identity = fromKeys(Ed25519Private.generate(), X25519Private.generate());
  const file: IdentityFile = {
    version: 1,
    ed25519Private: toHex(identity.signing.privateKey),
    x25519Private: toHex(identity.noise.privateKey),
  };
  writeJsonFile(path, file);
  return identity;
}
