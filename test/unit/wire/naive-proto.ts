/**
 * A deliberately naive protobuf writer, written from proto/mesh.proto by hand, so that codec tests
 * compare the agent's encoding (proto-codec.ts, frames.ts) against an independent reading of the
 * schema (STYLE: codec round trips against a naive reference, as in js-libp2p-yamux
 * test/codec.util.ts).
 */
import type { Frame } from '../../../src/wire/index.js';

export type Field = { num: number; varint: number | bigint } | { num: number; bytes: Uint8Array };

export function varint(value: number | bigint): Uint8Array {
  let v = BigInt(value);
  if (v < 0n) throw new RangeError('naive varint: negative');
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Uint8Array.from(out);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Encodes fields in the order given: wire type 0 for varints, 2 for length-delimited. */
export function message(fields: readonly Field[]): Uint8Array {
  return concat(
    ...fields.map((f) =>
      'varint' in f ? concat(varint((f.num << 3) | 0), varint(f.varint)) : concat(varint((f.num << 3) | 2), varint(f.bytes.length), f.bytes),
    ),
  );
}

export function text(value: string): Uint8Array {
  return new TextEncoder().encode(value);
}

/** proto Frame, field numbers from mesh.proto: stream_id=1, open=2, data=3, window_update=4, … */
export function naiveFrame(frame: Frame): Uint8Array {
  const sid = (id: number): Field[] => [{ num: 1, varint: id }];
  switch (frame.kind) {
    case 'open':
      return message([
        ...sid(frame.streamId),
        { num: 2, bytes: message([{ num: 1, bytes: text(frame.service) }, { num: 2, varint: frame.port }, { num: 3, varint: frame.window }]) },
      ]);
    case 'data':
      return message([...sid(frame.streamId), { num: 3, bytes: frame.data }]);
    case 'window':
      return message([...sid(frame.streamId), { num: 4, varint: frame.credit }]);
    case 'fin':
      return message([...sid(frame.streamId), { num: 5, bytes: new Uint8Array(0) }]);
    case 'reset':
      return message([
        ...sid(frame.streamId),
        { num: 6, bytes: message([{ num: 1, bytes: text(frame.code) }, { num: 2, bytes: text(frame.message) }]) },
      ]);
    case 'accept':
      return message([...sid(frame.streamId), { num: 7, bytes: message([{ num: 1, varint: frame.window }]) }]);
    case 'ping':
      return message([{ num: 8, bytes: message([{ num: 1, varint: frame.id }]) }]);
    case 'pong':
      return message([{ num: 9, bytes: message([{ num: 1, varint: frame.id }]) }]);
    case 'gossip':
      return message([
        {
          num: 10,
          bytes: message([
            ...frame.records.map((r) => ({ num: 1, bytes: message([{ num: 1, bytes: r.body }, { num: 2, bytes: r.signature }]) })),
            ...(frame.revocations === undefined ? [] : [{ num: 2, bytes: frame.revocations }]),
          ]),
        },
      ]);
    case 'renewal':
      return message([{ num: 13, bytes: message([{ num: 1, bytes: frame.cert }]) }]);
    case 'rekey':
      return message([{ num: 11, bytes: new Uint8Array(0) }]);
    case 'goaway':
      return message([{ num: 12, bytes: message([{ num: 1, bytes: text(frame.code) }, { num: 2, bytes: text(frame.message) }]) }]);
  }
}

/** proto Batch: repeated Frame frames = 1. Takes already-encoded frames so tests can craft bad ones. */
export function naiveBatch(encodedFrames: readonly Uint8Array[]): Uint8Array {
  return message(encodedFrames.map((bytes) => ({ num: 1, bytes })));
}

/** Copies every Uint8Array (Buffer views included) into a plain Uint8Array, for deep equality. */
export function plain<T>(value: T): T {
  if (value instanceof Uint8Array) return Uint8Array.from(value) as T;
  if (Array.isArray(value)) return value.map((v) => plain(v)) as T;
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)])) as T;
  }
  return value;
}
