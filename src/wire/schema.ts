import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { ownPackageRoot } from '../util/package-root.js';

/**
 * proto/mesh.proto is the single source of truth for the wire. It is parsed once when the wire
 * module loads (a pure function of a file shipped with the package), from the package root above
 * this module, so the same code works from src/ (tests) and dist/ (the built agent).
 */
function findProtoFile(): string {
  const root = ownPackageRoot();
  const candidate = root === undefined ? undefined : join(root, 'proto', 'mesh.proto');
  if (candidate === undefined || !existsSync(candidate)) throw new Error('wire: proto/mesh.proto not found above ' + fileURLToPath(import.meta.url));
  return candidate;
}

const root = protobuf.parse(readFileSync(findProtoFile(), 'utf8'), { keepCase: false }).root;

function type(name: string): protobuf.Type {
  return root.lookupType(`osmoda.mesh.v1.${name}`);
}

export const WireTypes = {
  NodeCertBody: type('NodeCertBody'),
  SignedCert: type('SignedCert'),
  TokenBody: type('TokenBody'),
  SignedToken: type('SignedToken'),
  ServiceDecl: type('ServiceDecl'),
  NodeRecordBody: type('NodeRecordBody'),
  NodeRecord: type('NodeRecord'),
  HandshakePayload: type('HandshakePayload'),
  JoinHello: type('JoinHello'),
  JoinRequest: type('JoinRequest'),
  JoinResponse: type('JoinResponse'),
  RevocationListBody: type('RevocationListBody'),
  SignedRevocationList: type('SignedRevocationList'),
  Batch: type('Batch'),
  Frame: type('Frame'),
} as const;
