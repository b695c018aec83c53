import type { Ed25519Private } from '../crypto/keys/index.js';
import { ed25519Verify } from '../crypto/keys/index.js';
import { ErrorCodes, MeshError } from '../errors.js';
import { concatBytes, fromBase64Url, toBase64Url, utf8Bytes } from '../util/bytes.js';
import { decodeRecordBody, encodeRecordBody, type NodeRecordBody, type NodeRecordWire, type ServiceDecl } from '../wire/index.js';
import { verifyCert, type VerifiedCert } from './certs.js';

/**
 * Signed node records (SPEC §2 membership): each node signs its own record (certificate,
 * endpoints, services, sequence number); everyone keeps the highest sequence per node and floods
 * what is new to its other peers.
 */

const RECORD_CONTEXT = utf8Bytes('osmoda-mesh record v1\0');

export interface Member {
  nodeIdHex: string;
  name: string;
  cert: VerifiedCert;
  seq: number;
  endpoints: string[];
  services: ServiceDecl[];
  updatedAtMs: number;
  wire: NodeRecordWire;
}

export function signRecord(signing: Ed25519Private, body: NodeRecordBody): NodeRecordWire {
  const bodyBytes = encodeRecordBody(body);
  return { body: bodyBytes, signature: signing.sign(concatBytes(RECORD_CONTEXT, bodyBytes)) };
}

/** Verifies a record: its certificate by the authority, its body by the certificate's key. */
export function verifyRecord(wire: NodeRecordWire, authorityPublic: Uint8Array, nowMs: number): Member {
  const body = decodeRecordBody(wire.body);
  const cert = verifyCert(body.cert, { authorityPublic, nowMs });
  if (!ed25519Verify(cert.ed25519Public, concatBytes(RECORD_CONTEXT, wire.body), wire.signature)) {
    throw new MeshError(ErrorCodes.CERT_INVALID, `node record of '${cert.name}' has a bad signature`, { wireReason: 'bad-record' });
  }
  return {
    nodeIdHex: cert.nodeIdHex,
    name: cert.name,
    cert,
    seq: body.seq,
    endpoints: body.endpoints,
    services: body.services,
    updatedAtMs: body.updatedAtMs,
    wire,
  };
}

/** 'own': a copy of this node's own record from someone else, never stored (only we sign ours). */
export type ApplyResult = 'new' | 'updated' | 'stale' | 'own';

export class Membership {
  readonly #authorityPublic: Uint8Array;
  readonly #members = new Map<string, Member>();
  readonly #selfId: string;
  #revoked: ReadonlySet<string> = new Set();

  constructor(authorityPublic: Uint8Array, selfId: string) {
    this.#authorityPublic = authorityPublic;
    this.#selfId = selfId;
  }

  /**
   * Applies a record from gossip or a handshake; throws MeshError for an invalid one (bad
   * signature, certificate not from this mesh's authority or expired). Names are kept unique by the
   * issuer at join time, not here: every record that verifies is a member.
   */
  apply(wire: NodeRecordWire, nowMs: number, isOwnWrite = false): { result: ApplyResult; member: Member } {
    const member = verifyRecord(wire, this.#authorityPublic, nowMs);
    if (this.#revoked.has(member.nodeIdHex)) {
      throw new MeshError(ErrorCodes.CERT_REVOKED, `node record of '${member.name}': that node was revoked`, { wireReason: 'revoked' });
    }
    if (member.nodeIdHex === this.#selfId && !isOwnWrite) return { result: 'own', member };
    const current = this.#members.get(member.nodeIdHex);
    if (current !== undefined && current.seq >= member.seq) return { result: 'stale', member: current };
    this.#members.set(member.nodeIdHex, member);
    return { result: current === undefined ? 'new' : 'updated', member };
  }

  /** Applies a revocation list: revoked members go, and their records are refused from now on. */
  setRevoked(ids: ReadonlySet<string>): Member[] {
    this.#revoked = ids;
    const removed: Member[] = [];
    for (const id of ids) {
      const member = this.#members.get(id);
      if (member === undefined || id === this.#selfId) continue;
      this.#members.delete(id);
      removed.push(member);
    }
    return removed;
  }

  get(nodeIdHex: string): Member | undefined {
    return this.#members.get(nodeIdHex);
  }

  byName(name: string): Member | undefined {
    for (const m of this.#members.values()) if (m.name === name) return m;
    return undefined;
  }

  /** Every member including this node. */
  all(): Member[] {
    return [...this.#members.values()];
  }

  /** Every member except this node. */
  others(): Member[] {
    return this.all().filter((m) => m.nodeIdHex !== this.#selfId);
  }

  records(): NodeRecordWire[] {
    return this.all().map((m) => m.wire);
  }

  toJSON(): { records: { body: string; signature: string }[] } {
    return { records: this.records().map((r) => ({ body: toBase64Url(r.body), signature: toBase64Url(r.signature) })) };
  }

  /** Loads persisted records, skipping (not failing on) ones that no longer verify, e.g. expired. */
  load(json: { records?: { body: string; signature: string }[] } | undefined, nowMs: number): number {
    let skipped = 0;
    for (const r of json?.records ?? []) {
      const body = fromBase64Url(r.body);
      const signature = fromBase64Url(r.signature);
      if (body === undefined || signature === undefined) {
        skipped++;
        continue;
      }
      try {
        this.apply({ body, signature }, nowMs, true);
      } catch {
        skipped++;
      }
    }
    return skipped;
  }
}
