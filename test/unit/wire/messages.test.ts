import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../src/errors.js';
import {
  decodeCertBody,
  decodeHandshakePayload,
  decodeJoinHello,
  decodeJoinRequest,
  decodeJoinResponse,
  decodeRecordBody,
  decodeSigned,
  decodeTokenBody,
  encodeCertBody,
  encodeHandshakePayload,
  encodeJoinHello,
  encodeJoinRequest,
  encodeJoinResponse,
  encodeRecordBody,
  encodeSigned,
  encodeTokenBody,
  type JoinRequest,
  type NodeCertBody,
  type NodeRecordBody,
  type TokenBody,
} from '../../../src/wire/index.js';
import { message, plain, varint, concat } from './naive-proto.js';
import { expectMeshError } from '../../helpers/mesh-error.js';

function filled(length: number, value: number): Uint8Array {
  return new Uint8Array(length).fill(value);
}

const CERT: NodeCertBody = {
  version: 1,
  meshId: filled(16, 1),
  meshName: 'prod',
  nodeId: filled(16, 2),
  name: 'server1',
  ed25519Public: filled(32, 3),
  x25519Public: filled(32, 4),
  tags: ['db', 'eu'],
  issuedAtMs: 1_700_000_000_000,
  expiresAtMs: 1_731_536_000_000,
  isAdmin: true,
};

const TOKEN: TokenBody = {
  version: 1,
  meshId: filled(16, 1),
  meshName: 'prod',
  authorityPublic: filled(32, 5),
  issuerEndpoints: ['ws://203.0.113.5:18800'],
  issuerX25519: filled(32, 6),
  tokenId: filled(16, 7),
  secret: filled(32, 8),
  expiresAtMs: 1_700_086_400_000,
};

const RECORD: NodeRecordBody = {
  cert: filled(200, 9),
  seq: 42,
  endpoints: ['ws://203.0.113.5:18800'],
  services: [
    { name: 'cache', ports: [6379] },
    { name: 'web', ports: [80, 443] },
  ],
  updatedAtMs: 1_700_000_000_123,
};

const JOIN_REQUEST: JoinRequest = {
  name: 'server2',
  ed25519Public: filled(32, 10),
  ed25519Proof: filled(64, 11),
  endpoints: ['ws://203.0.113.6:18800'],
  tags: [],
};

function expectMalformed(fn: () => unknown, messagePart: RegExp): void {
  expectMeshError(fn, ErrorCodes.MALFORMED_FRAME, messagePart);
}

describe('message round trips', () => {
  it('certificate body', () => {
    expect(plain(decodeCertBody(encodeCertBody(CERT)))).toEqual(plain(CERT));
  });
  it('token body', () => {
    expect(plain(decodeTokenBody(encodeTokenBody(TOKEN)))).toEqual(plain(TOKEN));
  });
  it('node record body', () => {
    expect(plain(decodeRecordBody(encodeRecordBody(RECORD)))).toEqual(plain(RECORD));
  });
  it('signed wrappers', () => {
    for (const kind of ['cert', 'token', 'record'] as const) {
      const value = { body: filled(100, 1), signature: filled(64, 2) };
      expect(plain(decodeSigned(kind, encodeSigned(kind, value)))).toEqual(plain(value));
    }
  });
  it('handshake payload with and without a record', () => {
    const record = { body: filled(10, 1), signature: filled(64, 2) };
    expect(plain(decodeHandshakePayload(encodeHandshakePayload({ cert: filled(50, 3), record })))).toEqual(plain({ cert: filled(50, 3), record }));
    expect(plain(decodeHandshakePayload(encodeHandshakePayload({ cert: filled(50, 3), record: undefined })))).toEqual(
      plain({ cert: filled(50, 3), record: undefined }),
    );
  });
  it('join hello, request and both responses', () => {
    expect(plain(decodeJoinHello(encodeJoinHello({ version: 1, tokenId: filled(16, 1) })))).toEqual(plain({ version: 1, tokenId: filled(16, 1) }));
    expect(plain(decodeJoinRequest(encodeJoinRequest(JOIN_REQUEST)))).toEqual(plain(JOIN_REQUEST));
    const accepted = { kind: 'accepted' as const, cert: filled(30, 1), authorityPublic: filled(32, 2), members: [{ body: filled(5, 3), signature: filled(64, 4) }] };
    expect(plain(decodeJoinResponse(encodeJoinResponse(accepted)))).toEqual(plain(accepted));
    const refused = { kind: 'refused' as const, code: 'MESH_ERR_TOKEN_USED_UP', message: 'token has no uses left' };
    expect(decodeJoinResponse(encodeJoinResponse(refused))).toEqual(refused);
  });
});

