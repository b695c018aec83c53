import { describe, it, expect } from 'vitest';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { fromHex, toHex, utf8Bytes } from '../../../src/util/bytes.js';
import {
  Rcode,
  RecordClass,
  RecordType,
  buildQuery,
  buildResponse,
  normalizeName,
  parseHeader,
  parseMessage,
  serializeMessage,
  type DnsMessage,
  type DnsRecord,
} from '../../../src/names/index.js';

function expectMalformed(bytes: Uint8Array, pattern: RegExp): MeshError {
  let caught: unknown;
  try {
    parseMessage(bytes);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(MeshError);
  const err = caught as MeshError;
  expect(err.code).toBe(ErrorCodes.DNS_MALFORMED);
  expect(err.message).toMatch(/at offset \d+/);
  expect(err.message).toMatch(pattern);
  return err;
}

function header(id: number, flags: number, qd: number, an: number, ns = 0, ar = 0): number[] {
  const u16 = (v: number): number[] => [v >> 8, v & 0xff];
  return [...u16(id), ...u16(flags), ...u16(qd), ...u16(an), ...u16(ns), ...u16(ar)];
}

const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));

function fullResponse(): DnsMessage {
  const q = buildQuery('www.Example.test', RecordType.A, { id: 0xbeef });
  const answers: DnsRecord[] = [
    { name: 'www.Example.test', type: RecordType.CNAME, class: RecordClass.IN, ttl: 60, data: { kind: 'cname', target: 'host.Example.test' } },
    { name: 'host.Example.test', type: RecordType.A, class: RecordClass.IN, ttl: 30, data: { kind: 'a', address: '192.0.2.10' } },
    { name: 'host.Example.test', type: RecordType.AAAA, class: RecordClass.IN, ttl: 30, data: { kind: 'aaaa', address: '2001:db8::a' } },
    {
      name: 'host.Example.test',
      type: RecordType.TXT,
      class: RecordClass.IN,
      ttl: 0xffffffff,
      data: { kind: 'txt', texts: [utf8Bytes('v=1'), new Uint8Array(0), new Uint8Array(255).fill(0x41)] },
    },
    { name: 'Example.test', type: RecordType.MX, class: RecordClass.IN, ttl: 5, data: { kind: 'raw', rdata: fromHex('000a046d61696cc00c') } },
  ];
  const authorities: DnsRecord[] = [
    {
      name: 'Example.test',
      type: RecordType.SOA,
      class: RecordClass.IN,
      ttl: 3600,
      data: { kind: 'soa', mname: 'ns1.Example.test', rname: 'hostmaster.Example.test', serial: 2024010101, refresh: 7200, retry: 900, expire: 1209600, minimum: 300 },
    },
  ];
  const additionals: DnsRecord[] = [{ name: '', type: RecordType.OPT, class: 1232, ttl: 0, data: { kind: 'raw', rdata: new Uint8Array(0) } }];
  const r = buildResponse(q, { rcode: Rcode.NOERROR, answers, authorities, authoritative: true });
  r.additionals = additionals;
  return r;
}

