/**
 * Protobuf varints for the two encoders: the hand-written stream frames (frames.ts) and the
 * schema-driven codec (proto-codec.ts). Values are non-negative integers up to 2^53 - 1, which the
 * callers have checked; `& 0x7f` is exact for them (ToInt32 keeps the low 32 bits, and 2^32 is a
 * multiple of 128).
 */

/** Bytes the varint of `value` takes. */
export function varintLength(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

/** Writes the varint of `value` at `offset` (room checked by the caller); returns the offset after it. */
export function writeVarint(out: Uint8Array, offset: number, value: number): number {
  while (value >= 0x80) {
    out[offset++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  out[offset++] = value;
  return offset;
}
