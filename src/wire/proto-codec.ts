import { isUtf8 } from 'node:buffer';
import { ErrorCodes, MeshError } from '../errors.js';
import { ProtoReader, WireType } from './proto-reader.js';
import { writeVarint } from './varint.js';

/**
 * A protobuf codec driven by the message descriptions in schema.ts, which proto/generate.mjs
 * generates from proto/mesh.proto. It covers what that schema uses: proto3 scalars uint32, uint64,
 * bool, string and bytes, nested messages, repeated fields (uint32 packed) and oneofs.
 *
 * Why not protobufjs at run time: it parses the .proto text when the agent starts and builds a
 * reflection tree and generated functions from it (about 1.3 MB of V8 heap, and its 340 KB of
 * source kept for the life of the process), for a dozen small messages that travel a few times a
 * minute. Without it a fresh agent holds 52.3 MB instead of 57.3 (README, Libraries and why). protobufjs stays a development dependency: it writes schema.ts, and
 * the tests check this codec's bytes against its bytes and its reading against its reading.
 *
 * Encoding writes exactly protobufjs' bytes: fields by number, proto3 scalars left out when they
 * hold their default (0, '', false, empty bytes), oneof members and nested messages written
 * whenever set, repeated uint32 packed. Decoding follows the protobuf rules (unknown fields
 * skipped, the last value of a scalar wins, the last member of a oneof wins, repeated uint32
 * accepted packed and unpacked) and is stricter than protobufjs where protobufjs would go on with a
 * wrong value: a known field with another wire type than the schema's, a uint32 varint over 32
 * bits, a uint64 over 2^53 - 1 (a JavaScript number holds no more exactly) and a string that is
 * not UTF-8 are refused. Every defect is a MeshError MESH_ERR_MALFORMED_FRAME naming what was
 * decoded; nothing is allocated for a length before it was checked against the bytes.
 */

export type ScalarType = 'uint32' | 'uint64' | 'bool' | 'string' | 'bytes';

export interface FieldSpec {
  /** The name protobufjs gives the field (lower camel case: mesh_id is meshId). */
  readonly name: string;
  /** The field's name in the .proto, when it differs from `name`; errors use it. */
  readonly protoName?: string;
  readonly number: number;
  readonly type: ScalarType | MessageSpec;
  readonly repeated?: boolean;
  /** The oneof the field belongs to; the decoded message names the member set under this key. */
  readonly oneof?: string;
}

export interface MessageSpec {
  readonly name: string;
  readonly fields: readonly FieldSpec[];
  /** fields indexed by number (holes are undefined), for the decoder. */
  readonly byNumber: readonly (FieldSpec | undefined)[];
  readonly oneofs: readonly string[];
}

/** A message spec from its fields (any order; they are kept sorted by number, the order they are written in). */
export function messageSpec(name: string, fields: readonly FieldSpec[]): MessageSpec {
  const sorted = [...fields].sort((a, b) => a.number - b.number);
  const byNumber: (FieldSpec | undefined)[] = [];
  for (const field of sorted) {
    if (!Number.isInteger(field.number) || field.number < 1 || field.number > 2047) throw new RangeError(`${name}.${field.name}: field number ${field.number} out of the supported range`);
    if (byNumber[field.number] !== undefined) throw new RangeError(`${name}: field number ${field.number} used twice`);
    if (field.repeated === true && field.oneof !== undefined) throw new RangeError(`${name}.${field.name}: a oneof member cannot be repeated`);
    byNumber[field.number] = field;
  }
  const oneofs = [...new Set(sorted.flatMap((field) => (field.oneof === undefined ? [] : [field.oneof])))];
  // a decoded message holds both under their names: the oneof's would overwrite the field's
  for (const oneof of oneofs) if (sorted.some((field) => field.name === oneof)) throw new RangeError(`${name}: oneof ${oneof} has the name of a field`);
  return { name, fields: sorted, byNumber, oneofs };
}

/** A decoded message: field name to value, and oneof name to the name of the member that is set. */
export type DecodedMessage = Record<string, unknown>;

const EMPTY_BYTES = Buffer.alloc(0);
const TWO_POW_32 = 0x1_0000_0000;

// ---- decoding -----------------------------------------------------------------------------------

/**
 * Decodes `bytes` as a `spec` message. Fields that are absent hold proto3's defaults (0, '', false,
 * empty bytes, empty lists); an absent nested message, oneof member or oneof is undefined.
 */
