import { MAX_RECORDS_PER_GOSSIP, MAX_REVOCATION_LIST_BYTES, MAX_REVOKED_NODES, MAX_TEXT_FIELD } from './limits.js';
import { bytesField, malformed, textField, textList, uint64ToNumber } from './decode-guard.js';
import { decodeMessage, encodeMessage } from './proto-codec.js';
import { WireTypes } from './schema.js';

/** Typed views of the trust, membership and handshake messages of proto/mesh.proto. */

export interface Signed {
  body: Uint8Array;
  signature: Uint8Array;
}

export type SignedCertWire = Signed;
export type SignedTokenWire = Signed;
export type NodeRecordWire = Signed;
export type SignedRevocationListWire = Signed;

export interface RevokedNode {
  nodeId: Uint8Array;
  name: string;
  revokedAtMs: number;
}

export interface RevocationListBody {
  version: number;
  meshId: Uint8Array;
  seq: number;
  nodes: RevokedNode[];
}

export interface NodeCertBody {
  version: number;
  meshId: Uint8Array;
  meshName: string;
  nodeId: Uint8Array;
  name: string;
  ed25519Public: Uint8Array;
  x25519Public: Uint8Array;
  tags: string[];
  issuedAtMs: number;
  expiresAtMs: number;
  isAdmin: boolean;
}

export interface TokenBody {
  version: number;
  meshId: Uint8Array;
  meshName: string;
  authorityPublic: Uint8Array;
  issuerEndpoints: string[];
  issuerX25519: Uint8Array;
  tokenId: Uint8Array;
  secret: Uint8Array;
  expiresAtMs: number;
}

export interface ServiceDecl {
  name: string;
  ports: number[];
}

export interface NodeRecordBody {
  cert: Uint8Array;
  seq: number;
  endpoints: string[];
  services: ServiceDecl[];
  updatedAtMs: number;
}

export interface HandshakePayload {
  cert: Uint8Array;
  record: NodeRecordWire | undefined;
}

export interface JoinHello {
  version: number;
  tokenId: Uint8Array;
}

export interface JoinRequest {
  name: string;
  ed25519Public: Uint8Array;
  ed25519Proof: Uint8Array;
  endpoints: string[];
  tags: string[];
}

export type JoinResponse =
  | { kind: 'accepted'; cert: Uint8Array; authorityPublic: Uint8Array; members: NodeRecordWire[] }
  | { kind: 'refused'; code: string; message: string };

const MAX_ENDPOINTS = 16;
const MAX_TAGS = 32;
const MAX_SERVICES = 256;

function signed(raw: Record<string, unknown>, what: string, maxBody = 16384): Signed {
  return {
    body: bytesField(raw['body'], `${what}.body`, undefined, maxBody),
    signature: bytesField(raw['signature'], `${what}.signature`, 64),
  };
}

export type SignedKind = 'cert' | 'token' | 'record' | 'revocations';

const SIGNED_TYPES = {
  cert: WireTypes.SignedCert,
  token: WireTypes.SignedToken,
  record: WireTypes.NodeRecord,
  revocations: WireTypes.SignedRevocationList,
} as const;

export function encodeSigned(kind: SignedKind, value: Signed): Uint8Array {
  return encodeMessage(SIGNED_TYPES[kind], value);
}

export function decodeSigned(kind: SignedKind, bytes: Uint8Array): Signed {
  const maxBody = kind === 'revocations' ? MAX_REVOCATION_LIST_BYTES : 16384;
  return signed(decodeMessage(SIGNED_TYPES[kind], bytes, kind), kind, maxBody);
}

export function encodeRevocationListBody(body: RevocationListBody): Uint8Array {
  return encodeMessage(WireTypes.RevocationListBody, body);
}

