import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { ProtoReader, WireType } from '../../../src/wire/proto-reader.js';
import { referenceDecode, referenceEncode } from './protobufjs-reference.js';
import { decodeBatch, encodeBatch, frameFromProto, frameToProto, type Frame } from '../../../src/wire/index.js';
import { concat, message, naiveBatch, naiveFrame, plain, varint, type Field } from './naive-proto.js';
import { streamFrameArb, u32Arb } from './arbitraries.js';
import { expectMeshError } from '../../helpers/mesh-error.js';

/**
 * The hand-written codec of stream frames (open, accept, window, fin, reset, data) against
 * protobufjs, which reads the same proto/mesh.proto: the bytes it writes must be protobufjs' bytes,
 * and what it reads from any valid Batch (fields in any order, unknown fields, repeated oneof
 * members) must be what protobufjs reads, through the same frameFromProto rules.
 */

function protobufjsBytes(frames: Frame[]): string {
  return Buffer.from(referenceEncode('Batch', { frames: frames.map(frameToProto) })).toString('hex');
}

/** The decoder the agent used before the hand codec: protobufjs, then the same validation. */
function protobufjsDecode(bytes: Uint8Array): Frame[] {
  const raw = referenceDecode('Batch', bytes) as { frames?: Record<string, unknown>[] };
  return (raw.frames ?? []).map((f, i) => frameFromProto(f, i));
}

const varintEdges = [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455, 268_435_456, 0xffff_ffff];
const idEdges = varintEdges.filter((v) => v > 0);

describe('stream frame encoder: the bytes protobufjs writes', () => {
  it('every control frame kind at every varint length of its numbers', () => {
    for (const streamId of idEdges) {
      for (const n of varintEdges) {
        const frames: Frame[] = [
          { kind: 'open', streamId, service: 'db', port: Math.max(1, n & 0xffff), window: n },
          { kind: 'accept', streamId, window: n },
          { kind: 'fin', streamId },
          { kind: 'reset', streamId, code: 'MESH_ERR_DIAL_FAILED', message: `connect ECONNREFUSED ${n}` },
        ];
        if (n > 0) frames.push({ kind: 'window', streamId, credit: n });
        for (const frame of frames) expect(Buffer.from(encodeBatch([frame])).toString('hex'), `${frame.kind} ${streamId} ${n}`).toBe(protobufjsBytes([frame]));
      }
    }
  });

  it('texts of every length class and of several scripts, and empty ones', () => {
    const texts = ['', 'a', 'ä', '数据库', '🐘', 'x'.repeat(127), 'y'.repeat(128), 'é'.repeat(200), 'z'.repeat(1024)];
    for (const text of texts) {
      const frames: Frame[] = [
        { kind: 'open', streamId: 3, service: text || 's', port: 5432, window: 262_144 },
        { kind: 'reset', streamId: 3, code: text.slice(0, 64), message: text },
      ];
      expect(Buffer.from(encodeBatch(frames)).toString('hex')).toBe(protobufjsBytes(frames));
    }
  });

  it('batches mixing data, control and tunnel frames keep order and bytes', () => {
    const frames: Frame[] = [
      { kind: 'ping', id: 7 },
      { kind: 'open', streamId: 1, service: 'web', port: 80, window: 65_536 },
      { kind: 'data', streamId: 1, data: Uint8Array.from([1, 2, 3]) },
      { kind: 'fin', streamId: 1 },
      { kind: 'accept', streamId: 2, window: 65_536 },
      { kind: 'rekey' },
      { kind: 'window', streamId: 2, credit: 4096 },
      { kind: 'data', streamId: 2, data: new Uint8Array(0) },
      { kind: 'reset', streamId: 4, code: 'X', message: 'y' },
    ];
    expect(Buffer.from(encodeBatch(frames)).toString('hex')).toBe(protobufjsBytes(frames));
    expect(plain(decodeBatch(encodeBatch(frames)))).toEqual(plain(frames));
  });
});

/** A stream frame's fields as the naive writer takes them, so that tests can reorder and pad them. */
function streamFrameFields(frame: Frame): Field[] {
  const bytes = naiveFrame(frame);
  const fields: Field[] = [];
  const reader = new ProtoReader(bytes, 'test');
  while (!reader.isDone) {
    const key = reader.key();
    if ((key & 7) === WireType.VARINT) fields.push({ num: key >>> 3, varint: reader.uint32() });
    else {
      const end = reader.lengthEnd();
      fields.push({ num: key >>> 3, bytes: bytes.subarray(reader.pos, end) });
      reader.pos = end;
    }
  }
  return fields;
}

/** Fields of numbers no Frame has (a newer peer's), of every wire type the decoder skips. */
const unknownField: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.tuple(fc.integer({ min: 14, max: 2000 }), u32Arb).map(([num, v]) => concat(varint(num << 3), varint(v))),
  fc.tuple(fc.integer({ min: 14, max: 2000 }), fc.uint8Array({ maxLength: 20 })).map(([num, b]) => message([{ num, bytes: b }])),
  fc.tuple(fc.integer({ min: 14, max: 2000 }), fc.uint8Array({ minLength: 8, maxLength: 8 })).map(([num, b]) => concat(varint((num << 3) | 1), b)),
  fc.tuple(fc.integer({ min: 14, max: 2000 }), fc.uint8Array({ minLength: 4, maxLength: 4 })).map(([num, b]) => concat(varint((num << 3) | 5), b)),
);

