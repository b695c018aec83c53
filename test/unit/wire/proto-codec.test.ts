import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { decodeMessage, encodeMessage, messageSpec, type FieldSpec, type MessageSpec, type ScalarType } from '../../../src/wire/proto-codec.js';
import { WireTypes } from '../../../src/wire/schema.js';
import { generateSchema } from '../../../proto/generate.mjs';
import { PROTO_PATH, ReferenceTypes, referenceDecode, referenceEncode } from './protobufjs-reference.js';
import { concat, message, varint } from './naive-proto.js';
import { expectMeshError } from '../../helpers/mesh-error.js';

/**
 * The agent's protobuf codec (src/wire/proto-codec.ts over the generated src/wire/schema.ts)
 * against protobufjs reading proto/mesh.proto: the same bytes for every message the schema has,
 * the same reading of protobufjs' bytes, and, for bytes changed at random, nothing accepted that
 * protobufjs would refuse or read otherwise.
 */

const SPECS = WireTypes as unknown as Record<string, MessageSpec>;
const NAMES = Object.keys(SPECS);

describe('schema.ts is generated from proto/mesh.proto', () => {
  it('is what proto/generate.mjs writes now (run `node proto/generate.mjs` after changing the .proto)', () => {
    const current = readFileSync(new URL('../../../src/wire/schema.ts', import.meta.url), 'utf8');
    expect(current).toBe(generateSchema(readFileSync(PROTO_PATH, 'utf8')));
  });

  it('has every message of the .proto, each field with protobufjs’ name, number, type, rule and oneof', () => {
    expect(NAMES.sort()).toEqual(Object.keys(ReferenceTypes).sort());
    for (const name of NAMES) {
      const reference = ReferenceTypes[name]!;
      const ours = SPECS[name]!.fields.map((f) => [f.name, f.number, typeof f.type === 'string' ? f.type : f.type.name, f.repeated === true, f.oneof ?? null]);
      const theirs = [...reference.fieldsArray]
        .sort((a, b) => a.id - b.id)
        .map((f) => [f.name, f.id, f.resolvedType !== null ? f.resolvedType.name : f.type, f.repeated, f.partOf?.name ?? null]);
      expect(ours, name).toEqual(theirs);
    }
  });

  it('refuses what the codec does not implement, naming it', () => {
    const head = 'syntax = "proto3";\npackage t;\n';
    expect(() => generateSchema(`${head}message A { int32 x = 1; }`)).toThrow(/A\.x: type int32 is not supported/);
    expect(() => generateSchema(`${head}enum E { Z = 0; }`)).toThrow(/enums are not supported/);
    expect(() => generateSchema(`${head}message A { map<string, uint32> m = 1; }`)).toThrow(/map fields are not supported/);
    expect(() => generateSchema(`${head}message A { A self = 1; }`)).toThrow(/recursive messages are not supported/);
  });
});

// ---- generated messages -------------------------------------------------------------------------

const uint64Arb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 300 }), fc.maxSafeNat());
const uint32Arb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 0xffff_ffff }));
const textArb = fc.oneof(fc.constant(''), fc.string({ maxLength: 20 }), fc.string({ unit: 'grapheme', maxLength: 8 }));
const bytesArb = fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ minLength: 1, maxLength: 40 }));

function scalarArb(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case 'uint32':
      return uint32Arb;
    case 'uint64':
      return uint64Arb;
    case 'bool':
      return fc.boolean();
    case 'string':
      return textArb;
    case 'bytes':
      return bytesArb;
  }
}

/** Any valid value of a message: every field present or absent, at most one member of each oneof. */
function messageArb(spec: MessageSpec, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const valueOf = (field: FieldSpec): fc.Arbitrary<unknown> => {
    const one = typeof field.type === 'string' ? scalarArb(field.type) : messageArb(field.type, depth + 1);
    return field.repeated === true ? fc.array(one, { maxLength: depth === 0 ? 4 : 2 }) : one;
  };
  const plainFields = spec.fields.filter((f) => f.oneof === undefined);
  const record: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of plainFields) record[field.name] = valueOf(field);
  const base = fc.record(record, { requiredKeys: [] });
  const oneofs = spec.oneofs.map((oneof) => {
    const members = spec.fields.filter((f) => f.oneof === oneof);
    return fc.option(fc.oneof(...members.map((m) => valueOf(m).map((v) => [m.name, v] as const))), { nil: undefined });
  });
  return fc.tuple(base, ...oneofs).map(([fields, ...chosen]) => {
    const out: Record<string, unknown> = { ...fields };
    for (const member of chosen) if (member !== undefined) out[member[0]] = member[1];
    return out;
  });
}

