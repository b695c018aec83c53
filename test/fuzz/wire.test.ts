import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import {
  MAX_BATCH_BYTES,
  MAX_DATA_FRAME,
  MAX_FRAMES_PER_BATCH,
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
  encodeHandshakePayload,
  encodeJoinHello,
  encodeJoinRequest,
  encodeJoinResponse,
  encodeRecordBody,
  encodeSigned,
  encodeTokenBody,
  isStreamFrame,
  type Frame,
} from '../../src/wire/index.js';
import { TEN_GIB, corpus, expectCheapRejection, fuzzDecoder, mutatedFrom, varint } from './harness.js';

/**
 * Every protobuf decoder of src/wire (PROTOCOL.md): the Batch of frames inside each transport
 * message and the trust, membership and join messages. Seed 0x57a7e1; each decoder 100,000 cases.
 */
const SEED = 0x57a7e1;
const WIRE_CODES = [ErrorCodes.MALFORMED_FRAME, ErrorCodes.FRAME_TOO_LARGE] as const;

const streamId = fc.oneof(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 0xffff_ffff }));
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const text = fc.string({ maxLength: 40 });
const bytes = (n: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: n, maxLength: n });
const anyLength = fc.uint8Array({ maxLength: 70 });
/** Mostly the exact length a field needs, sometimes any length (the validator must catch it). */
const nearly = (n: number): fc.Arbitrary<Uint8Array> => fc.oneof({ weight: 5, arbitrary: bytes(n) }, { weight: 1, arbitrary: anyLength });
const label = fc.oneof(fc.stringMatching(/^[a-z0-9-]{1,20}$/), fc.string({ maxLength: 70 }));
const when = fc.oneof(fc.integer({ min: 0, max: 2 ** 42 }), fc.maxSafeNat());
const url = fc.oneof(fc.constant('ws://203.0.113.10:18800'), fc.webUrl());

const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ kind: fc.constant('open' as const), streamId, service: fc.string({ minLength: 1, maxLength: 30 }), port: fc.integer({ min: 1, max: 65535 }), window: u32 }),
  fc.record({ kind: fc.constant('accept' as const), streamId, window: u32 }),
  fc.record({ kind: fc.constant('data' as const), streamId, data: fc.uint8Array({ maxLength: 300 }) }),
  fc.record({ kind: fc.constant('window' as const), streamId, credit: fc.integer({ min: 1, max: 0xffff_ffff }) }),
  fc.record({ kind: fc.constant('fin' as const), streamId }),
  fc.record({ kind: fc.constant('reset' as const), streamId, code: text, message: text }),
  fc.record({ kind: fc.constant('ping' as const), id: fc.maxSafeNat() }),
  fc.record({ kind: fc.constant('pong' as const), id: fc.maxSafeNat() }),
  fc.record({ kind: fc.constant('gossip' as const), records: fc.array(fc.record({ body: fc.uint8Array({ maxLength: 80 }), signature: bytes(64) }), { maxLength: 3 }) }),
  fc.record({ kind: fc.constant('rekey' as const) }),
  fc.record({ kind: fc.constant('goaway' as const), code: text, message: text }),
);

const validBatches = fc.oneof(
  { weight: 20, arbitrary: fc.array(frameArb, { minLength: 1, maxLength: 6 }).map((frames) => encodeBatch(frames)) },
  // one message over the limit, cheap to build: FRAME_TOO_LARGE before any decoder sees it
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 200 }).map((n) => new Uint8Array(MAX_BATCH_BYTES + 1 + n).fill(0x0a)) },
);

const validCerts = fc
  .record({
    version: fc.nat({ max: 3 }),
    meshId: nearly(16),
    meshName: label,
    nodeId: nearly(16),
    name: label,
    ed25519Public: nearly(32),
    x25519Public: nearly(32),
    tags: fc.array(label, { maxLength: 4 }),
    issuedAtMs: when,
    expiresAtMs: when,
    isAdmin: fc.boolean(),
  })
  .map(encodeCertBody);
const validTokens = fc
  .record({
    version: fc.nat({ max: 3 }),
    meshId: nearly(16),
    meshName: label,
    authorityPublic: nearly(32),
    issuerEndpoints: fc.array(url, { maxLength: 3 }),
    issuerX25519: nearly(32),
    tokenId: nearly(16),
    secret: nearly(32),
    expiresAtMs: when,
  })
  .map(encodeTokenBody);
const validRecords = fc
  .record({
    cert: fc.uint8Array({ maxLength: 200 }),
    seq: when,
    endpoints: fc.array(url, { maxLength: 3 }),
    services: fc.array(fc.record({ name: label, ports: fc.array(fc.integer({ min: 0, max: 70_000 }), { maxLength: 4 }) }), { maxLength: 4 }),
    updatedAtMs: when,
  })
  .map(encodeRecordBody);
const signedArb = fc.record({ body: fc.uint8Array({ maxLength: 120 }), signature: nearly(64) });
const validSigned = fc.tuple(fc.constantFrom('cert' as const, 'token' as const, 'record' as const), signedArb).map(([kind, s]) => encodeSigned(kind, s));
const validHandshakePayloads = fc
  .record({ cert: fc.uint8Array({ maxLength: 200 }), record: fc.option(signedArb, { nil: undefined }) })
  .map((p) => encodeHandshakePayload(p));