export function decodeMessage(spec: MessageSpec, bytes: Uint8Array, what: string): DecodedMessage {
  const reader = new ProtoReader(bytes, what);
  const path: FieldPath = [];
  // errors name the field being read: "certificate.expires_at_ms", "join response.accepted.members[2].signature"
  reader.location = () => what + path.map((part) => (typeof part === 'number' ? `[${part}]` : `.${part}`)).join('');
  return readFields(reader, spec, bytes.length, path);
}

/** The fields (and entries of repeated ones) being read, outermost first. */
type FieldPath = (string | number)[];

function defaults(spec: MessageSpec): DecodedMessage {
  const out: DecodedMessage = {};
  for (const field of spec.fields) {
    if (field.repeated === true) out[field.name] = [];
    else if (field.oneof !== undefined || typeof field.type !== 'string') out[field.name] = undefined;
    else out[field.name] = defaultOf(field.type);
  }
  for (const oneof of spec.oneofs) out[oneof] = undefined;
  return out;
}

function defaultOf(type: ScalarType): unknown {
  switch (type) {
    case 'uint32':
    case 'uint64':
      return 0;
    case 'bool':
      return false;
    case 'string':
      return '';
    case 'bytes':
      return EMPTY_BYTES;
  }
}

function readFields(reader: ProtoReader, spec: MessageSpec, end: number, path: FieldPath): DecodedMessage {
  const out = defaults(spec);
  const outerEnd = reader.end;
  reader.end = end;
  while (!reader.isDone) {
    const key = reader.key();
    const field = spec.byNumber[key >>> 3];
    if (field === undefined) {
      reader.skip(key & 7);
      continue;
    }
    path.push(field.protoName ?? field.name);
    if (field.repeated === true) {
      const list = out[field.name] as unknown[];
      if (field.type === 'uint32' && (key & 7) === WireType.LEN) {
        const packedEnd = reader.lengthEnd();
        while (reader.pos < packedEnd) {
          path.push(list.length);
          list.push(readUint32Within(reader, packedEnd));
          path.pop();
        }
      } else {
        path.push(list.length);
        list.push(readValue(reader, key, field, path));
        path.pop();
      }
      path.pop();
      continue;
    }
    out[field.name] = readValue(reader, key, field, path);
    path.pop();
    if (field.oneof !== undefined) {
      const previous = out[field.oneof] as string | undefined;
      if (previous !== undefined && previous !== field.name) out[previous] = undefined;
      out[field.oneof] = field.name;
    }
  }
  reader.end = outerEnd;
  return out;
}

function readValue(reader: ProtoReader, key: number, field: FieldSpec, path: FieldPath): unknown {
  const type = field.type;
  switch (type) {
    case 'uint32':
      reader.expect(key, WireType.VARINT);
      return reader.uint32();
    case 'uint64':
      reader.expect(key, WireType.VARINT);
      return reader.uint53();
    case 'bool':
      reader.expect(key, WireType.VARINT);
      return reader.isNonZeroVarint();
    case 'string': {
      reader.expect(key, WireType.LEN);
      const bytes = readLengthDelimited(reader);
      if (!isUtf8(bytes)) throw reader.malformed('not valid UTF-8');
      return bytes.toString('utf8');
    }
    case 'bytes':
      reader.expect(key, WireType.LEN);
      return readLengthDelimited(reader);
    default:
      reader.expect(key, WireType.LEN);
      return readFields(reader, type, reader.lengthEnd(), path);
  }
}

/** A packed entry: a uint32 varint that must end before `end` (the packed field's end). */
function readUint32Within(reader: ProtoReader, end: number): number {
  const outerEnd = reader.end;
  reader.end = end;
  try {
    return reader.uint32();
  } finally {
    reader.end = outerEnd;
  }
}

/** The next length-delimited field's content, as a Buffer over the same memory (not a copy). */
function readLengthDelimited(reader: ProtoReader): Buffer {
  const end = reader.lengthEnd();
  const start = reader.pos;
  reader.pos = end;
  if (end === start) return EMPTY_BYTES;
  return Buffer.from(reader.bytes.buffer, reader.bytes.byteOffset + start, end - start);
}

// ---- encoding -----------------------------------------------------------------------------------

/**
 * Encodes `value` as a `spec` message. A value of the wrong type (a negative or fractional number,
 * a uint32 over 2^32 - 1, a string where bytes belong) is a MESH_ERR_INVALID_ARGUMENT naming the
 * field: these objects come from the agent itself, so that is a bug to report, not to write.
 */