/** A decoded message as comparable data: bytes as hex, absent (undefined or null) as undefined. */
function comparable(value: unknown): unknown {
  if (value instanceof Uint8Array) return `hex:${Buffer.from(value).toString('hex')}`;
  if (Array.isArray(value)) return value.map(comparable);
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const c = comparable(v);
      if (c !== undefined) out[k] = c;
    }
    return out;
  }
  return value;
}

/** What a decoder should give back for an encoded value: the value with proto3's defaults filled in. */
function withDefaults(spec: MessageSpec, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of spec.fields) {
    const v = value[field.name];
    const nested = (x: unknown): unknown => (typeof field.type === 'string' ? x : withDefaults(field.type, x as Record<string, unknown>));
    if (field.repeated === true) out[field.name] = ((v as unknown[] | undefined) ?? []).map(nested);
    else if (v !== undefined) out[field.name] = nested(v);
    else if (field.oneof === undefined && typeof field.type === 'string') out[field.name] = { uint32: 0, uint64: 0, bool: false, string: '', bytes: new Uint8Array(0) }[field.type];
  }
  for (const oneof of spec.oneofs) {
    const set = spec.fields.find((f) => f.oneof === oneof && value[f.name] !== undefined);
    if (set !== undefined) out[oneof] = set.name;
  }
  return out;
}

describe('proto-codec against protobufjs, every message of the schema', () => {
  for (const name of NAMES) {
    const spec = SPECS[name]!;
    it(`${name}: the same bytes, and each side reads the other's bytes back as the value`, () => {
      let checked = 0;
      fc.assert(
        fc.property(messageArb(spec), (value) => {
          const ours = encodeMessage(spec, value);
          expect(Buffer.from(ours).toString('hex')).toBe(Buffer.from(referenceEncode(name, value)).toString('hex'));
          const expected = comparable(withDefaults(spec, value));
          expect(comparable(decodeMessage(spec, ours, name))).toEqual(expected);
          expect(comparable(referenceDecode(name, ours))).toEqual(expected);
          checked++;
        }),
        { seed: 0x0c0dec + name.length, numRuns: 300 },
      );
      expect(checked).toBe(300);
    });

    it(`${name}: changed bytes are refused with MALFORMED_FRAME, or read as protobufjs reads them`, () => {
      const mutated = fc
        .tuple(messageArb(spec), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), fc.oneof(fc.constant(0), fc.nat({ max: 4 })))
        .map(([value, edits, cut]) => {
          const bytes = Uint8Array.from(encodeMessage(spec, value));
          if (bytes.length === 0) return Uint8Array.from(edits.map(([, b]) => b));
          for (const [at, b] of edits) bytes[at % bytes.length] = b;
          return bytes.subarray(0, Math.max(0, bytes.length - cut));
        });
      const counts = { accepted: 0, refused: 0 };
      fc.assert(
        fc.property(mutated, (bytes) => {
          let ours: Record<string, unknown>;
          try {
            ours = decodeMessage(spec, bytes, name);
          } catch (err) {
            expect(err).toBeInstanceOf(MeshError);
            expect((err as MeshError).code).toBe(ErrorCodes.MALFORMED_FRAME);
            counts.refused++;
            return;
          }
          counts.accepted++;
          expect(comparable(ours)).toEqual(comparable(referenceDecode(name, bytes)));
        }),
        { seed: 0x0c0ded + name.length, numRuns: 400 },
      );
      // both outcomes happen for every message (seeded: 9-112 accepted of 400 when written)
      expect(counts.accepted + counts.refused).toBe(400);
      expect(counts.accepted).toBeGreaterThanOrEqual(5);
      expect(counts.refused).toBeGreaterThanOrEqual(5);
    });
  }
});

// ---- the rules, one by one ----------------------------------------------------------------------

const TestMessage = messageSpec('TestMessage', [
  { name: 'count', number: 1, type: 'uint32' },
  { name: 'stamp', number: 2, type: 'uint64' },
  { name: 'flag', number: 3, type: 'bool' },
  { name: 'text', number: 4, type: 'string' },
  { name: 'blob', number: 5, type: 'bytes' },
  { name: 'ports', number: 6, type: 'uint32', repeated: true },
  { name: 'small', number: 7, type: 'uint32', oneof: 'choice' },
  { name: 'words', number: 8, type: 'string', oneof: 'choice' },
]);

function decodeTest(...fields: Parameters<typeof message>[0]): Record<string, unknown> {
  return decodeMessage(TestMessage, message(fields), 'test message');
}

