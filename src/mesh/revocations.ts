import type { Ed25519Private } from '../crypto/keys/index.js';
import { ed25519Verify } from '../crypto/keys/index.js';
import { ErrorCodes, MeshError, toMeshError } from '../errors.js';
import { concatBytes, equalBytes, toHex, utf8Bytes } from '../util/bytes.js';
import {
  MAX_REVOKED_NODES,
  decodeRevocationListBody,
  decodeSigned,
  encodeRevocationListBody,
  encodeSigned,
  type RevokedNode,
} from '../wire/index.js';
import { meshIdOf } from './certs.js';

/**
 * The mesh's revocation list (`osmoda-mesh revoke NODE`): node ids whose certificates the
 * authority withdrew, signed by the authority as a whole and replaced as a whole by a list with a
 * higher sequence. It spreads like member records (flooded in gossip) and every node enforces it:
 * tunnels to a revoked node are cut and refused, its records dropped, its rejoin refused.
 */

const REVOCATION_CONTEXT = utf8Bytes('osmoda-mesh revocations v1\0');
export const REVOCATION_VERSION = 1;

export interface VerifiedRevocations {
  seq: number;
  nodes: RevokedNode[];
  /** The encoded SignedRevocationList, exactly as signed (what gossip carries). */
  bytes: Uint8Array;
  /** Node ids (hex) of `nodes`. */
  ids: ReadonlySet<string>;
}

export function signRevocations(authority: Ed25519Private, seq: number, nodes: readonly RevokedNode[]): Uint8Array {
  if (nodes.length > MAX_REVOKED_NODES) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `revocation list: ${nodes.length} nodes, at most ${MAX_REVOKED_NODES}`);
  }
  const body = encodeRevocationListBody({ version: REVOCATION_VERSION, meshId: meshIdOf(authority.publicKey), seq, nodes: [...nodes] });
  return encodeSigned('revocations', { body, signature: authority.sign(concatBytes(REVOCATION_CONTEXT, body)) });
}

/** Accepts a list only if this mesh's authority signed it for this mesh. Errors are typed. */
export function verifyRevocations(bytes: Uint8Array, authorityPublic: Uint8Array): VerifiedRevocations {
  let signed;
  let body;
  try {
    signed = decodeSigned('revocations', bytes);
    body = decodeRevocationListBody(signed.body);
  } catch (err) {
    throw new MeshError(ErrorCodes.CERT_INVALID, `revocation list: ${toMeshError(err).message}`, { cause: err, wireReason: 'bad-revocations' });
  }
  if (!equalBytes(body.meshId, meshIdOf(authorityPublic))) {
    throw new MeshError(ErrorCodes.CERT_UNTRUSTED, 'revocation list is for another mesh', { wireReason: 'wrong-mesh' });
  }
  if (!ed25519Verify(authorityPublic, concatBytes(REVOCATION_CONTEXT, signed.body), signed.signature)) {
    throw new MeshError(ErrorCodes.CERT_UNTRUSTED, 'revocation list is not signed by the mesh authority', { wireReason: 'untrusted-revocations' });
  }
  return { seq: body.seq, nodes: body.nodes, bytes, ids: new Set(body.nodes.map((n) => toHex(n.nodeId))) };
}