describe('dns codec: round trips', () => {
  it('serializes a query to the RFC 1035 bytes and parses it back', () => {
    const q = buildQuery('cache.mesh', RecordType.A, { id: 0x1234 });
    const bytes = serializeMessage(q);
    expect(toHex(bytes)).toBe('123401000001000000000000' + '05' + toHex(utf8Bytes('cache')) + '04' + toHex(utf8Bytes('mesh')) + '00' + '0001' + '0001');
    const back = parseMessage(bytes);
    expect(back).toEqual(q);
    expect(back.flags.rd).toBe(true);
    expect(back.flags.qr).toBe(false);
  });

  it('round trips A, AAAA, CNAME, TXT, SOA, raw and OPT records, compressed and not', () => {
    const msg = fullResponse();
    const compressed = serializeMessage(msg);
    const plain = serializeMessage(msg, { compress: false });
    expect(parseMessage(compressed)).toEqual(msg);
    expect(parseMessage(plain)).toEqual(msg);
    expect(compressed.length).toBeLessThan(plain.length);
    // The first answer's owner name repeats the question name at offset 12: one pointer, c00c.
    const afterQuestion = 12 + 1 + 3 + 1 + 7 + 1 + 4 + 1 + 4;
    expect(toHex(compressed.subarray(afterQuestion, afterQuestion + 2))).toBe('c00c');
    // No byte of the plain form is a pointer to the question.
    expect(toHex(plain)).not.toContain('c00c0005');
  });

  it('keeps case as received and only compresses exact-case suffixes', () => {
    const msg = buildResponse(buildQuery('CaChE.mesh', RecordType.A, { id: 1 }), {
      rcode: 0,
      answers: [{ name: 'cache.mesh', type: RecordType.A, class: 1, ttl: 1, data: { kind: 'a', address: '127.77.0.9' } }],
    });
    const bytes = serializeMessage(msg);
    const back = parseMessage(bytes);
    expect(back.questions[0]!.name).toBe('CaChE.mesh');
    expect(back.answers[0]!.name).toBe('cache.mesh');
  });

  it('follows a chain of compression pointers', () => {
    // question "a.b.test", answer owner "x" + ptr→"b.test" (offset 14) written as c00e.
    const bytes = Uint8Array.from([
      ...header(7, 0x8180, 1, 1),
      1, ...ascii('a'), 1, ...ascii('b'), 4, ...ascii('test'), 0, 0, 1, 0, 1,
      1, ...ascii('x'), 0xc0, 14, 0, 1, 0, 1, 0, 0, 0, 10, 0, 4, 10, 0, 0, 1,
    ]);
    const msg = parseMessage(bytes);
    expect(msg.questions[0]).toEqual({ name: 'a.b.test', type: 1, class: 1 });
    expect(msg.answers[0]).toEqual({ name: 'x.b.test', type: 1, class: 1, ttl: 10, data: { kind: 'a', address: '10.0.0.1' } });
  });

  it('escapes dots, backslashes and non-printable bytes inside labels, losslessly', () => {
    const bytes = Uint8Array.from([...header(9, 0x0100, 1, 0), 3, 0x61, 0x2e, 0x00, 2, 0x5c, 0xff, 0, 0, 16, 0, 1]);
    const msg = parseMessage(bytes);
    expect(msg.questions[0]!.name).toBe('a\\.\\000.\\\\\\255');
    expect(serializeMessage(msg, { compress: false })).toEqual(bytes);
    expect(normalizeName('Foo.Bar.')).toBe('Foo.Bar');
  });

  it('formats AAAA addresses in RFC 5952 form', () => {
    const cases: Array<[string, string]> = [
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['::', '::'],
      ['::1', '::1'],
      ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
      ['::ffff:1.2.3.4', '::ffff:102:304'],
      ['fe80::1:0:0:1', 'fe80::1:0:0:1'],
    ];
    for (const [input, expected] of cases) {
      const msg = buildResponse(buildQuery('h', RecordType.AAAA, { id: 2 }), {
        rcode: 0,
        answers: [{ name: 'h', type: RecordType.AAAA, class: 1, ttl: 1, data: { kind: 'aaaa', address: input } }],
      });
      const back = parseMessage(serializeMessage(msg));
      expect(back.answers[0]!.data).toEqual({ kind: 'aaaa', address: expected });
    }
  });

  it('buildResponse copies id, opcode, RD and the question and sets QR', () => {
    const q = buildQuery('svc', RecordType.AAAA, { id: 0xffff, recursionDesired: true });
    const r = buildResponse(q, { rcode: Rcode.NXDOMAIN, authoritative: true });
    expect(r.id).toBe(0xffff);
    expect(r.flags).toMatchObject({ qr: true, aa: true, rd: true, ra: true, tc: false, rcode: Rcode.NXDOMAIN, opcode: 0 });
    expect(r.questions).toEqual(q.questions);
    expect(r.questions[0]).not.toBe(q.questions[0]);
    expect(parseHeader(serializeMessage(r))).toMatchObject({ id: 0xffff, qdcount: 1, ancount: 0 });
  });

  it('rejects bad values on write with INVALID_ARGUMENT naming the field', () => {
    const q = buildQuery('x'.repeat(64) + '.mesh', RecordType.A, { id: 1 });
    expect(() => serializeMessage(q)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT, message: expect.stringMatching(/label of 64 bytes/) }));
    const long = buildQuery(Array.from({ length: 5 }, () => 'a'.repeat(63)).join('.'), RecordType.A, { id: 1 });
    expect(() => serializeMessage(long)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT, message: expect.stringMatching(/over 255/) }));
    const badA = buildResponse(buildQuery('h', 1, { id: 1 }), {
      rcode: 0,
      answers: [{ name: 'h', type: 1, class: 1, ttl: 1, data: { kind: 'a', address: '1.2.3.256' } }],
    });
    expect(() => serializeMessage(badA)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
    const mismatched = buildResponse(buildQuery('h', 1, { id: 1 }), {
      rcode: 0,
      answers: [{ name: 'h', type: RecordType.AAAA, class: 1, ttl: 1, data: { kind: 'a', address: '1.2.3.4' } }],
    });
    expect(() => serializeMessage(mismatched)).toThrow(/kind 'a' needs type 1/);
    expect(() => serializeMessage({ ...q, id: 70000 })).toThrow(/id: expected an integer 0..65535/);
  });
});