describe('proto-codec rules', () => {
  it('absent fields hold proto3 defaults; an absent oneof is undefined', () => {
    const decoded = decodeMessage(TestMessage, new Uint8Array(0), 'empty');
    expect(comparable(decoded)).toEqual({ count: 0, stamp: 0, flag: false, text: '', blob: 'hex:', ports: [] });
    expect(decoded['choice']).toBeUndefined();
  });

  it('defaults are not written, oneof members are written even when 0 or empty', () => {
    expect(encodeMessage(TestMessage, { count: 0, stamp: 0, flag: false, text: '', blob: new Uint8Array(0), ports: [] }).length).toBe(0);
    expect(Buffer.from(encodeMessage(TestMessage, { small: 0 })).toString('hex')).toBe('3800');
    expect(Buffer.from(encodeMessage(TestMessage, { words: '' })).toString('hex')).toBe('4200');
  });

  it('fields are written by number whatever the order of the object', () => {
    expect(Buffer.from(encodeMessage(TestMessage, { text: 'a', count: 1 })).toString('hex')).toBe('0801' + '220161');
  });

  it('unknown fields of every wire type are skipped', () => {
    const unknown = concat(varint((20 << 3) | 0), varint(5), varint((21 << 3) | 1), new Uint8Array(8), varint((22 << 3) | 5), new Uint8Array(4), message([{ num: 23, bytes: Uint8Array.from([1, 2]) }]));
    expect(decodeMessage(TestMessage, concat(unknown, message([{ num: 1, varint: 7 }])), 't')['count']).toBe(7);
  });

  it('the last value of a scalar wins; the last member of a oneof wins and clears the other', () => {
    expect(decodeTest({ num: 1, varint: 1 }, { num: 1, varint: 2 })['count']).toBe(2);
    const decoded = decodeTest({ num: 8, bytes: Buffer.from('x') }, { num: 7, varint: 9 });
    expect(decoded['choice']).toBe('small');
    expect(decoded['small']).toBe(9);
    expect(decoded['words']).toBeUndefined();
  });

  it('repeated uint32 reads packed and unpacked entries, in order', () => {
    const packed = concat(varint(1), varint(300), varint(0xffff_ffff));
    expect(decodeTest({ num: 6, varint: 5 }, { num: 6, bytes: packed }, { num: 6, varint: 6 })['ports']).toEqual([5, 1, 300, 0xffff_ffff, 6]);
  });

  it('uint64 up to 2^53 - 1 reads exactly; above is refused', () => {
    expect(decodeTest({ num: 2, varint: BigInt(Number.MAX_SAFE_INTEGER) })['stamp']).toBe(Number.MAX_SAFE_INTEGER);
    expectMeshError(() => decodeTest({ num: 2, varint: 2n ** 53n }), ErrorCodes.MALFORMED_FRAME, /test message\.stamp: value does not fit 53 bits/);
    expectMeshError(() => decodeTest({ num: 2, varint: 2n ** 64n - 1n }), ErrorCodes.MALFORMED_FRAME, /fit 53 bits/);
  });

  it('a uint32 over 32 bits is refused, not truncated as protobufjs would', () => {
    expectMeshError(() => decodeTest({ num: 1, varint: 2n ** 32n }), ErrorCodes.MALFORMED_FRAME, /varint does not fit 32 bits/);
    const packed = concat(varint(1), varint(2n ** 32n));
    expectMeshError(() => decodeTest({ num: 6, bytes: packed }), ErrorCodes.MALFORMED_FRAME, /does not fit 32 bits/);
  });

  it('a packed entry cut at the end of its field is refused', () => {
    expectMeshError(() => decodeMessage(TestMessage, Uint8Array.from([0x32, 0x01, 0x80, 0x01]), 't'), ErrorCodes.MALFORMED_FRAME, /truncated varint/);
  });

  it('errors name the path of the field, entries of repeated fields by index', () => {
    const Outer = messageSpec('Outer', [{ name: 'inner', number: 1, type: TestMessage, repeated: true }]);
    const badSecond = concat(message([{ num: 1, bytes: message([{ num: 1, varint: 1 }]) }]), message([{ num: 1, bytes: message([{ num: 6, bytes: concat(varint(1), varint(2n ** 33n)) }]) }]));
    expectMeshError(() => decodeMessage(Outer, badSecond, 'outer'), ErrorCodes.MALFORMED_FRAME, /^outer\.inner\[1\]\.ports\[1\]: varint does not fit 32 bits$/);
    expectMeshError(() => decodeMessage(WireTypes.NodeCertBody as MessageSpec, message([{ num: 10, varint: 2n ** 60n }]), 'certificate'), ErrorCodes.MALFORMED_FRAME, /^certificate\.expires_at_ms: /);
  });

  it('bool reads any non-zero varint as true', () => {
    expect(decodeTest({ num: 3, varint: 2n ** 40n })['flag']).toBe(true);
    expect(decodeTest({ num: 3, varint: 0 })['flag']).toBe(false);
  });

  it('a known field with another wire type is refused', () => {
    expectMeshError(() => decodeTest({ num: 1, bytes: Uint8Array.from([1]) }), ErrorCodes.MALFORMED_FRAME, /field 1: wire type 2, expected 0/);
    expectMeshError(() => decodeTest({ num: 4, varint: 1 }), ErrorCodes.MALFORMED_FRAME, /field 4: wire type 0, expected 2/);
  });

  it('a string that is not UTF-8 is refused, naming the field', () => {
    expectMeshError(() => decodeTest({ num: 4, bytes: Uint8Array.from([0xc3, 0x28]) }), ErrorCodes.MALFORMED_FRAME, /test message\.text: not valid UTF-8/);
  });

  it('a length past the end, a truncated key, groups and field number 0 are refused', () => {
    expectMeshError(() => decodeMessage(TestMessage, Uint8Array.from([0x2a, 0x05, 1, 2]), 't'), ErrorCodes.MALFORMED_FRAME, /field of 5 bytes, only 2 left/);
    expectMeshError(() => decodeMessage(TestMessage, Uint8Array.from([0x80]), 't'), ErrorCodes.MALFORMED_FRAME, /truncated varint/);
    expectMeshError(() => decodeMessage(TestMessage, Uint8Array.from([(15 << 3) | 3]), 't'), ErrorCodes.MALFORMED_FRAME, /t: wire type 3 \(groups/);
    expectMeshError(() => decodeMessage(TestMessage, Uint8Array.from([0x00, 0x00]), 't'), ErrorCodes.MALFORMED_FRAME, /field number 0/);
  });

  it('bytes and strings decode as views of the input, not copies', () => {
    const input = message([{ num: 5, bytes: Uint8Array.from([9, 8, 7]) }]);
    const blob = decodeMessage(TestMessage, input, 't')['blob'] as Buffer;
    expect([...blob]).toEqual([9, 8, 7]);
    expect(blob.buffer).toBe(input.buffer);
  });

  it('a value of the wrong type is an INVALID_ARGUMENT naming the field, not bytes on the wire', () => {
    expectMeshError(() => encodeMessage(TestMessage, { count: -1 }), ErrorCodes.INVALID_ARGUMENT, /encode TestMessage\.count: expected an integer in 0\.\.2\^32-1, got -1/);
    expectMeshError(() => encodeMessage(TestMessage, { count: 2 ** 32 }), ErrorCodes.INVALID_ARGUMENT, /TestMessage\.count/);
    expectMeshError(() => encodeMessage(TestMessage, { stamp: 1.5 }), ErrorCodes.INVALID_ARGUMENT, /TestMessage\.stamp: expected an integer in 0\.\.2\^53-1/);
    expectMeshError(() => encodeMessage(TestMessage, { blob: 'text' }), ErrorCodes.INVALID_ARGUMENT, /TestMessage\.blob: expected bytes, got a string/);
    expectMeshError(() => encodeMessage(TestMessage, { ports: [1, -2] }), ErrorCodes.INVALID_ARGUMENT, /TestMessage\.ports/);
    expectMeshError(() => encodeMessage(TestMessage, { flag: 1 }), ErrorCodes.INVALID_ARGUMENT, /TestMessage\.flag: expected a boolean/);
  });

  it('message specs refuse a field number used twice or out of range, a repeated oneof member, a oneof named like a field', () => {
    expect(() => messageSpec('M', [{ name: 'a', number: 1, type: 'bool' }, { name: 'b', number: 1, type: 'bool' }])).toThrow(/used twice/);
    expect(() => messageSpec('M', [{ name: 'a', number: 0, type: 'bool' }])).toThrow(/out of the supported range/);
    expect(() => messageSpec('M', [{ name: 'a', number: 1, type: 'bool', repeated: true, oneof: 'o' }])).toThrow(/cannot be repeated/);
    expect(() => messageSpec('M', [{ name: 'a', number: 1, type: 'bool', oneof: 'b' }, { name: 'b', number: 2, type: 'bool' }])).toThrow(/oneof b has the name of a field/);
  });
});
