import type { MeshError } from '../errors.js';
import { malformed } from './decode-guard.js';

/** Protobuf wire types (https://protobuf.dev/programming-guides/encoding/#structure). */
export const WireType = { VARINT: 0, I64: 1, LEN: 2, I32: 5 } as const;

const TWO_POW_32 = 0x1_0000_0000;

/**
 * A bounds-checked cursor over protobuf bytes, for the hand-written decoder of the tunnel's hot
 * frames (frames.ts) and the schema-driven codec (proto-codec.ts). Every defect (a truncated
 * varint or field, a length past the end, a group or reserved wire type) raises
 * MESH_ERR_MALFORMED_FRAME naming `what`; nothing else is ever thrown, and nothing is allocated for
 * a length before it was checked against the bytes that are there.
 *
 * Stricter than protobufjs on purpose: a varint must fit 32 bits where the schema says uint32 (no
 * silent truncation), and groups are refused (proto3 has none).
 */
export class ProtoReader {
  pos: number;
  end: number;
  readonly bytes: Uint8Array;
  /** What the bytes are, for errors ("batch"). */
  readonly what: string;
  /** What the repeated entries are ("frame"): errors inside entry `item` name it as frame[item]. */
  readonly itemName: string;
  /** The entry being read, or -1 (a number, so that no name is built per entry on the hot path). */
  item = -1;
  /**
   * Where the reader is, for errors, when the caller tracks more than `what` and `item`
   * (proto-codec.ts: the path of the field being read); called only when an error is built.
   */
  location: (() => string) | undefined = undefined;

  constructor(bytes: Uint8Array, what: string, itemName = 'item') {
    this.bytes = bytes;
    this.what = what;
    this.itemName = itemName;
    this.pos = 0;
    this.end = bytes.length;
  }

  get isDone(): boolean {
    return this.pos >= this.end;
  }

  /** The next field's key: field number `key >>> 3`, wire type `key & 7`. */
  key(): number {
    const key = this.uint32();
    if (key >>> 3 === 0) throw this.malformed('field number 0');
    return key;
  }

  /** A varint that must fit 32 bits unsigned (uint32 fields, keys and lengths). */
  uint32(): number {
    const bytes = this.bytes;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) throw this.malformed('truncated varint');
      const byte = bytes[this.pos++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (value >= TWO_POW_32) break;
        return value;
      }
      scale *= 128;
    }
    throw this.malformed('varint does not fit 32 bits');
  }

  /**
   * A varint that must fit 53 bits (uint64 fields: a JavaScript number holds integers exactly up
   * to 2^53 - 1, and no value the protocol carries, milliseconds or sequence numbers, comes near).
   */
  uint53(): number {
    const bytes = this.bytes;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw this.malformed('truncated varint');
      const byte = bytes[this.pos++]!;
      value += (byte & 0x7f) * scale;
      if (value > Number.MAX_SAFE_INTEGER) throw this.malformed('value does not fit 53 bits');
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw this.malformed('varint longer than 10 bytes');
  }

  /** A varint read as a bool: true when any of its bits is set (as protobuf reads bool fields). */
  isNonZeroVarint(): boolean {
    let isNonZero = false;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw this.malformed('truncated varint');
      const byte = this.bytes[this.pos++]!;
      if ((byte & 0x7f) !== 0) isNonZero = true;
      if (byte < 0x80) return isNonZero;
    }
    throw this.malformed('varint longer than 10 bytes');
  }

  /** A length prefix; returns the end offset of the field it announces, checked against the bytes. */
  lengthEnd(): number {
    const length = this.uint32();
    if (length > this.end - this.pos) throw this.malformed(`field of ${length} bytes, only ${this.end - this.pos} left`);
    return this.pos + length;
  }

  /** Skips one field of wire type `wireType` (an unknown field, kept for forward compatibility). */
  skip(wireType: number): void {
    switch (wireType) {
      case WireType.VARINT:
        for (let i = 0; ; i++) {
          if (i === 10) throw this.malformed('varint longer than 10 bytes');
          if (this.pos >= this.end) throw this.malformed('truncated varint');
          if (this.bytes[this.pos++]! < 0x80) return;
        }
      case WireType.I64:
        return this.#advance(8);
      case WireType.LEN:
        this.pos = this.lengthEnd();
        return;
      case WireType.I32:
        return this.#advance(4);
      default:
        throw this.malformed(`wire type ${wireType} (groups and reserved types are not used)`);
    }
  }

  /** Refuses a known field that arrives with another wire type than the schema gives it. */
  expect(key: number, wireType: number): void {
    if ((key & 7) !== wireType) throw this.malformed(`field ${key >>> 3}: wire type ${key & 7}, expected ${wireType}`);
  }

  /** A MALFORMED_FRAME error naming where the reader is (the batch, or frame[n] in it). */
  malformed(detail: string): MeshError {
    if (this.location !== undefined) return malformed(this.location(), detail);
    return malformed(this.item < 0 ? this.what : `${this.itemName}[${this.item}]`, detail);
  }

  #advance(count: number): void {
    if (count > this.end - this.pos) throw this.malformed('truncated field');
    this.pos += count;
  }
}
