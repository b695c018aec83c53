import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MeshError } from '../../../src/errors.js';
import {
  decodeBatch,
  decodeCertBody,
  decodeHandshakePayload,
  decodeJoinHello,
  decodeJoinRequest,
  decodeJoinResponse,
  decodeRecordBody,
  decodeSigned,
  decodeTokenBody,
  encodeBatch,
  encodeCertBody,
  encodeJoinRequest,
  encodeJoinResponse,
  encodeRecordBody,
  encodeTokenBody,
} from '../../../src/wire/index.js';
import { plain } from './naive-proto.js';
import { frameArb } from './arbitraries.js';

/**
 * Seeded fuzzing of every decoder that reads a peer's bytes: whatever arrives, the only thing that
 * may be thrown is a MeshError (SPEC §2 wire: "they never throw raw exceptions into the tunnel").
 * The seed is fixed so a failure replays; fast-check prints the seed and path of a counterexample.
 */
const SEED = 0x05_0d_a1;
const BATCH_RUNS = 20_000;
const MESSAGE_RUNS = 5_000;

/** Runs a decoder; returns 'ok' or 'mesh-error', and rethrows anything else (which fails the property). */
function outcome(decode: () => unknown): 'ok' | 'mesh-error' {
  try {
    decode();
    return 'ok';
  } catch (err) {
    if (err instanceof MeshError) return 'mesh-error';
    throw err;
  }
}

/**
 * Hostile inputs built from valid ones: byte flips aimed anywhere, truncation, insertion, splices of
 * two encodings, plus plain random bytes. Valid encodings keep the fuzzer inside the parser's deep
 * states instead of failing on the first tag.
 */
function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const flip = fc
    .tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }))
    .map(([bytes, edits]) => {
      const out = Uint8Array.from(bytes);
      if (out.length === 0) return out;
      for (const [at, value] of edits) out[at % out.length] = value;
      return out;
    });
  const truncate = fc.tuple(valid, fc.nat()).map(([bytes, n]) => bytes.subarray(0, n % (bytes.length + 1)));
  const insert = fc.tuple(valid, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 12 })).map(([bytes, at, extra]) => {
    const i = at % (bytes.length + 1);
    return Uint8Array.from([...bytes.subarray(0, i), ...extra, ...bytes.subarray(i)]);
  });
  const splice = fc.tuple(valid, valid, fc.nat(), fc.nat()).map(([a, b, i, j]) => Uint8Array.from([...a.subarray(0, i % (a.length + 1)), ...b.subarray(j % (b.length + 1))]));
  const hostileVarints = fc
    .tuple(valid, fc.nat(), fc.constantFrom([0xff, 0xff, 0xff, 0xff, 0x0f], [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))
    .map(([bytes, at, v]) => {
      const i = at % (bytes.length + 1);
      return Uint8Array.from([...bytes.subarray(0, i), ...v, ...bytes.subarray(i)]);
    });
  return fc.oneof(flip, truncate, insert, splice, hostileVarints, fc.uint8Array({ maxLength: 400 }));
}

function fuzz(decode: (bytes: Uint8Array) => unknown, inputs: fc.Arbitrary<Uint8Array>, numRuns: number): { ok: number; rejected: number } {
  const counts = { ok: 0, rejected: 0 };
  fc.assert(
    fc.property(inputs, (bytes) => {
      if (outcome(() => decode(bytes)) === 'ok') counts.ok++;
      else counts.rejected++;
    }),
    { seed: SEED, numRuns, endOnFailure: true },
  );
  return counts;
}

