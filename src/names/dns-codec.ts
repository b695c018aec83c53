/**
 * DNS message codec (RFC 1035 §4, with the RFC 3596 AAAA type). Pure: no I/O, no state.
 *
 * Parsing never throws anything but `MeshError(DNS_MALFORMED)`, naming the offset and what was
 * wrong: the server feeds it bytes from anyone on the host and from upstream resolvers. Every length
 * declared in the packet (section counts, RDLENGTH, label lengths, character-string lengths) is
 * checked against the bytes that remain before anything is read or allocated.
 *
 * Names are kept in presentation form without the trailing dot ('' is the root). Label bytes that
 * are not printable ASCII, and '.' or '\' inside a label, are escaped as in RFC 1035 §5.1 (`\DDD`,
 * `\.`) so that parse → serialize is lossless. Case is kept as received (resolvers may use 0x20
 * case randomisation and expect it echoed).
 */
import { MeshError, ErrorCodes } from '../errors.js';

export const DNS_HEADER_BYTES = 12;
/** Largest DNS message on any transport (TCP frames carry a 16-bit length, RFC 1035 §4.2.2). */
export const DNS_MAX_MESSAGE_BYTES = 65535;
/** Largest UDP answer a client without EDNS accepts (RFC 1035 §4.2.1). */
export const DNS_CLASSIC_UDP_BYTES = 512;
export const DNS_MAX_LABEL_BYTES = 63;
/** Wire length of a name, length octets and the final zero included (RFC 1035 §3.1). */
export const DNS_MAX_NAME_BYTES = 255;
/** 255 bytes hold at most 127 one-byte labels plus the root. */
export const DNS_MAX_LABELS = 127;

export const RecordType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  OPT: 41,
  ANY: 255,
} as const;

export const RecordClass = { IN: 1, CH: 3, ANY: 255 } as const;

export const Opcode = { QUERY: 0, IQUERY: 1, STATUS: 2, NOTIFY: 4, UPDATE: 5 } as const;

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

export interface DnsFlags {
  /** true in a response. */
  qr: boolean;
  opcode: number;
  /** Authoritative answer. */
  aa: boolean;
  /** Truncated: the client should retry over TCP. */
  tc: boolean;
  /** Recursion desired. */
  rd: boolean;
  /** Recursion available. */
  ra: boolean;
  /** The reserved bit; kept so that parse → serialize is lossless. */
  z: boolean;
  /** Authentic data (RFC 4035). */
  ad: boolean;
  /** Checking disabled (RFC 4035). */
  cd: boolean;
  rcode: number;
}

export interface DnsHeader {
  id: number;
  flags: DnsFlags;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
}

export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
}

export interface SoaData {
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

/**
 * Decoded RDATA. `kind` is separate from the record's numeric `type` so that TypeScript can narrow
 * it; any type this codec does not decode is `raw` and written back byte for byte.
 */
export type RecordData =
  | { kind: 'a'; address: string }
  | { kind: 'aaaa'; address: string }
  | { kind: 'cname'; target: string }
  | ({ kind: 'soa' } & SoaData)
  | { kind: 'txt'; texts: Uint8Array[] }
  | { kind: 'raw'; rdata: Uint8Array };

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  /** Unsigned 32-bit, as on the wire. */
  ttl: number;
  data: RecordData;
}

export interface DnsMessage {
  id: number;
  flags: DnsFlags;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

export interface SerializeOptions {
  /** Compress owner names and CNAME/SOA names with pointers (RFC 1035 §4.1.4). Default true. */
  compress?: boolean;
}

// ---------------------------------------------------------------------------------------------
// errors

function malformed(offset: number, what: string): MeshError {
  return new MeshError(ErrorCodes.DNS_MALFORMED, `dns message: ${what} (at offset ${offset})`);
}

function invalid(field: string, what: string): MeshError {
  return new MeshError(ErrorCodes.INVALID_ARGUMENT, `dns ${field}: ${what}`);
}

// ---------------------------------------------------------------------------------------------
// reading

class Reader {
  offset = 0;
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  remaining(): number {
    return this.bytes.length - this.offset;
  }