describe('certificate body decoder', () => {
  const cases: [keyof NodeCertBody, number, RegExp][] = [
    ['meshId', 15, /certificate.mesh_id: expected 16 bytes, got 15/],
    ['meshId', 17, /certificate.mesh_id: expected 16 bytes, got 17/],
    ['nodeId', 0, /certificate.node_id: expected 16 bytes, got 0/],
    ['ed25519Public', 31, /certificate.ed25519_public: expected 32 bytes, got 31/],
    ['x25519Public', 33, /certificate.x25519_public: expected 32 bytes, got 33/],
  ];
  for (const [field, length, pattern] of cases) {
    it(`rejects ${field} of ${length} bytes`, () => {
      expectMalformed(() => decodeCertBody(encodeCertBody({ ...CERT, [field]: filled(length, 1) })), pattern);
    });
  }
  it('rejects a missing key (proto default: empty bytes)', () => {
    const bytes = encodeCertBody({ ...CERT, x25519Public: new Uint8Array(0) });
    expectMalformed(() => decodeCertBody(bytes), /x25519_public: expected 32 bytes, got 0/);
  });
  it('rejects an overlong name and too many tags', () => {
    expectMalformed(() => decodeCertBody(encodeCertBody({ ...CERT, name: 'n'.repeat(64) })), /certificate.name: expected at most 63 characters/);
    expectMalformed(() => decodeCertBody(encodeCertBody({ ...CERT, tags: Array.from({ length: 33 }, (_, i) => `t${i}`) })), /certificate.tags: expected at most 32 entries/);
  });
  it('rejects an expiry beyond 2^53', () => {
    // NodeCertBody.expires_at_ms is field 10, uint64
    const bytes = concat(encodeCertBody({ ...CERT, expiresAtMs: 0 }), varint((10 << 3) | 0), varint(2n ** 63n));
    expectMalformed(() => decodeCertBody(bytes), /certificate.expires_at_ms: value does not fit 53 bits/);
  });
  it('rejects garbage with a typed error', () => {
    expectMalformed(() => decodeCertBody(Uint8Array.from([0x12, 0xff, 0xff, 0xff, 0x0f])), /certificate\.mesh_id: field of 33554431 bytes, only 0 left/);
  });
});

describe('token body decoder', () => {
  const cases: [keyof TokenBody, number, RegExp][] = [
    ['meshId', 8, /token.mesh_id: expected 16 bytes, got 8/],
    ['authorityPublic', 31, /token.authority_public: expected 32 bytes, got 31/],
    ['issuerX25519', 64, /token.issuer_x25519: expected 32 bytes, got 64/],
    ['tokenId', 17, /token.token_id: expected 16 bytes, got 17/],
    ['secret', 31, /token.secret: expected 32 bytes, got 31/],
  ];
  for (const [field, length, pattern] of cases) {
    it(`rejects ${field} of ${length} bytes`, () => {
      expectMalformed(() => decodeTokenBody(encodeTokenBody({ ...TOKEN, [field]: filled(length, 1) })), pattern);
    });
  }
  it('rejects more than 16 issuer endpoints and an overlong one', () => {
    expectMalformed(
      () => decodeTokenBody(encodeTokenBody({ ...TOKEN, issuerEndpoints: Array.from({ length: 17 }, (_, i) => `ws://10.0.0.${i}:1`) })),
      /token.issuer_endpoints: expected at most 16 entries, got 17/,
    );
    expectMalformed(() => decodeTokenBody(encodeTokenBody({ ...TOKEN, issuerEndpoints: [`ws://${'h'.repeat(300)}`] })), /issuer_endpoints\[0\]/);
  });
});

