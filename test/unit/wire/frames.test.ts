import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../src/errors.js';
import {
  MAX_BATCH_BYTES,
  MAX_DATA_FRAME,
  MAX_FRAMES_PER_BATCH,
  MAX_RECORDS_PER_GOSSIP,
  MAX_TEXT_FIELD,
  decodeBatch,
  encodeBatch,
  isStreamFrame,
  type Frame,
  type StreamFrame,
} from '../../../src/wire/index.js';
import { concat, message, naiveBatch, naiveFrame, plain, varint } from './naive-proto.js';
import { expectMeshError } from '../../helpers/mesh-error.js';

function bytesOf(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);
}

/** One frame of every kind, with values at the edges of their ranges. */
const EVERY_KIND: Frame[] = [
  { kind: 'open', streamId: 1, service: 'cache', port: 6379, window: 262_144 },
  { kind: 'open', streamId: 0xffff_ffff, service: 'a'.repeat(253), port: 65535, window: 0 },
  { kind: 'accept', streamId: 2, window: 1 << 20 },
  { kind: 'data', streamId: 3, data: bytesOf(1000, 7) },
  { kind: 'data', streamId: 3, data: new Uint8Array(0) },
  { kind: 'data', streamId: 200, data: bytesOf(MAX_DATA_FRAME, 1) },
  { kind: 'window', streamId: 5, credit: 65536 },
  { kind: 'window', streamId: 5, credit: 0xffff_ffff },
  { kind: 'fin', streamId: 7 },
  { kind: 'reset', streamId: 9, code: 'MESH_ERR_DIAL_FAILED', message: 'connect ECONNREFUSED 127.0.0.1:6379' },
  { kind: 'reset', streamId: 9, code: '', message: '' },
  { kind: 'ping', id: 0 },
  { kind: 'ping', id: Number.MAX_SAFE_INTEGER },
  { kind: 'pong', id: 123_456_789_012 },
  { kind: 'gossip', records: [] },
  {
    kind: 'gossip',
    records: [
      { body: bytesOf(300, 2), signature: bytesOf(64, 3) },
      { body: new Uint8Array(0), signature: bytesOf(64, 4) },
    ],
  },
  { kind: 'gossip', records: [{ body: bytesOf(40, 5), signature: bytesOf(64, 6) }], revocations: bytesOf(200, 7) },
  { kind: 'renewal', cert: bytesOf(180, 8) },
  { kind: 'rekey' },
  { kind: 'goaway', code: 'MESH_ERR_TUNNEL_CLOSED', message: 'agent stopping' },
];


describe('encodeBatch / decodeBatch round trips', () => {
  for (const frame of EVERY_KIND) {
    const label = `${frame.kind} ${JSON.stringify(frame, (_k, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v)).slice(0, 80)}`;

    it(`${label}: decode(encode(f)) is f`, () => {
      expect(plain(decodeBatch(encodeBatch([frame])))).toEqual([plain(frame)]);
    });

    it(`${label}: the agent decodes the naive reference encoding to f`, () => {
      expect(plain(decodeBatch(naiveBatch([naiveFrame(frame)])))).toEqual([plain(frame)]);
    });
  }

  it('a batch of every kind keeps order and content', () => {
    // the full-size data frame alone nearly fills a batch; leave it out here
    const frames = EVERY_KIND.filter((f) => !(f.kind === 'data' && f.data.length === MAX_DATA_FRAME));
    const encoded = encodeBatch(frames);
    expect(plain(decodeBatch(encoded))).toEqual(plain(frames));
    expect(plain(decodeBatch(naiveBatch(frames.map(naiveFrame))))).toEqual(plain(frames));
  });

  it('the agent encoding of single-field frames equals the naive bytes', () => {
    // frames whose encoding has no optional/default ambiguity: field numbers and wire
    // types must match the schema exactly
    const simple: Frame[] = [
      { kind: 'data', streamId: 3, data: bytesOf(10, 1) },
      { kind: 'window', streamId: 300, credit: 4096 },
      { kind: 'fin', streamId: 1 },
      { kind: 'rekey' },
      { kind: 'ping', id: 77 },
      { kind: 'pong', id: 2 ** 40 },
    ];
    for (const frame of simple) {
      expect(Buffer.from(encodeBatch([frame])).toString('hex'), frame.kind).toBe(Buffer.from(naiveBatch([naiveFrame(frame)])).toString('hex'));
    }
  });

  it('MAX_FRAMES_PER_BATCH small frames encode and decode', () => {
    const frames: Frame[] = Array.from({ length: MAX_FRAMES_PER_BATCH }, (_, i) => ({ kind: 'fin', streamId: i + 1 }));
    const decoded = decodeBatch(encodeBatch(frames));
    expect(decoded).toHaveLength(MAX_FRAMES_PER_BATCH);
    expect(decoded[MAX_FRAMES_PER_BATCH - 1]).toEqual({ kind: 'fin', streamId: MAX_FRAMES_PER_BATCH });
  });

  it('a full data frame fits one batch (MAX_DATA_FRAME leaves room for the envelope)', () => {
    const bytes = encodeBatch([{ kind: 'data', streamId: 0xffff_ffff, data: bytesOf(MAX_DATA_FRAME, 9) }]);
    expect(bytes.length).toBeLessThanOrEqual(MAX_BATCH_BYTES);
  });

  it('isStreamFrame tells stream frames from tunnel frames', () => {
    const stream = EVERY_KIND.filter(isStreamFrame).map((f) => f.kind);
    expect(new Set(stream)).toEqual(new Set(['open', 'accept', 'data', 'window', 'fin', 'reset']));
  });
});