  need(count: number, what: string, end = this.bytes.length): void {
    if (this.offset + count > end) {
      throw malformed(this.offset, `${what} needs ${count} bytes but only ${Math.max(0, end - this.offset)} remain`);
    }
  }

  u8(what: string, end?: number): number {
    this.need(1, what, end);
    return this.bytes[this.offset++]!;
  }

  u16(what: string, end?: number): number {
    this.need(2, what, end);
    const v = (this.bytes[this.offset]! << 8) | this.bytes[this.offset + 1]!;
    this.offset += 2;
    return v;
  }

  u32(what: string, end?: number): number {
    this.need(4, what, end);
    const b = this.bytes;
    const o = this.offset;
    const v = ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
    this.offset += 4;
    return v;
  }

  take(count: number, what: string, end?: number): Uint8Array {
    this.need(count, what, end);
    const out = this.bytes.slice(this.offset, this.offset + count);
    this.offset += count;
    return out;
  }
}

function decodeFlags(word: number): DnsFlags {
  return {
    qr: (word & 0x8000) !== 0,
    opcode: (word >>> 11) & 0x0f,
    aa: (word & 0x0400) !== 0,
    tc: (word & 0x0200) !== 0,
    rd: (word & 0x0100) !== 0,
    ra: (word & 0x0080) !== 0,
    z: (word & 0x0040) !== 0,
    ad: (word & 0x0020) !== 0,
    cd: (word & 0x0010) !== 0,
    rcode: word & 0x000f,
  };
}

function encodeFlags(flags: DnsFlags): number {
  if (!Number.isInteger(flags.opcode) || flags.opcode < 0 || flags.opcode > 15) {
    throw invalid('flags.opcode', `expected an integer 0..15, got ${flags.opcode}`);
  }
  if (!Number.isInteger(flags.rcode) || flags.rcode < 0 || flags.rcode > 15) {
    throw invalid('flags.rcode', `expected an integer 0..15, got ${flags.rcode}`);
  }
  return (
    (flags.qr ? 0x8000 : 0) |
    (flags.opcode << 11) |
    (flags.aa ? 0x0400 : 0) |
    (flags.tc ? 0x0200 : 0) |
    (flags.rd ? 0x0100 : 0) |
    (flags.ra ? 0x0080 : 0) |
    (flags.z ? 0x0040 : 0) |
    (flags.ad ? 0x0020 : 0) |
    (flags.cd ? 0x0010 : 0) |
    flags.rcode
  );
}

/** Reads the fixed 12-byte header only; lets the server answer FORMERR when the rest is broken. */
export function parseHeader(bytes: Uint8Array): DnsHeader {
  const r = new Reader(bytes);
  r.need(DNS_HEADER_BYTES, 'header');
  const id = r.u16('header id');
  const flags = decodeFlags(r.u16('header flags'));
  return {
    id,
    flags,
    qdcount: r.u16('qdcount'),
    ancount: r.u16('ancount'),
    nscount: r.u16('nscount'),
    arcount: r.u16('arcount'),
  };
}

function escapeLabel(bytes: Uint8Array, start: number, length: number): string {
  let out = '';
  for (let i = start; i < start + length; i++) {
    const c = bytes[i]!;
    if (c === 0x2e || c === 0x5c) out += `\\${String.fromCharCode(c)}`;
    else if (c < 0x21 || c > 0x7e) out += `\\${c.toString().padStart(3, '0')}`;
    else out += String.fromCharCode(c);
  }
  return out;
}

/**
 * Reads a possibly compressed name at `r.offset`, leaving `r.offset` just past it. Only the labels
 * before the first pointer are bounded by `end` (the RDATA end); a pointer may reach back anywhere
 * earlier in the message. Each pointer must target an offset below the start of the label run it
 * ends, so the runs start at strictly decreasing offsets and no loop is possible.
 */
function readName(r: Reader, what: string, end = r.bytes.length): string {
  const bytes = r.bytes;
  const nameStart = r.offset;
  let pos = r.offset;
  let runStart = r.offset;
  let runEnd = end;
  let resumeAt = -1;
  let wireBytes = 1; // the terminating zero
  const labels: string[] = [];
  for (;;) {
    if (pos >= runEnd) throw malformed(pos, `${what}: name starting at ${nameStart} runs past the end of its data`);
    const len = bytes[pos]!;
    const tag = len & 0xc0;
    if (tag === 0xc0) {
      if (pos + 1 >= runEnd) throw malformed(pos, `${what}: compression pointer cut short`);
      const target = ((len & 0x3f) << 8) | bytes[pos + 1]!;
      if (target >= runStart) {
        throw malformed(pos, `${what}: compression pointer to ${target} does not point back before ${runStart} (loop or forward reference)`);
      }
      if (resumeAt < 0) resumeAt = pos + 2;
      pos = target;
      runStart = target;
      runEnd = bytes.length;
      continue;
    }
    if (tag !== 0) throw malformed(pos, `${what}: label type 0x${tag.toString(16)} is not supported (only plain labels and pointers)`);
    if (len === 0) {
      pos += 1;
      break;
    }
    // 0x3f is the largest value without the tag bits, so len <= 63 holds here by construction;
    // the check stays so the limit is stated where it is enforced.
    if (len > DNS_MAX_LABEL_BYTES) throw malformed(pos, `${what}: label of ${len} bytes exceeds ${DNS_MAX_LABEL_BYTES}`);
    if (pos + 1 + len > runEnd) {
      throw malformed(pos, `${what}: label declares ${len} bytes but only ${Math.max(0, runEnd - pos - 1)} remain`);
    }
    wireBytes += 1 + len;
    if (wireBytes > DNS_MAX_NAME_BYTES) throw malformed(pos, `${what}: name longer than ${DNS_MAX_NAME_BYTES} bytes`);
    if (labels.length >= DNS_MAX_LABELS) throw malformed(pos, `${what}: more than ${DNS_MAX_LABELS} labels`);
    labels.push(escapeLabel(bytes, pos + 1, len));
    pos += 1 + len;
  }
  r.offset = resumeAt >= 0 ? resumeAt : pos;
  return labels.join('.');
}

function formatIpv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952 text form: lowercase, no leading zeros, the longest run (≥ 2) of zero groups as '::'. */
function formatIpv6(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

function readCharacterStrings(r: Reader, end: number): Uint8Array[] {
  const texts: Uint8Array[] = [];
  while (r.offset < end) {
    const len = r.u8('TXT string length', end);
    texts.push(r.take(len, 'TXT string', end));
  }
  return texts;
}

function readRecord(r: Reader, section: string, index: number): DnsRecord {
  const what = `${section}[${index}]`;
  const name = readName(r, `${what} name`);
  const type = r.u16(`${what} type`);
  const klass = r.u16(`${what} class`);
  const ttl = r.u32(`${what} ttl`);
  const rdlength = r.u16(`${what} rdlength`);
  r.need(rdlength, `${what} rdata (rdlength ${rdlength})`);
  const start = r.offset;
  const end = start + rdlength;
  let data: RecordData;
  switch (type) {
    case RecordType.A:
      if (rdlength !== 4) throw malformed(start, `${what}: A rdata must be 4 bytes, got ${rdlength}`);
      data = { kind: 'a', address: formatIpv4(r.take(4, `${what} A`, end)) };
      break;
    case RecordType.AAAA:
      if (rdlength !== 16) throw malformed(start, `${what}: AAAA rdata must be 16 bytes, got ${rdlength}`);
      data = { kind: 'aaaa', address: formatIpv6(r.take(16, `${what} AAAA`, end)) };
      break;
    case RecordType.CNAME:
      data = { kind: 'cname', target: readName(r, `${what} CNAME target`, end) };
      break;
    case RecordType.SOA:
      data = {
        kind: 'soa',
        mname: readName(r, `${what} SOA mname`, end),
        rname: readName(r, `${what} SOA rname`, end),
        serial: r.u32(`${what} SOA serial`, end),
        refresh: r.u32(`${what} SOA refresh`, end),
        retry: r.u32(`${what} SOA retry`, end),
        expire: r.u32(`${what} SOA expire`, end),
        minimum: r.u32(`${what} SOA minimum`, end),
      };
      break;
    case RecordType.TXT:
      data = { kind: 'txt', texts: readCharacterStrings(r, end) };
      break;
    default:
      data = { kind: 'raw', rdata: r.take(rdlength, `${what} rdata`, end) };
  }
  if (r.offset !== end) {
    throw malformed(r.offset, `${what}: rdata declares ${rdlength} bytes but its fields use ${r.offset - start}`);
  }
  return { name, type, class: klass, ttl, data };
}

/** Smallest wire size of one question (root name + type + class) and one record (+ ttl + rdlength). */
const MIN_QUESTION_BYTES = 5;
const MIN_RECORD_BYTES = 11;

export function parseMessage(bytes: Uint8Array): DnsMessage {
  if (!(bytes instanceof Uint8Array)) throw malformed(0, `expected a Uint8Array, got ${typeof bytes}`);
  if (bytes.length > DNS_MAX_MESSAGE_BYTES) {
    throw malformed(0, `message of ${bytes.length} bytes exceeds ${DNS_MAX_MESSAGE_BYTES}`);
  }
  const header = parseHeader(bytes);
  const r = new Reader(bytes);
  r.offset = DNS_HEADER_BYTES;
  // Counts come from the sender: refuse before looping when they cannot fit in the bytes present.
  const minimum = header.qdcount * MIN_QUESTION_BYTES + (header.ancount + header.nscount + header.arcount) * MIN_RECORD_BYTES;
  if (minimum > r.remaining()) {
    throw malformed(
      4,
      `counts claim ${header.qdcount} questions and ${header.ancount + header.nscount + header.arcount} records (at least ${minimum} bytes) but only ${r.remaining()} bytes follow the header`,
    );
  }
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < header.qdcount; i++) {
    const name = readName(r, `question[${i}] name`);
    const type = r.u16(`question[${i}] type`);
    const klass = r.u16(`question[${i}] class`);
    questions.push({ name, type, class: klass });
  }
  const section = (count: number, label: string): DnsRecord[] => {
    const out: DnsRecord[] = [];
    for (let i = 0; i < count; i++) out.push(readRecord(r, label, i));
    return out;
  };
  const answers = section(header.ancount, 'answer');
  const authorities = section(header.nscount, 'authority');
  const additionals = section(header.arcount, 'additional');
  if (r.offset !== bytes.length) {
    throw malformed(r.offset, `${bytes.length - r.offset} bytes of trailing data after the last record`);
  }
  return { id: header.id, flags: header.flags, questions, answers, authorities, additionals };
}

// ---------------------------------------------------------------------------------------------
// writing

class Writer {
  private buf = new Uint8Array(512);
  length = 0;