export function encodeMessage(spec: MessageSpec, value: object): Uint8Array {
  const writer = new ByteWriter();
  writeFields(writer, spec, value as Readonly<Record<string, unknown>>);
  return writer.finish();
}

function writeFields(writer: ByteWriter, spec: MessageSpec, value: Readonly<Record<string, unknown>>): void {
  for (const field of spec.fields) {
    const item = value[field.name];
    if (item === undefined || item === null) continue;
    if (field.repeated === true) {
      if (!Array.isArray(item)) throw badValue(spec, field, 'a list', item);
      if (item.length === 0) continue;
      if (field.type === 'uint32') {
        const packed = new ByteWriter();
        for (const entry of item) packed.varint(checkUint32(spec, field, entry));
        writer.key(field.number, WireType.LEN);
        writer.lengthDelimited(packed.finish());
      } else {
        for (const entry of item) writeValue(writer, spec, field, entry);
      }
      continue;
    }
    // proto3: a scalar outside a oneof holding its default is not written (protobufjs does the same)
    if (field.oneof === undefined && typeof field.type === 'string' && isDefault(field.type, item)) continue;
    writeValue(writer, spec, field, item);
  }
}

function isDefault(type: ScalarType, value: unknown): boolean {
  switch (type) {
    case 'uint32':
    case 'uint64':
      return value === 0;
    case 'bool':
      return value === false;
    case 'string':
      return value === '';
    case 'bytes':
      return value instanceof Uint8Array && value.length === 0;
  }
}

function writeValue(writer: ByteWriter, spec: MessageSpec, field: FieldSpec, value: unknown): void {
  const type = field.type;
  switch (type) {
    case 'uint32':
      writer.key(field.number, WireType.VARINT);
      writer.varint(checkUint32(spec, field, value));
      return;
    case 'uint64':
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw badValue(spec, field, 'an integer in 0..2^53-1', value);
      writer.key(field.number, WireType.VARINT);
      writer.varint(value);
      return;
    case 'bool':
      if (typeof value !== 'boolean') throw badValue(spec, field, 'a boolean', value);
      writer.key(field.number, WireType.VARINT);
      writer.varint(value ? 1 : 0);
      return;
    case 'string':
      if (typeof value !== 'string') throw badValue(spec, field, 'a string', value);
      writer.key(field.number, WireType.LEN);
      writer.lengthDelimited(Buffer.from(value, 'utf8'));
      return;
    case 'bytes':
      if (!(value instanceof Uint8Array)) throw badValue(spec, field, 'bytes', value);
      writer.key(field.number, WireType.LEN);
      writer.lengthDelimited(value);
      return;
    default: {
      if (typeof value !== 'object' || value === null || value instanceof Uint8Array) throw badValue(spec, field, `a ${type.name} message`, value);
      const nested = new ByteWriter();
      writeFields(nested, type, value as Record<string, unknown>);
      writer.key(field.number, WireType.LEN);
      writer.lengthDelimited(nested.finish());
    }
  }
}

function checkUint32(spec: MessageSpec, field: FieldSpec, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= TWO_POW_32) throw badValue(spec, field, 'an integer in 0..2^32-1', value);
  return value;
}

function badValue(spec: MessageSpec, field: FieldSpec, expected: string, got: unknown): MeshError {
  const shown = got instanceof Uint8Array ? `${got.length} bytes` : typeof got === 'string' ? `a string` : String(got);
  return new MeshError(ErrorCodes.INVALID_ARGUMENT, `encode ${spec.name}.${field.protoName ?? field.name}: expected ${expected}, got ${shown}`);
}

/** Appends protobuf's pieces to a buffer that doubles when full. */
class ByteWriter {
  #buffer = Buffer.allocUnsafe(64);
  #length = 0;

  key(number: number, wireType: number): void {
    this.varint(number * 8 + wireType);
  }

  /** A varint of a non-negative integer up to 2^53 - 1 (callers have checked it). */
  varint(value: number): void {
    this.#reserve(10);
    this.#length = writeVarint(this.#buffer, this.#length, value);
  }

  lengthDelimited(bytes: Uint8Array): void {
    this.varint(bytes.length);
    this.#reserve(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  /** The bytes written, in a buffer of their own size. */
  finish(): Uint8Array {
    return Buffer.from(this.#buffer.subarray(0, this.#length));
  }

  #reserve(count: number): void {
    if (this.#length + count <= this.#buffer.length) return;
    let size = this.#buffer.length * 2;
    while (size < this.#length + count) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
  }
}
