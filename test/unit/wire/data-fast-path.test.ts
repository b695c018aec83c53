import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { CipherState, NoiseTransport } from '../../../src/crypto/noise/index.js';
import { referenceEncode } from './protobufjs-reference.js';
import { decodeBatch, encodeBatch, encodeBatchParts, MAX_DATA_FRAME, type Frame } from '../../../src/wire/index.js';

/** The hand-written data-frame envelope must be byte for byte what protobufjs writes. */
function protobufjsBytes(frames: Frame[]): Uint8Array {
  return referenceEncode('Batch', {
    frames: frames.map((f) =>
      f.kind === 'data' ? { streamId: f.streamId, data: f.data } : f.kind === 'window' ? { streamId: f.streamId, windowUpdate: f.credit } : { ping: { id: 1 } },
    ),
  });
}

describe('data frame fast path', () => {
  const streamIds = [1, 2, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 0xffff_fffe];
  const lengths = [1, 100, 127, 128, 16_383, 16_384, MAX_DATA_FRAME];

  it.each(streamIds)('stream id %i: same bytes as protobufjs for every varint boundary of the length', (streamId) => {
    for (const length of lengths) {
      const frames: Frame[] = [{ kind: 'data', streamId, data: randomBytes(length) }];
      const expected = protobufjsBytes(frames);
      expect(Buffer.from(encodeBatch(frames)).equals(Buffer.from(expected))).toBe(true);
      expect(decodeBatch(encodeBatch(frames))).toEqual([{ kind: 'data', streamId, data: expect.any(Uint8Array) }]);
    }
  });

  it('mixed batches: data frames interleaved with control frames equal the protobufjs encoding', () => {
    const frames: Frame[] = [
      { kind: 'window', streamId: 3, credit: 65_536 },
      { kind: 'data', streamId: 5, data: randomBytes(3000) },
      { kind: 'data', streamId: 7, data: randomBytes(200) },
      { kind: 'ping', id: 1 },
      { kind: 'data', streamId: 9, data: randomBytes(1) },
    ];
    expect(Buffer.from(encodeBatch(frames)).equals(Buffer.from(protobufjsBytes(frames)))).toBe(true);
    const parts = encodeBatchParts(frames);
    // payloads are referenced, not copied
    expect(parts).toContain((frames[1] as { data: Uint8Array }).data);
  });

  it('sealing the parts gives the same ciphertext as sealing their concatenation', () => {
    const key = randomBytes(32);
    const a = new CipherState(new Uint8Array(key));
    const b = new CipherState(new Uint8Array(key));
    for (let i = 0; i < 5; i++) {
      const frames: Frame[] = [
        { kind: 'data', streamId: 2 * i + 1, data: randomBytes(1000 * (i + 1)) },
        { kind: 'window', streamId: 1, credit: 10 },
      ];
      const parts = encodeBatchParts(frames);
      const sealedParts = a.encryptParts(parts);
      const sealedWhole = b.encryptWithAd(new Uint8Array(0), encodeBatch(frames));
      expect(Buffer.from(sealedParts).equals(Buffer.from(sealedWhole))).toBe(true);
    }
  });

  it('NoiseTransport.sealParts opens on the other side and refuses more than a message holds', () => {
    const k1 = randomBytes(32);
    const k2 = randomBytes(32);
    const left = new NoiseTransport({ send: new CipherState(new Uint8Array(k1)), receive: new CipherState(new Uint8Array(k2)) });
    const right = new NoiseTransport({ send: new CipherState(new Uint8Array(k2)), receive: new CipherState(new Uint8Array(k1)) });
    const data = randomBytes(MAX_DATA_FRAME);
    const frames = decodeBatch(right.open(left.sealParts(encodeBatchParts([{ kind: 'data', streamId: 1, data }]))));
    expect(Buffer.from((frames[0] as { data: Uint8Array }).data).equals(data)).toBe(true);
    expect(() => left.sealParts([randomBytes(40_000), randomBytes(40_000)])).toThrow(/max 65519/);
  });
});
