import { ErrorCodes, MeshError } from '../errors.js';

/**
 * The checks the typed decoders (messages.ts, frames.ts) apply to what proto-codec.ts decoded: each
 * turns a field that breaks the protocol's rules into one typed error naming the field.
 */

export function malformed(what: string, detail: string): MeshError {
  return new MeshError(ErrorCodes.MALFORMED_FRAME, `${what}: ${detail}`, { wireReason: 'malformed' });
}

/** A uint64 field's value (proto-codec.ts has refused any over 2^53 - 1); anything else is malformed. */
export function uint64ToNumber(value: unknown, what: string): number {
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw malformed(what, `expected a non-negative integer, got ${String(value)}`);
  return value;
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