export function decodeRevocationListBody(bytes: Uint8Array): RevocationListBody {
  if (bytes.length > MAX_REVOCATION_LIST_BYTES) throw malformed('revocation list', `${bytes.length} bytes, at most ${MAX_REVOCATION_LIST_BYTES}`);
  const raw = decodeMessage(WireTypes.RevocationListBody, bytes, 'revocation list');
  const nodes = (raw['nodes'] as Record<string, unknown>[] | undefined) ?? [];
  if (nodes.length > MAX_REVOKED_NODES) throw malformed('revocation list', `${nodes.length} nodes, at most ${MAX_REVOKED_NODES}`);
  return {
    version: (raw['version'] as number) ?? 0,
    meshId: bytesField(raw['meshId'], 'revocation list.mesh_id', 16),
    seq: uint64ToNumber(raw['seq'], 'revocation list.seq'),
    nodes: nodes.map((n, i) => ({
      nodeId: bytesField(n['nodeId'], `revocation list.nodes[${i}].node_id`, 16),
      name: textField(n['name'], `revocation list.nodes[${i}].name`, 63),
      revokedAtMs: uint64ToNumber(n['revokedAtMs'], `revocation list.nodes[${i}].revoked_at_ms`),
    })),
  };
}

export function encodeCertBody(body: NodeCertBody): Uint8Array {
  return encodeMessage(WireTypes.NodeCertBody, body);
}

export function decodeCertBody(bytes: Uint8Array): NodeCertBody {
  const raw = decodeMessage(WireTypes.NodeCertBody, bytes, 'certificate');
  return {
    version: (raw['version'] as number) ?? 0,
    meshId: bytesField(raw['meshId'], 'certificate.mesh_id', 16),
    meshName: textField(raw['meshName'], 'certificate.mesh_name', 63),
    nodeId: bytesField(raw['nodeId'], 'certificate.node_id', 16),
    name: textField(raw['name'], 'certificate.name', 63),
    ed25519Public: bytesField(raw['ed25519Public'], 'certificate.ed25519_public', 32),
    x25519Public: bytesField(raw['x25519Public'], 'certificate.x25519_public', 32),
    tags: textList(raw['tags'], 'certificate.tags', MAX_TAGS, 63),
    issuedAtMs: uint64ToNumber(raw['issuedAtMs'], 'certificate.issued_at_ms'),
    expiresAtMs: uint64ToNumber(raw['expiresAtMs'], 'certificate.expires_at_ms'),
    isAdmin: raw['isAdmin'] === true,
  };
}

export function encodeTokenBody(body: TokenBody): Uint8Array {
  return encodeMessage(WireTypes.TokenBody, body);
}

export function decodeTokenBody(bytes: Uint8Array): TokenBody {
  const raw = decodeMessage(WireTypes.TokenBody, bytes, 'token');
  return {
    version: (raw['version'] as number) ?? 0,
    meshId: bytesField(raw['meshId'], 'token.mesh_id', 16),
    meshName: textField(raw['meshName'], 'token.mesh_name', 63),
    authorityPublic: bytesField(raw['authorityPublic'], 'token.authority_public', 32),
    issuerEndpoints: textList(raw['issuerEndpoints'], 'token.issuer_endpoints', MAX_ENDPOINTS, 256),
    issuerX25519: bytesField(raw['issuerX25519'], 'token.issuer_x25519', 32),
    tokenId: bytesField(raw['tokenId'], 'token.token_id', 16),
    secret: bytesField(raw['secret'], 'token.secret', 32),
    expiresAtMs: uint64ToNumber(raw['expiresAtMs'], 'token.expires_at_ms'),
  };
}

export function encodeRecordBody(body: NodeRecordBody): Uint8Array {
  return encodeMessage(WireTypes.NodeRecordBody, body);
}

