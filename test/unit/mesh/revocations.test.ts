import { describe, expect, it } from 'vitest';
import { Ed25519Private, X25519Private } from '../../../src/crypto/keys/index.js';
import { ErrorCodes } from '../../../src/errors.js';
import { issueCert } from '../../../src/mesh/certs.js';
import { nodeIdOf } from '../../../src/mesh/identity.js';
import { Membership, signRecord } from '../../../src/mesh/membership.js';
import { signRevocations, verifyRevocations } from '../../../src/mesh/revocations.js';
import { toHex } from '../../../src/util/bytes.js';
import { MAX_REVOKED_NODES, decodeSigned, encodeSigned } from '../../../src/wire/index.js';
import { expectMeshError } from '../../helpers/mesh-error.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

function revoked(name: string): { nodeId: Uint8Array; name: string; revokedAtMs: number } {
  return { nodeId: nodeIdOf(Ed25519Private.generate().publicKey), name, revokedAtMs: NOW };
}

describe('revocation lists', () => {
  const authority = Ed25519Private.generate();

  it('round-trip: what the authority signs verifies, with the ids as hex', () => {
    const nodes = [revoked('web1'), revoked('db2')];
    const list = verifyRevocations(signRevocations(authority, 7, nodes), authority.publicKey);
    expect(list.seq).toBe(7);
    expect(list.nodes.map((n) => n.name)).toEqual(['web1', 'db2']);
    expect([...list.ids]).toEqual(nodes.map((n) => toHex(n.nodeId)));
  });

  it('a list signed by another key is untrusted', () => {
    const other = Ed25519Private.generate();
    const err = expectMeshError(() => verifyRevocations(signRevocations(other, 1, [revoked('x')]), authority.publicKey), ErrorCodes.CERT_UNTRUSTED);
    // the mesh id inside is the other authority's: caught before the signature
    expect(err.message).toMatch(/another mesh/);
  });

  it('a list with a flipped body byte fails its signature', () => {
    const bytes = signRevocations(authority, 1, [revoked('x')]);
    const signed = decodeSigned('revocations', bytes);
    const body = Uint8Array.from(signed.body);
    body[body.length - 1] ^= 1;
    const err = expectMeshError(() => verifyRevocations(encodeSigned('revocations', { body, signature: signed.signature }), authority.publicKey), ErrorCodes.CERT_UNTRUSTED);
    expect(err.message).toMatch(/not signed by the mesh authority/);
  });

  it('garbage is a typed error, not a crash', () => {
    expectMeshError(() => verifyRevocations(Uint8Array.of(0xff, 0xff, 0xff), authority.publicKey), ErrorCodes.CERT_INVALID);
  });

  it(`refuses to sign more than ${MAX_REVOKED_NODES} nodes (the list must fit one message)`, () => {
    expectMeshError(() => signRevocations(authority, 1, Array.from({ length: MAX_REVOKED_NODES + 1 }, (_, i) => revoked(`n${i}`))), ErrorCodes.INVALID_ARGUMENT);
  });
});

describe('Membership with a revocation list', () => {
  it('drops revoked members and refuses their records from then on', () => {
    const authority = Ed25519Private.generate();
    const node = { signing: Ed25519Private.generate(), noise: X25519Private.generate() };
    const cert = issueCert(authority, { meshName: 'm', name: 'web1', ed25519Public: node.signing.publicKey, x25519Public: node.noise.publicKey, tags: [], isAdmin: false, nowMs: NOW });
    const record = (seq: number) => signRecord(node.signing, { cert, seq, endpoints: [], services: [], updatedAtMs: NOW });
    const membership = new Membership(authority.publicKey, 'self');
    membership.apply(record(1), NOW + 1000);
    const id = toHex(nodeIdOf(node.signing.publicKey));
    expect(membership.get(id)?.name).toBe('web1');
    const removed = membership.setRevoked(new Set([id]));
    expect(removed.map((m) => m.name)).toEqual(['web1']);
    expect(membership.get(id)).toBeUndefined();
    expectMeshError(() => membership.apply(record(2), NOW + 1000), ErrorCodes.CERT_REVOKED);
  });
});