describe('node record body decoder', () => {
  it('rejects service ports 0 and 70000', () => {
    expectMalformed(() => decodeRecordBody(encodeRecordBody({ ...RECORD, services: [{ name: 'x', ports: [0] }] })), /services\[0\].ports: 0 is not 1..65535/);
    expectMalformed(() => decodeRecordBody(encodeRecordBody({ ...RECORD, services: [{ name: 'x', ports: [80, 70000] }] })), /ports: 70000 is not 1..65535/);
  });
  it('rejects too many services and too many ports', () => {
    const services = Array.from({ length: 257 }, (_, i) => ({ name: `s${i}`, ports: [80] }));
    expectMalformed(() => decodeRecordBody(encodeRecordBody({ ...RECORD, services })), /257 services, at most 256/);
    const ports = Array.from({ length: 65 }, (_, i) => i + 1);
    expectMalformed(() => decodeRecordBody(encodeRecordBody({ ...RECORD, services: [{ name: 'x', ports }] })), /65 ports, at most 64/);
  });
  it('rejects a certificate over 4096 bytes and an overlong service name', () => {
    expectMalformed(() => decodeRecordBody(encodeRecordBody({ ...RECORD, cert: new Uint8Array(4097) })), /node record.cert: expected at most 4096 bytes/);
    expectMalformed(() => decodeRecordBody(encodeRecordBody({ ...RECORD, services: [{ name: 'n'.repeat(64), ports: [1] }] })), /services\[0\].name/);
  });
  it('rejects a sequence number beyond 2^53', () => {
    const bytes = message([{ num: 1, bytes: filled(10, 1) }, { num: 2, varint: 2n ** 54n }]);
    expectMalformed(() => decodeRecordBody(bytes), /node record.seq: value does not fit 53 bits/);
  });
});

describe('join message decoders', () => {
  it('join hello rejects a 15-byte token id', () => {
    expectMalformed(() => decodeJoinHello(encodeJoinHello({ version: 1, tokenId: filled(15, 1) })), /join hello.token_id: expected 16 bytes, got 15/);
  });
  it('join request rejects wrong key and proof lengths', () => {
    expectMalformed(() => decodeJoinRequest(encodeJoinRequest({ ...JOIN_REQUEST, ed25519Public: filled(31, 1) })), /join request.ed25519_public: expected 32 bytes, got 31/);
    expectMalformed(() => decodeJoinRequest(encodeJoinRequest({ ...JOIN_REQUEST, ed25519Proof: filled(63, 1) })), /join request.ed25519_proof: expected 64 bytes, got 63/);
    expectMalformed(() => decodeJoinRequest(encodeJoinRequest({ ...JOIN_REQUEST, name: 'x'.repeat(64) })), /join request.name/);
    expectMalformed(
      () => decodeJoinRequest(encodeJoinRequest({ ...JOIN_REQUEST, tags: Array.from({ length: 33 }, () => 't') })),
      /join request.tags: expected at most 32 entries/,
    );
  });
  it('join response rejects neither-accepted-nor-refused, a short authority key and too many members', () => {
    expectMalformed(() => decodeJoinResponse(new Uint8Array(0)), /join response: neither accepted nor refused/);
    const accepted = (authorityPublic: Uint8Array, members: { body: Uint8Array; signature: Uint8Array }[]) =>
      encodeJoinResponse({ kind: 'accepted', cert: filled(10, 1), authorityPublic, members });
    expectMalformed(() => decodeJoinResponse(accepted(filled(31, 1), [])), /join response.authority_public: expected 32 bytes, got 31/);
    expectMalformed(
      () => decodeJoinResponse(accepted(filled(32, 1), [{ body: filled(3, 1), signature: filled(65, 1) }])),
      /join response.members\[0\].signature: expected 64 bytes, got 65/,
    );
    const many = Array.from({ length: 1025 }, () => ({ body: new Uint8Array(0), signature: new Uint8Array(0) }));
    expectMalformed(() => decodeJoinResponse(accepted(filled(32, 1), many)), /join response: 1025 members/);
  });
  it('signed wrapper rejects a 63-byte signature and a body over 16 KiB', () => {
    expectMalformed(() => decodeSigned('cert', encodeSigned('cert', { body: filled(5, 1), signature: filled(63, 1) })), /cert.signature: expected 64 bytes, got 63/);
    expectMalformed(() => decodeSigned('token', encodeSigned('token', { body: filled(16385, 1), signature: filled(64, 1) })), /token.body: expected at most 16384 bytes/);
  });
});