describe('encodeBatch refuses what the peer would refuse', () => {
  it('more than MAX_FRAMES_PER_BATCH frames → FRAME_TOO_LARGE', () => {
    const frames: Frame[] = Array.from({ length: MAX_FRAMES_PER_BATCH + 1 }, () => ({ kind: 'rekey' }));
    expectMeshError(() => encodeBatch(frames), ErrorCodes.FRAME_TOO_LARGE, /4097 frames, at most 4096/);
  });

  it('an encoding above MAX_BATCH_BYTES → FRAME_TOO_LARGE', () => {
    expectMeshError(() => encodeBatch([{ kind: 'data', streamId: 1, data: new Uint8Array(70_000) }]), ErrorCodes.FRAME_TOO_LARGE, /at most 65519/);
  });
});

describe('decodeBatch rejects malformed batches', () => {
  const M = ErrorCodes.MALFORMED_FRAME;

  it('empty batch (zero bytes: no frames field at all)', () => {
    expectMeshError(() => decodeBatch(new Uint8Array(0)), M, /no frames/);
  });

  it('a frame with no body', () => {
    expectMeshError(() => decodeBatch(naiveBatch([message([{ num: 1, varint: 5 }])])), M, /frame\[0\].*no known body/);
    expectMeshError(() => decodeBatch(naiveBatch([new Uint8Array(0)])), M, /no known body/);
  });

  it('a frame with an unknown (newer) body field only', () => {
    expectMeshError(() => decodeBatch(naiveBatch([message([{ num: 1, varint: 1 }, { num: 99, varint: 1 }])])), M, /no known body/);
  });

  for (const kind of ['open', 'accept', 'data', 'window', 'fin', 'reset'] as const) {
    it(`${kind} frame with stream id 0`, () => {
      const sample = EVERY_KIND.find((f) => f.kind === kind)! as StreamFrame;
      const bytes = naiveBatch([naiveFrame({ ...sample, streamId: 0 } as StreamFrame)]);
      expectMeshError(() => decodeBatch(bytes), M, /needs a stream id, got 0/);
    });
  }

  for (const kind of ['ping', 'pong', 'gossip', 'renewal', 'rekey', 'goaway'] as const) {
    it(`${kind} frame with a stream id`, () => {
      const sample = EVERY_KIND.find((f) => f.kind === kind)!;
      const bytes = naiveBatch([concat(message([{ num: 1, varint: 9 }]), naiveFrame(sample))]);
      expectMeshError(() => decodeBatch(bytes), M, /tunnel-level, got stream id 9/);
    });
  }

  for (const port of [0, 65536, 70000]) {
    it(`open with port ${port}`, () => {
      const bytes = naiveBatch([naiveFrame({ kind: 'open', streamId: 1, service: 'web', port, window: 1 })]);
      expectMeshError(() => decodeBatch(bytes), M, new RegExp(`open.port: expected 1..65535, got ${port}`));
    });
  }

  it('open with no port field at all', () => {
    const open = message([{ num: 1, bytes: new TextEncoder().encode('web') }]);
    expectMeshError(() => decodeBatch(naiveBatch([message([{ num: 1, varint: 1 }, { num: 2, bytes: open }])])), M, /open.port/);
  });

  it('open with an empty or overlong service name', () => {
    expectMeshError(() => decodeBatch(naiveBatch([naiveFrame({ kind: 'open', streamId: 1, service: '', port: 80, window: 1 })])), M, /open.service: empty/);
    expectMeshError(
      () => decodeBatch(naiveBatch([naiveFrame({ kind: 'open', streamId: 1, service: 'x'.repeat(254), port: 80, window: 1 })])),
      M,
      /open.service: expected at most 253 characters, got 254/,
    );
  });

  it('data frame one byte over MAX_DATA_FRAME', () => {
    const bytes = naiveBatch([naiveFrame({ kind: 'data', streamId: 1, data: new Uint8Array(MAX_DATA_FRAME + 1) })]);
    expect(bytes.length).toBeLessThanOrEqual(MAX_BATCH_BYTES);
    expectMeshError(() => decodeBatch(bytes), M, new RegExp(`data: expected at most ${MAX_DATA_FRAME} bytes, got ${MAX_DATA_FRAME + 1}`));
  });

  it('a batch over MAX_BATCH_BYTES → FRAME_TOO_LARGE with wire reason too-large', () => {
    const bytes = naiveBatch([naiveFrame({ kind: 'data', streamId: 1, data: new Uint8Array(MAX_BATCH_BYTES) })]);
    const err = expectMeshError(() => decodeBatch(bytes), ErrorCodes.FRAME_TOO_LARGE, /at most 65519/);
    expect(err.wireReason).toBe('too-large');
  });

  it('window update of 0', () => {
    expectMeshError(() => decodeBatch(naiveBatch([naiveFrame({ kind: 'window', streamId: 1, credit: 0 })])), M, /window_update of 0/);
  });

  it('too many frames', () => {
    const fin = naiveFrame({ kind: 'fin', streamId: 1 });
    const bytes = naiveBatch(Array.from({ length: MAX_FRAMES_PER_BATCH + 1 }, () => fin));
    expect(bytes.length).toBeLessThanOrEqual(MAX_BATCH_BYTES);
    expectMeshError(() => decodeBatch(bytes), M, /4097 frames, at most 4096/);
  });

  it('too many gossip records', () => {
    // empty signatures keep 1025 records under the batch size; the count is checked first
    const record = { body: new Uint8Array(0), signature: new Uint8Array(0) };
    const bytes = naiveBatch([naiveFrame({ kind: 'gossip', records: Array.from({ length: MAX_RECORDS_PER_GOSSIP + 1 }, () => record) })]);
    expectMeshError(() => decodeBatch(bytes), M, /1025 records, at most 1024/);
  });

  it('gossip record with a 63-byte signature', () => {
    const bytes = naiveBatch([naiveFrame({ kind: 'gossip', records: [{ body: new Uint8Array(5), signature: new Uint8Array(63) }] })]);
    expectMeshError(() => decodeBatch(bytes), M, /signature: expected 64 bytes, got 63/);
  });

  it('reset and goaway with overlong texts', () => {
    const long = 'r'.repeat(MAX_TEXT_FIELD + 1);
    expectMeshError(() => decodeBatch(naiveBatch([naiveFrame({ kind: 'reset', streamId: 1, code: 'x', message: long })])), M, /reset.message/);
    expectMeshError(() => decodeBatch(naiveBatch([naiveFrame({ kind: 'reset', streamId: 1, code: 'c'.repeat(65), message: '' })])), M, /reset.code/);
    expectMeshError(() => decodeBatch(naiveBatch([naiveFrame({ kind: 'goaway', code: 'x', message: long })])), M, /go_away.message/);
  });

  it('ping id that does not fit 53 bits', () => {
    const ping = message([{ num: 8, bytes: message([{ num: 1, varint: 2n ** 60n }]) }]);
    expectMeshError(() => decodeBatch(naiveBatch([ping])), M, /ping.id: value does not fit 53 bits/);
  });

  it('every strict prefix of a valid batch (truncated bytes)', () => {
    for (const frame of EVERY_KIND.filter((f) => f.kind !== 'data' || f.data.length < 2000)) {
      const bytes = encodeBatch([frame]);
      for (let n = 0; n < bytes.length; n++) {
        expectMeshError(() => decodeBatch(bytes.subarray(0, n)), M);
      }
    }
  });

  it('a length prefix claiming 10 GiB is refused without allocating it', () => {
    const tenGiB = 10n * 1024n ** 3n;
    // frames field (1, length-delimited) whose length says 10 GiB, followed by a few real bytes
    const outer = concat(varint((1 << 3) | 2), varint(tenGiB), new Uint8Array(16));
    const before = process.memoryUsage().arrayBuffers;
    expectMeshError(() => decodeBatch(outer), M, /batch: varint does not fit 32 bits/);
    // the same inside a frame: a data field claiming 10 GiB
    const inner = concat(varint((1 << 3) | 0), varint(1), varint((3 << 3) | 2), varint(tenGiB), new Uint8Array(8));
    expectMeshError(() => decodeBatch(naiveBatch([inner])), M, /frame\[0\]: varint does not fit 32 bits/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('a varint longer than 10 bytes and a bad wire type', () => {
    expectMeshError(() => decodeBatch(Uint8Array.from([0x08, ...new Array<number>(11).fill(0xff), 0x01])), M);
    // field 1 with wire type 7 (does not exist)
    expectMeshError(() => decodeBatch(Uint8Array.from([0x0f, 0x00])), M, /batch: field 1: wire type 7, expected 2/);
  });

  it('wire reason for malformed batches is "malformed"', () => {
    const err = expectMeshError(() => decodeBatch(new Uint8Array(0)), M);
    expect(err.wireReason).toBe('malformed');
  });
});