describe('wire fuzzing (seed 0x050da1)', () => {
  it(`decodeBatch: ${BATCH_RUNS} inputs, only MeshError is ever thrown`, () => {
    const validBatches = fc.array(frameArb, { minLength: 1, maxLength: 6 }).map((frames) => encodeBatch(frames));
    const counts = fuzz(decodeBatch, mutated(validBatches), BATCH_RUNS);
    expect(counts.ok + counts.rejected).toBe(BATCH_RUNS);
    // the mix must exercise both paths, or the fuzzer is not reaching the validators
    expect(counts.ok).toBeGreaterThan(BATCH_RUNS / 50);
    expect(counts.rejected).toBeGreaterThan(BATCH_RUNS / 10);
  }, 120_000);

  it('encodeBatch/decodeBatch round trip on generated frames', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 8 }), (frames) => {
        expect(plain(decodeBatch(encodeBatch(frames)))).toEqual(plain(frames));
      }),
      { seed: SEED, numRuns: 2_000 },
    );
  });

  const bytes16 = fc.uint8Array({ minLength: 16, maxLength: 16 });
  const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
  const bytes64 = fc.uint8Array({ minLength: 64, maxLength: 64 });
  const anyLength = fc.uint8Array({ maxLength: 70 });
  const nearly = (exact: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> => fc.oneof({ weight: 4, arbitrary: exact }, { weight: 1, arbitrary: anyLength });
  const label = fc.string({ maxLength: 70 });
  const when = fc.maxSafeNat();

  const validCerts = fc
    .record({
      version: fc.nat({ max: 3 }),
      meshId: nearly(bytes16),
      meshName: label,
      nodeId: nearly(bytes16),
      name: label,
      ed25519Public: nearly(bytes32),
      x25519Public: nearly(bytes32),
      tags: fc.array(label, { maxLength: 4 }),
      issuedAtMs: when,
      expiresAtMs: when,
      isAdmin: fc.boolean(),
    })
    .map(encodeCertBody);
  const validTokens = fc
    .record({
      version: fc.nat({ max: 3 }),
      meshId: nearly(bytes16),
      meshName: label,
      authorityPublic: nearly(bytes32),
      issuerEndpoints: fc.array(fc.webUrl(), { maxLength: 3 }),
      issuerX25519: nearly(bytes32),
      tokenId: nearly(bytes16),
      secret: nearly(bytes32),
      expiresAtMs: when,
    })
    .map(encodeTokenBody);
  const validRecords = fc
    .record({
      cert: fc.uint8Array({ maxLength: 200 }),
      seq: when,
      endpoints: fc.array(fc.webUrl(), { maxLength: 3 }),
      services: fc.array(fc.record({ name: label, ports: fc.array(fc.integer({ min: 0, max: 70_000 }), { maxLength: 4 }) }), { maxLength: 4 }),
      updatedAtMs: when,
    })
    .map(encodeRecordBody);
  const validJoinRequests = fc
    .record({ name: label, ed25519Public: nearly(bytes32), ed25519Proof: nearly(bytes64), endpoints: fc.array(fc.webUrl(), { maxLength: 3 }), tags: fc.array(label, { maxLength: 3 }) })
    .map(encodeJoinRequest);
  const validJoinResponses = fc
    .oneof(
      fc.record({
        kind: fc.constant('accepted' as const),
        cert: fc.uint8Array({ maxLength: 100 }),
        authorityPublic: nearly(bytes32),
        members: fc.array(fc.record({ body: fc.uint8Array({ maxLength: 50 }), signature: nearly(bytes64) }), { maxLength: 3 }),
      }),
      fc.record({ kind: fc.constant('refused' as const), code: label, message: label }),
    )
    .map(encodeJoinResponse);

  const decoders: [string, (b: Uint8Array) => unknown, fc.Arbitrary<Uint8Array>][] = [
    ['decodeCertBody', decodeCertBody, validCerts],
    ['decodeTokenBody', decodeTokenBody, validTokens],
    ['decodeRecordBody', decodeRecordBody, validRecords],
    ['decodeJoinRequest', decodeJoinRequest, validJoinRequests],
    ['decodeJoinResponse', decodeJoinResponse, validJoinResponses],
    ['decodeJoinHello', decodeJoinHello, fc.record({ version: fc.nat(), tokenId: nearly(bytes16) }).map((h) => Uint8Array.from([0x08, h.version & 0x7f, 0x12, h.tokenId.length, ...h.tokenId]))],
    ['decodeHandshakePayload', decodeHandshakePayload, fc.uint8Array({ maxLength: 200 })],
    ['decodeSigned(cert)', (b) => decodeSigned('cert', b), fc.uint8Array({ maxLength: 200 })],
  ];
  for (const [name, decode, valid] of decoders) {
    it(`${name}: ${MESSAGE_RUNS} inputs, only MeshError is ever thrown`, () => {
      const counts = fuzz(decode, fc.oneof(valid, mutated(valid)), MESSAGE_RUNS);
      expect(counts.ok + counts.rejected).toBe(MESSAGE_RUNS);
      expect(counts.rejected).toBeGreaterThan(0);
    }, 60_000);
  }
});