describe('stream frame decoder: what protobufjs reads', () => {
  it('valid batches with shuffled fields, unknown fields and an overridden body', () => {
    const frameBytes = fc
      .tuple(streamFrameArb, fc.option(streamFrameArb), fc.array(unknownField, { maxLength: 3 }), fc.boolean(), fc.nat())
      .map(([frame, earlier, unknown, reverse, at]) => {
        // an earlier body of another frame: the last oneof member wins
        const fields = [...(earlier === null ? [] : streamFrameFields(earlier).filter((f) => f.num !== 1)), ...streamFrameFields(frame)];
        const encoded = fields.map((f) => message([f]));
        const ordered = reverse ? [...encoded.filter((_, i) => fields[i]!.num !== 1), ...encoded.filter((_, i) => fields[i]!.num === 1)] : encoded;
        const parts = [...ordered];
        for (const extra of unknown) parts.splice(at % (parts.length + 1), 0, extra);
        return concat(...parts);
      });
    const batch = fc.tuple(fc.array(frameBytes, { minLength: 1, maxLength: 6 }), fc.array(unknownField, { maxLength: 2 })).map(([frames, extra]) => concat(naiveBatch(frames), ...extra));
    let checked = 0;
    fc.assert(
      fc.property(batch, (bytes) => {
        expect(plain(decodeBatch(bytes))).toEqual(plain(protobufjsDecode(bytes)));
        checked++;
      }),
      { seed: 0x5f_0c_0d, numRuns: 3000 },
    );
    expect(checked).toBe(3000);
  });

  it('mutated batches: whatever it accepts, protobufjs accepts as the same frames', () => {
    const valid = fc.array(streamFrameArb, { minLength: 1, maxLength: 5 }).map((frames) => encodeBatch(frames));
    const mutation = fc
      .tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }))
      .map(([bytes, edits]) => {
        const out = Uint8Array.from(bytes);
        for (const [at, value] of edits) out[at % out.length] = value;
        return out;
      });
    const counts = { accepted: 0, rejected: 0 };
    fc.assert(
      fc.property(mutation, (bytes) => {
        let frames: Frame[];
        try {
          frames = decodeBatch(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(MeshError);
          counts.rejected++;
          return;
        }
        counts.accepted++;
        expect(plain(frames)).toEqual(plain(protobufjsDecode(bytes)));
      }),
      { seed: 0x5f_0c_0e, numRuns: 5000 },
    );
    expect(counts.accepted).toBeGreaterThan(500);
    expect(counts.rejected).toBeGreaterThan(500);
  });

  it('data payloads are views into the batch, not copies', () => {
    const batch = encodeBatch([{ kind: 'data', streamId: 9, data: Uint8Array.from([5, 6, 7]) }]);
    const [frame] = decodeBatch(batch);
    expect(frame?.kind).toBe('data');
    const data = (frame as { data: Uint8Array }).data;
    expect(data.buffer).toBe(batch.buffer);
  });
});

describe('stream frame decoder: clear errors for broken encodings', () => {
  const M = ErrorCodes.MALFORMED_FRAME;
  const frame = (...bytes: number[]): Uint8Array => naiveBatch([Uint8Array.from(bytes)]);

  it('a truncated varint', () => {
    expectMeshError(() => decodeBatch(frame(0x08, 0x80)), M, /frame\[0\]: truncated varint/);
  });
  it('a stream id that does not fit 32 bits', () => {
    expectMeshError(() => decodeBatch(frame(0x08, 0x80, 0x80, 0x80, 0x80, 0x10, 0x2a, 0x00)), M, /frame\[0\]: varint does not fit 32 bits/);
  });
  it('a length past the end of the frame', () => {
    expectMeshError(() => decodeBatch(frame(0x08, 0x01, 0x1a, 0x05, 0x01)), M, /frame\[0\]: field of 5 bytes, only 1 left/);
  });
  it('a known field with the wrong wire type', () => {
    expectMeshError(() => decodeBatch(frame(0x08, 0x01, 0x18, 0x05)), M, /frame\[0\]: field 3: wire type 0, expected 2/);
    expectMeshError(() => decodeBatch(naiveBatch([Uint8Array.from([0x08, 0x01, 0x2a, 0x00]), Uint8Array.from([0x0a, 0x01, 0x01])])), M, /frame\[1\]: field 1: wire type 2, expected 0/);
  });
  it('a string that is not valid UTF-8', () => {
    expectMeshError(() => decodeBatch(frame(0x08, 0x01, 0x12, 0x04, 0x0a, 0x02, 0xc3, 0x28)), M, /frame\[0\]: a string field that is not valid UTF-8/);
  });
  it('a group or reserved wire type', () => {
    expectMeshError(() => decodeBatch(frame(0x08, 0x01, 0x7b)), M, /wire type 3 \(groups/);
    expectMeshError(() => decodeBatch(frame(0x08, 0x01, 0x7e)), M, /wire type 6/);
  });
  it('field number 0', () => {
    expectMeshError(() => decodeBatch(frame(0x00, 0x01)), M, /field number 0/);
  });
  it('a Batch entry that is not length-delimited', () => {
    expectMeshError(() => decodeBatch(Uint8Array.from([0x08, 0x01])), M, /^batch: field 1: wire type 0, expected 2/);
  });
  it('inside a sub-message: an open whose service runs past the open', () => {
    expectMeshError(() => decodeBatch(frame(0x08, 0x01, 0x12, 0x03, 0x0a, 0x09, 0x61)), M, /frame\[0\]: field of 9 bytes, only 1 left/);
  });
});