const validHellos = fc.record({ version: fc.nat(), tokenId: nearly(16) }).map(encodeJoinHello);
const validJoinRequests = fc
  .record({ name: label, ed25519Public: nearly(32), ed25519Proof: nearly(64), endpoints: fc.array(url, { maxLength: 3 }), tags: fc.array(label, { maxLength: 3 }) })
  .map(encodeJoinRequest);
const validJoinResponses = fc
  .oneof(
    fc.record({ kind: fc.constant('accepted' as const), cert: fc.uint8Array({ maxLength: 100 }), authorityPublic: nearly(32), members: fc.array(signedArb, { maxLength: 3 }) }),
    fc.record({ kind: fc.constant('refused' as const), code: label, message: label }),
  )
  .map(encodeJoinResponse);

/** What an accepted Batch must satisfy: the limits the rest of the agent relies on. */
function checkedBatch(input: Uint8Array): Frame[] {
  const frames = decodeBatch(input);
  if (frames.length < 1 || frames.length > MAX_FRAMES_PER_BATCH) throw new Error(`decodeBatch returned ${frames.length} frames`);
  for (const f of frames) {
    // every frame carries every field (one hidden class), so the stream id is there or undefined
    const isStreamKind = ['open', 'accept', 'data', 'window', 'fin', 'reset'].includes(f.kind);
    if (isStreamFrame(f) !== isStreamKind) throw new Error(`${f.kind} frame with stream id ${(f as { streamId?: number }).streamId}`);
    if (isStreamFrame(f) && (!Number.isInteger(f.streamId) || f.streamId < 1 || f.streamId > 0xffff_ffff)) throw new Error(`stream id ${f.streamId}`);
    if (f.kind === 'data' && f.data.length > MAX_DATA_FRAME) throw new Error(`data frame of ${f.data.length} bytes`);
    if (f.kind === 'open' && (f.port < 1 || f.port > 65535 || f.service.length === 0)) throw new Error(`open ${f.service}:${f.port}`);
    if ((f.kind === 'ping' || f.kind === 'pong') && !Number.isSafeInteger(f.id)) throw new Error(`ping id ${f.id}`);
  }
  return frames;
}

describe(`wire decoders under fuzzing (seed 0x${SEED.toString(16)})`, () => {
  const decoders: [string, (b: Uint8Array) => unknown, fc.Arbitrary<Uint8Array>][] = [
    ['decodeBatch', checkedBatch, validBatches],
    ['decodeCertBody', decodeCertBody, validCerts],
    ['decodeTokenBody', decodeTokenBody, validTokens],
    ['decodeRecordBody', decodeRecordBody, validRecords],
    ['decodeSigned', (b) => decodeSigned('record', b), validSigned],
    ['decodeHandshakePayload', decodeHandshakePayload, validHandshakePayloads],
    ['decodeJoinHello', decodeJoinHello, validHellos],
    ['decodeJoinRequest', decodeJoinRequest, validJoinRequests],
    ['decodeJoinResponse', decodeJoinResponse, validJoinResponses],
  ];
  for (const [name, decode, valid] of decoders) {
    it(`${name}: 100,000 valid and mutated inputs, only MALFORMED_FRAME / FRAME_TOO_LARGE`, () => {
      const report = fuzzDecoder({ name: `wire ${name}`, seed: SEED, input: mutatedFrom(corpus(valid, SEED)), decode, allowed: WIRE_CODES });
      // both paths must be exercised, or the fuzzer is not reaching the validators
      expect(report.accepted).toBeGreaterThan(1_000);
      expect(report.rejected).toBeGreaterThan(1_000);
    }, 120_000);
  }

  it('a 10 GiB length claim is refused before anything is allocated for it, in every position', () => {
    const claim = varint(TEN_GIB);
    const inputs: [string, () => unknown][] = [
      // Batch.frames (field 1, length-delimited) claiming 10 GiB, followed by 3 bytes
      ['Batch.frames length 10 GiB', () => decodeBatch(Uint8Array.from([0x0a, ...claim, 0x08, 0x01, 0x18]))],
      // a data frame whose payload claims 10 GiB
      ['Frame.data length 10 GiB', () => decodeBatch(Uint8Array.from([0x0a, 0x09, 0x08, 0x01, 0x1a, ...claim, 0x00]))],
      ['NodeCertBody.mesh_id length 10 GiB', () => decodeCertBody(Uint8Array.from([0x12, ...claim, 1, 2, 3]))],
      ['SignedToken.body length 10 GiB', () => decodeSigned('token', Uint8Array.from([0x0a, ...claim, 1, 2, 3]))],
      ['JoinRequest.name length 10 GiB', () => decodeJoinRequest(Uint8Array.from([0x0a, ...claim, 0x61]))],
      ['NodeRecordBody.services length 10 GiB', () => decodeRecordBody(Uint8Array.from([0x22, ...claim, 0x0a, 0x01, 0x61]))],
    ];
    for (const [what, decode] of inputs) expectCheapRejection(what, decode, WIRE_CODES);
  });
});
