import { Ed25519Private, ed25519Verify, sha256 } from '../crypto/keys/index.js';
import { ErrorCodes, MeshError } from '../errors.js';
import { concatBytes, equalBytes, toHex, utf8Bytes } from '../util/bytes.js';
import { decodeCertBody, decodeSigned, encodeCertBody, encodeSigned, type NodeCertBody } from '../wire/index.js';
import { nodeIdOf } from './identity.js';

/** Node certificates signed by the mesh authority (SPEC §3). */

const CERT_CONTEXT = utf8Bytes('osmoda-mesh cert v1\0');
export const CERT_VERSION = 1;
export const DEFAULT_CERT_LIFETIME_MS = 365 * 24 * 3600 * 1000;

export function meshIdOf(authorityPublic: Uint8Array): Uint8Array {
  return sha256(authorityPublic).subarray(0, 16);
}

export interface IssueCertInput {
  meshName: string;
  name: string;
  ed25519Public: Uint8Array;
  x25519Public: Uint8Array;
  tags: string[];
  isAdmin: boolean;
  nowMs: number;
  lifetimeMs?: number;
}

export function issueCert(authority: Ed25519Private, input: IssueCertInput): Uint8Array {
  const body: NodeCertBody = {
    version: CERT_VERSION,
    meshId: meshIdOf(authority.publicKey),
    meshName: input.meshName,
    nodeId: nodeIdOf(input.ed25519Public),
    name: input.name,
    ed25519Public: input.ed25519Public,
    x25519Public: input.x25519Public,
    tags: input.tags,
    issuedAtMs: input.nowMs,
    expiresAtMs: input.nowMs + (input.lifetimeMs ?? DEFAULT_CERT_LIFETIME_MS),
    isAdmin: input.isAdmin,
  };
  const bodyBytes = encodeCertBody(body);
  const signature = authority.sign(concatBytes(CERT_CONTEXT, bodyBytes));
  return encodeSigned('cert', { body: bodyBytes, signature });
}

export interface CertCheck {
  authorityPublic: Uint8Array;
  nowMs: number;
  /** The Noise remote static key of the tunnel: must equal the certificate's X25519 key. */
  expectedX25519?: Uint8Array;
}

export interface VerifiedCert extends NodeCertBody {
  nodeIdHex: string;
  bytes: Uint8Array;
}

/**
 * Accepts a certificate only if the mesh authority signed it, it is unexpired, it belongs to this
 * mesh, its node id matches its key and, for a tunnel, its X25519 key is the Noise static key the
 * peer proved it holds. Each failure has its own code so logs and metrics say why.
 */
export function verifyCert(bytes: Uint8Array, check: CertCheck): VerifiedCert {
  let signed;
  let body: NodeCertBody;
  try {
    signed = decodeSigned('cert', bytes);
    body = decodeCertBody(signed.body);
  } catch (err) {
    throw new MeshError(ErrorCodes.CERT_INVALID, `certificate: ${(err as Error).message}`, { cause: err, wireReason: 'bad-cert' });
  }
  if (!ed25519Verify(check.authorityPublic, concatBytes(CERT_CONTEXT, signed.body), signed.signature)) {
    throw new MeshError(ErrorCodes.CERT_UNTRUSTED, `certificate for '${body.name}' is not signed by this mesh's authority`, { wireReason: 'untrusted-cert' });
  }
  if (!equalBytes(body.meshId, meshIdOf(check.authorityPublic))) {
    throw new MeshError(ErrorCodes.CERT_UNTRUSTED, `certificate for '${body.name}' belongs to another mesh`, { wireReason: 'wrong-mesh' });
  }
  if (!equalBytes(body.nodeId, nodeIdOf(body.ed25519Public))) {
    throw new MeshError(ErrorCodes.CERT_INVALID, `certificate for '${body.name}': node id does not match its key`, { wireReason: 'bad-cert' });
  }
  if (body.expiresAtMs <= check.nowMs) {
    throw new MeshError(ErrorCodes.CERT_EXPIRED, `certificate for '${body.name}' expired at ${new Date(body.expiresAtMs).toISOString()}`, { wireReason: 'expired-cert' });
  }
  if (check.expectedX25519 !== undefined && !equalBytes(body.x25519Public, check.expectedX25519)) {
    throw new MeshError(ErrorCodes.CERT_KEY_MISMATCH, `certificate for '${body.name}' names another Noise key than the one used in the handshake`, { wireReason: 'key-mismatch' });
  }
  return { ...body, nodeIdHex: toHex(body.nodeId), bytes };
}
