import type protobuf from 'protobufjs';
import { ErrorCodes, MeshError } from '../errors.js';

/**
 * Runs a protobufjs decode and turns whatever it throws (RangeError "index out of range", "invalid
 * wire type", …) into one typed error, so that no raw exception from a peer's bytes reaches the
 * tunnel (SPEC §2 wire).
 */
export function decodeOrThrow(type: protobuf.Type, bytes: Uint8Array, what: string): Record<string, unknown> {
  try {
    return type.decode(bytes) as unknown as Record<string, unknown>;
  } catch (err) {
    throw new MeshError(ErrorCodes.MALFORMED_FRAME, `${what}: malformed protobuf (${(err as Error).message})`, {
      cause: err,
      wireReason: 'malformed',
    });
  }
}

export function malformed(what: string, detail: string): MeshError {
  return new MeshError(ErrorCodes.MALFORMED_FRAME, `${what}: ${detail}`, { wireReason: 'malformed' });
}

interface LongLike {
  low: number;
  high: number;
  unsigned: boolean;
  toNumber(): number;
}

/** uint64 fields arrive as Long (or number); accept only values that fit a JS number exactly. */
export function uint64ToNumber(value: unknown, what: string): number {
  if (value === undefined || value === null) return 0;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw malformed(what, `expected a non-negative integer, got ${value}`);
    return value;
  }
  const long = value as LongLike;
  if (typeof long.high === 'number' && typeof long.low === 'number') {
    if (long.high >>> 0 > 0x1fffff) throw malformed(what, 'value does not fit 53 bits');
    return (long.high >>> 0) * 0x1_0000_0000 + (long.low >>> 0);
  }
  throw malformed(what, 'expected an integer');
}

export function bytesField(value: unknown, what: string, exactLength?: number, maxLength = 1 << 20): Uint8Array {
  const bytes = value instanceof Uint8Array ? value : new Uint8Array(0);
  if (exactLength !== undefined && bytes.length !== exactLength) {
    throw malformed(what, `expected ${exactLength} bytes, got ${bytes.length}`);
  }
  if (bytes.length > maxLength) throw malformed(what, `expected at most ${maxLength} bytes, got ${bytes.length}`);
  return bytes;
}

export function textField(value: unknown, what: string, maxLength: number): string {
  const text = typeof value === 'string' ? value : '';
  if (text.length > maxLength) throw malformed(what, `expected at most ${maxLength} characters, got ${text.length}`);
  return text;
}

export function textList(value: unknown, what: string, maxItems: number, maxLength: number): string[] {
  const list = Array.isArray(value) ? value : [];
  if (list.length > maxItems) throw malformed(what, `expected at most ${maxItems} entries, got ${list.length}`);
  return list.map((item, i) => textField(item, `${what}[${i}]`, maxLength));
}