export function decodeRecordBody(bytes: Uint8Array): NodeRecordBody {
  const raw = decodeMessage(WireTypes.NodeRecordBody, bytes, 'node record');
  const services = (raw['services'] as Record<string, unknown>[] | undefined) ?? [];
  if (services.length > MAX_SERVICES) throw malformed('node record', `${services.length} services, at most ${MAX_SERVICES}`);
  return {
    cert: bytesField(raw['cert'], 'node record.cert', undefined, 4096),
    seq: uint64ToNumber(raw['seq'], 'node record.seq'),
    endpoints: textList(raw['endpoints'], 'node record.endpoints', MAX_ENDPOINTS, 256),
    services: services.map((s, i) => {
      const ports = ((s['ports'] as number[] | undefined) ?? []).slice();
      if (ports.length > 64) throw malformed('node record', `services[${i}]: ${ports.length} ports, at most 64`);
      for (const port of ports) {
        if (port < 1 || port > 65535) throw malformed('node record', `services[${i}].ports: ${port} is not 1..65535`);
      }
      return { name: textField(s['name'], `node record.services[${i}].name`, 63), ports };
    }),
    updatedAtMs: uint64ToNumber(raw['updatedAtMs'], 'node record.updated_at_ms'),
  };
}

export function encodeHandshakePayload(payload: HandshakePayload): Uint8Array {
  return encodeMessage(WireTypes.HandshakePayload, payload);
}

export function decodeHandshakePayload(bytes: Uint8Array): HandshakePayload {
  const raw = decodeMessage(WireTypes.HandshakePayload, bytes, 'handshake payload');
  const record = raw['record'] as Record<string, unknown> | undefined;
  return {
    cert: bytesField(raw['cert'], 'handshake payload.cert', undefined, 4096),
    record: record ? signed(record, 'handshake payload.record') : undefined,
  };
}

export function encodeJoinHello(hello: JoinHello): Uint8Array {
  return encodeMessage(WireTypes.JoinHello, hello);
}

export function decodeJoinHello(bytes: Uint8Array): JoinHello {
  const raw = decodeMessage(WireTypes.JoinHello, bytes, 'join hello');
  return { version: (raw['version'] as number) ?? 0, tokenId: bytesField(raw['tokenId'], 'join hello.token_id', 16) };
}

export function encodeJoinRequest(request: JoinRequest): Uint8Array {
  return encodeMessage(WireTypes.JoinRequest, request);
}

export function decodeJoinRequest(bytes: Uint8Array): JoinRequest {
  const raw = decodeMessage(WireTypes.JoinRequest, bytes, 'join request');
  return {
    name: textField(raw['name'], 'join request.name', 63),
    ed25519Public: bytesField(raw['ed25519Public'], 'join request.ed25519_public', 32),
    ed25519Proof: bytesField(raw['ed25519Proof'], 'join request.ed25519_proof', 64),
    endpoints: textList(raw['endpoints'], 'join request.endpoints', MAX_ENDPOINTS, 256),
    tags: textList(raw['tags'], 'join request.tags', MAX_TAGS, 63),
  };
}

export function encodeJoinResponse(response: JoinResponse): Uint8Array {
  const value =
    response.kind === 'accepted'
      ? { accepted: { cert: response.cert, authorityPublic: response.authorityPublic, members: response.members } }
      : { refused: { code: response.code, message: response.message } };
  return encodeMessage(WireTypes.JoinResponse, value);
}

export function decodeJoinResponse(bytes: Uint8Array): JoinResponse {
  const raw = decodeMessage(WireTypes.JoinResponse, bytes, 'join response');
  if (raw['result'] === 'accepted') {
    const accepted = raw['accepted'] as Record<string, unknown>;
    const members = (accepted['members'] as Record<string, unknown>[] | undefined) ?? [];
    if (members.length > MAX_RECORDS_PER_GOSSIP) throw malformed('join response', `${members.length} members`);
    return {
      kind: 'accepted',
      cert: bytesField(accepted['cert'], 'join response.cert', undefined, 4096),
      authorityPublic: bytesField(accepted['authorityPublic'], 'join response.authority_public', 32),
      members: members.map((m, i) => signed(m, `join response.members[${i}]`)),
    };
  }
  if (raw['result'] === 'refused') {
    const refused = raw['refused'] as Record<string, unknown>;
    return {
      kind: 'refused',
      code: textField(refused['code'], 'join response.code', 64),
      message: textField(refused['message'], 'join response.message', MAX_TEXT_FIELD),
    };
  }
  throw malformed('join response', 'neither accepted nor refused');
}