  private ensure(count: number): void {
    const needed = this.length + count;
    if (needed > DNS_MAX_MESSAGE_BYTES) {
      throw invalid('message', `would be ${needed} bytes or more, over the ${DNS_MAX_MESSAGE_BYTES}-byte limit`);
    }
    if (needed <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < needed) size *= 2;
    const next = new Uint8Array(Math.min(size, DNS_MAX_MESSAGE_BYTES));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.length++] = v & 0xff;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf[this.length++] = (v >>> 8) & 0xff;
    this.buf[this.length++] = v & 0xff;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf[this.length++] = (v >>> 24) & 0xff;
    this.buf[this.length++] = (v >>> 16) & 0xff;
    this.buf[this.length++] = (v >>> 8) & 0xff;
    this.buf[this.length++] = v & 0xff;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  patch16(at: number, v: number): void {
    this.buf[at] = (v >>> 8) & 0xff;
    this.buf[at + 1] = v & 0xff;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

const utf8 = new TextEncoder();

/** Splits a presentation-form name into label bytes, undoing `\DDD` and `\c` escapes. */
export function nameToLabels(name: string): Uint8Array[] {
  if (typeof name !== 'string') throw invalid('name', `expected a string, got ${typeof name}`);
  if (name === '' || name === '.') return [];
  const labels: Uint8Array[] = [];
  let current: number[] = [];
  let wireBytes = 1;
  const endLabel = (): void => {
    if (current.length === 0) throw invalid('name', `'${name}' has an empty label`);
    if (current.length > DNS_MAX_LABEL_BYTES) {
      throw invalid('name', `'${name.slice(0, 80)}' has a label of ${current.length} bytes, over ${DNS_MAX_LABEL_BYTES}`);
    }
    wireBytes += 1 + current.length;
    labels.push(Uint8Array.from(current));
    current = [];
  };
  let i = 0;
  while (i < name.length) {
    const ch = name[i]!;
    if (ch === '\\') {
      const digits = name.slice(i + 1, i + 4);
      if (/^[0-9]{3}$/.test(digits)) {
        const v = Number(digits);
        if (v > 255) throw invalid('name', `'${name.slice(0, 80)}' has escape \\${digits} above 255`);
        current.push(v);
        i += 4;
      } else if (i + 1 < name.length) {
        const next = name.codePointAt(i + 1)!;
        const chars = String.fromCodePoint(next);
        for (const b of utf8.encode(chars)) current.push(b);
        i += 1 + chars.length;
      } else {
        throw invalid('name', `'${name.slice(0, 80)}' ends with a lone backslash`);
      }
      continue;
    }
    if (ch === '.') {
      endLabel();
      i += 1;
      // A single trailing dot marks a fully qualified name; it adds no label.
      if (i === name.length) break;
      continue;
    }
    const cp = name.codePointAt(i)!;
    const chars = String.fromCodePoint(cp);
    for (const b of utf8.encode(chars)) current.push(b);
    i += chars.length;
  }
  if (current.length > 0) endLabel();
  if (wireBytes > DNS_MAX_NAME_BYTES) {
    throw invalid('name', `'${name.slice(0, 80)}…' is ${wireBytes} bytes on the wire, over ${DNS_MAX_NAME_BYTES}`);
  }
  if (labels.length > DNS_MAX_LABELS) throw invalid('name', `has ${labels.length} labels, over ${DNS_MAX_LABELS}`);
  return labels;
}

/** The labels of a presentation name, each still in escaped presentation form ('' → []). */
export function splitName(name: string): string[] {
  return nameToLabels(name).map((l) => escapeLabel(l, 0, l.length));
}

/** Canonical form of a presentation name: labels re-escaped, no trailing dot. */
export function normalizeName(name: string): string {
  return splitName(name).join('.');
}

/** Pointers hold 14 bits, so only names that start below 0x4000 can be targets. */
const MAX_POINTER_TARGET = 0x3fff;

function writeName(w: Writer, name: string, table: Map<string, number> | undefined): void {
  const labels = nameToLabels(name);
  const keys: string[] = [];
  if (table !== undefined) {
    // Suffix keys are the exact-case escaped labels: pointing a 'Cache.mesh' owner at an earlier
    // 'cache.mesh' would change the case the client sees.
    for (let i = labels.length - 1; i >= 0; i--) {
      const l = labels[i]!;
      keys[i] = i === labels.length - 1 ? escapeLabel(l, 0, l.length) : `${escapeLabel(l, 0, l.length)}.${keys[i + 1]}`;
    }
  }
  for (let i = 0; i < labels.length; i++) {
    if (table !== undefined) {
      const target = table.get(keys[i]!);
      if (target !== undefined) {
        w.u16(0xc000 | target);
        return;
      }
      if (w.length <= MAX_POINTER_TARGET) table.set(keys[i]!, w.length);
    }
    const l = labels[i]!;
    w.u8(l.length);
    w.bytes(l);
  }
  w.u8(0);
}

function checkU16(field: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw invalid(field, `expected an integer 0..65535, got ${v}`);
}

function checkU32(field: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw invalid(field, `expected an integer 0..4294967295, got ${v}`);
}

/** Dotted-quad to 4 bytes; strict (no leading zeros, no shorthand). */
export function ipv4ToBytes(text: string): Uint8Array {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  const parts = m === null ? [] : m.slice(1).map((p) => (p.length > 1 && p.startsWith('0') ? 256 : Number(p)));
  if (parts.length !== 4 || parts.some((p) => p > 255)) {
    throw invalid('A address', `expected a dotted-quad IPv4 address, got '${String(text).slice(0, 40)}'`);
  }
  return Uint8Array.from(parts);
}

/** IPv6 text (with at most one '::' and an optional dotted-quad tail) to 16 bytes. */
export function ipv6ToBytes(text: string): Uint8Array {
  const fail = (): MeshError => invalid('AAAA address', `expected an IPv6 address, got '${String(text).slice(0, 60)}'`);
  if (typeof text !== 'string' || text.length > 45) throw fail();
  const halves = text.split('::');
  if (halves.length > 2) throw fail();
  const parseSide = (side: string): number[] => {
    if (side === '') return [];
    const groups: number[] = [];
    const parts = side.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = ipv4ToBytes(p);
        groups.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) {
        groups.push(parseInt(p, 16));
      } else {
        throw fail();
      }
    }
    return groups;
  };
  let groups: number[];
  try {
    const head = parseSide(halves[0]!);
    if (halves.length === 1) {
      groups = head;
      if (groups.length !== 8) throw fail();
    } else {
      const tail = parseSide(halves[1]!);
      if (head.length + tail.length > 7) throw fail();
      groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
    }
  } catch {
    throw fail();
  }
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >>> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

function writeRecord(w: Writer, rec: DnsRecord, table: Map<string, number> | undefined, field: string): void {
  writeName(w, rec.name, table);
  checkU16(`${field}.type`, rec.type);
  checkU16(`${field}.class`, rec.class);
  checkU32(`${field}.ttl`, rec.ttl);
  w.u16(rec.type);
  w.u16(rec.class);
  w.u32(rec.ttl);
  const lengthAt = w.length;
  w.u16(0);
  const start = w.length;
  const data = rec.data;
  const expectType = (t: number, kind: string): void => {
    if (rec.type !== t) throw invalid(`${field}.data`, `kind '${kind}' needs type ${t}, got type ${rec.type}`);
  };
  switch (data.kind) {
    case 'a':
      expectType(RecordType.A, data.kind);
      w.bytes(ipv4ToBytes(data.address));
      break;
    case 'aaaa':
      expectType(RecordType.AAAA, data.kind);
      w.bytes(ipv6ToBytes(data.address));
      break;
    case 'cname':
      expectType(RecordType.CNAME, data.kind);
      writeName(w, data.target, table);
      break;
    case 'soa':
      expectType(RecordType.SOA, data.kind);
      writeName(w, data.mname, table);
      writeName(w, data.rname, table);
      for (const k of ['serial', 'refresh', 'retry', 'expire', 'minimum'] as const) {
        checkU32(`${field}.data.${k}`, data[k]);
        w.u32(data[k]);
      }
      break;
    case 'txt':
      for (const t of data.texts) {
        if (t.length > 255) throw invalid(`${field}.data.texts`, `a character-string holds at most 255 bytes, got ${t.length}`);
        w.u8(t.length);
        w.bytes(t);
      }
      break;
    case 'raw':
      w.bytes(data.rdata);
      break;
    default: {
      const never: never = data;
      throw invalid(`${field}.data.kind`, `unknown kind '${(never as { kind: string }).kind}'`);
    }
  }
  const rdlength = w.length - start;
  // Writer.ensure already caps the whole message at 65535 bytes, so rdlength fits 16 bits.
  w.patch16(lengthAt, rdlength);
}

export function serializeMessage(msg: DnsMessage, options: SerializeOptions = {}): Uint8Array {
  const table = options.compress === false ? undefined : new Map<string, number>();
  const w = new Writer();
  checkU16('id', msg.id);
  for (const [field, list] of [
    ['questions', msg.questions],
    ['answers', msg.answers],
    ['authorities', msg.authorities],
    ['additionals', msg.additionals],
  ] as const) {
    if (list.length > 0xffff) throw invalid(field, `at most 65535 entries, got ${list.length}`);
  }
  w.u16(msg.id);
  w.u16(encodeFlags(msg.flags));
  w.u16(msg.questions.length);
  w.u16(msg.answers.length);
  w.u16(msg.authorities.length);
  w.u16(msg.additionals.length);
  msg.questions.forEach((q, i) => {
    writeName(w, q.name, table);
    checkU16(`questions[${i}].type`, q.type);
    checkU16(`questions[${i}].class`, q.class);
    w.u16(q.type);
    w.u16(q.class);
  });
  msg.answers.forEach((rec, i) => writeRecord(w, rec, table, `answers[${i}]`));
  msg.authorities.forEach((rec, i) => writeRecord(w, rec, table, `authorities[${i}]`));
  msg.additionals.forEach((rec, i) => writeRecord(w, rec, table, `additionals[${i}]`));
  return w.finish();
}

// ---------------------------------------------------------------------------------------------
// builders

export function emptyFlags(): DnsFlags {
  return { qr: false, opcode: Opcode.QUERY, aa: false, tc: false, rd: false, ra: false, z: false, ad: false, cd: false, rcode: Rcode.NOERROR };
}

export interface BuildQueryOptions {
  id: number;
  /** Default true: stub resolvers always ask for recursion. */
  recursionDesired?: boolean;
  class?: number;
}

export function buildQuery(name: string, type: number, options: BuildQueryOptions): DnsMessage {
  return {
    id: options.id,
    flags: { ...emptyFlags(), rd: options.recursionDesired ?? true },
    questions: [{ name, type, class: options.class ?? RecordClass.IN }],
    answers: [],
    authorities: [],
    additionals: [],
  };
}

export interface BuildResponseOptions {
  rcode: number;
  answers?: DnsRecord[];
  authorities?: DnsRecord[];
  authoritative?: boolean;
  /** Default true: the agent forwards names it does not own, which is recursion from the client's view. */
  recursionAvailable?: boolean;
  truncated?: boolean;
}

/** A response to `query`: same id, opcode, question, RD and CD; nothing from its other sections. */
export function buildResponse(query: Pick<DnsMessage, 'id' | 'flags' | 'questions'>, options: BuildResponseOptions): DnsMessage {
  return {
    id: query.id,
    flags: {
      qr: true,
      opcode: query.flags.opcode,
      aa: options.authoritative ?? false,
      tc: options.truncated ?? false,
      rd: query.flags.rd,
      ra: options.recursionAvailable ?? true,
      z: false,
      ad: false,
      cd: query.flags.cd,
      rcode: options.rcode,
    },
    questions: query.questions.map((q) => ({ ...q })),
    answers: options.answers ?? [],
    authorities: options.authorities ?? [],
    additionals: [],
  };
}