describe('dns codec: malformed input', () => {
  it('truncated header', () => {
    expectMalformed(Uint8Array.from([0x12, 0x34, 0x01]), /header needs 12 bytes but only 3 remain/);
    expectMalformed(new Uint8Array(0), /header/);
  });

  it('label longer than 63 (length byte with the reserved 0x40 tag)', () => {
    const bytes = Uint8Array.from([...header(1, 0x0100, 1, 0), 64, ...new Array<number>(64).fill(0x61), 0, 0, 1, 0, 1]);
    expectMalformed(bytes, /label type 0x40/);
  });

  it('label declaring more bytes than remain', () => {
    const bytes = Uint8Array.from([...header(1, 0x0100, 1, 0), 63, ...ascii('abc'), 0, 0, 1]);
    expectMalformed(bytes, /label declares 63 bytes but only 6 remain/);
  });

  it('name longer than 255 bytes', () => {
    const labels: number[] = [];
    for (let i = 0; i < 5; i++) labels.push(63, ...new Array<number>(63).fill(0x62));
    const bytes = Uint8Array.from([...header(1, 0x0100, 1, 0), ...labels, 0, 0, 1, 0, 1]);
    expectMalformed(bytes, /name longer than 255 bytes/);
  });

  it('pointer to itself, pointer loop through a label, forward pointer', () => {
    expectMalformed(Uint8Array.from([...header(1, 0x0100, 1, 0), 0xc0, 12, 0, 1, 0, 1]), /does not point back/);
    expectMalformed(Uint8Array.from([...header(1, 0x0100, 1, 0), 1, 0x61, 0xc0, 12, 0, 1, 0, 1]), /loop or forward reference/);
    expectMalformed(Uint8Array.from([...header(1, 0x0100, 1, 0), 0xc0, 20, 0, 1, 0, 1, 0, 0, 0, 0]), /does not point back/);
    // Two names pointing at each other: the second points back at the first, which points forward.
    const loop = Uint8Array.from([
      ...header(1, 0x0100, 2, 0),
      1, 0x61, 0xc0, 19, 0, 1, 0, 1,
      1, 0x62, 0xc0, 12, 0, 1, 0, 1,
    ]);
    expectMalformed(loop, /compression pointer/);
  });

  it('counts claiming more records than there are bytes', () => {
    expectMalformed(Uint8Array.from([...header(1, 0x8180, 1, 1000), 0, 0, 1, 0, 1]), /counts claim 1 questions and 1000 records/);
    // Counts that fit the minimum but run out while reading.
    const two = Uint8Array.from([...header(1, 0x0100, 2, 0), 3, ...ascii('abc'), 0, 0, 1, 0, 1, 0]);
    expectMalformed(two, /question\[1\] type needs 2 bytes/);
  });

  it('rdlength beyond the message, wrong A length, rdata not consumed, trailing bytes', () => {
    const base = [...header(1, 0x8180, 0, 1), 0, 0, 1, 0, 1, 0, 0, 0, 5];
    expectMalformed(Uint8Array.from([...base, 0, 50, 1, 2, 3, 4]), /rdata \(rdlength 50\) needs 50 bytes but only 4 remain/);
    expectMalformed(Uint8Array.from([...base, 0, 5, 1, 2, 3, 4, 5]), /A rdata must be 4 bytes, got 5/);
    const cname = [...header(1, 0x8180, 0, 1), 0, 0, 5, 0, 1, 0, 0, 0, 5, 0, 3, 0, 9, 9];
    expectMalformed(Uint8Array.from(cname), /rdata declares 3 bytes but its fields use 1/);
    expectMalformed(Uint8Array.from([...base, 0, 4, 1, 2, 3, 4, 0xaa]), /1 bytes of trailing data/);
    const txt = [...header(1, 0x8180, 0, 1), 0, 0, 16, 0, 1, 0, 0, 0, 5, 0, 3, 9, 0x61, 0x62];
    expectMalformed(Uint8Array.from(txt), /TXT string needs 9 bytes but only 2 remain/);
  });

  it('a name inside rdata may not run past its rdlength', () => {
    const bytes = Uint8Array.from([...header(1, 0x8180, 0, 1), 0, 0, 5, 0, 1, 0, 0, 0, 5, 0, 2, 3, 0x61, 0x62, 0x63, 0]);
    expectMalformed(bytes, /CNAME target: label declares 3 bytes but only 1 remain/);
  });
});
