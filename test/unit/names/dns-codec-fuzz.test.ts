import { describe, it, expect } from 'vitest';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { toHex, utf8Bytes } from '../../../src/util/bytes.js';
import { seededRandom, type Random } from '../../../src/util/random.js';
import { RecordType, buildQuery, buildResponse, parseMessage, serializeMessage, type DnsMessage } from '../../../src/names/index.js';

const ITERATIONS = 20_000;
const TIME_BUDGET_MS = 20_000;

function seeds(): DnsMessage[] {
  const q = buildQuery('cache.mesh', RecordType.A, { id: 0x0102 });
  const r = buildResponse(buildQuery('www.example.test', RecordType.A, { id: 0x0304 }), {
    rcode: 0,
    answers: [
      { name: 'www.example.test', type: RecordType.CNAME, class: 1, ttl: 60, data: { kind: 'cname', target: 'h.example.test' } },
      { name: 'h.example.test', type: RecordType.A, class: 1, ttl: 60, data: { kind: 'a', address: '192.0.2.1' } },
      { name: 'h.example.test', type: RecordType.AAAA, class: 1, ttl: 60, data: { kind: 'aaaa', address: '2001:db8::1' } },
      { name: 'h.example.test', type: RecordType.TXT, class: 1, ttl: 60, data: { kind: 'txt', texts: [utf8Bytes('hello'), utf8Bytes('x')] } },
    ],
    authorities: [
      {
        name: 'example.test',
        type: RecordType.SOA,
        class: 1,
        ttl: 300,
        data: { kind: 'soa', mname: 'ns.example.test', rname: 'admin.example.test', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 },
      },
    ],
  });
  r.additionals = [{ name: '', type: RecordType.OPT, class: 4096, ttl: 0, data: { kind: 'raw', rdata: Uint8Array.from([0, 10, 0, 2, 1, 2]) } }];
  return [q, r];
}

function int(rng: Random, below: number): number {
  return Math.floor(rng.float() * below);
}

function mutate(rng: Random, corpus: Uint8Array[]): Uint8Array {
  const base = corpus[int(rng, corpus.length)]!;
  const mode = int(rng, 6);
  if (mode === 0) return rng.bytes(int(rng, 300));
  const out = Uint8Array.from(base);
  switch (mode) {
    case 1: {
      const flips = 1 + int(rng, 4);
      for (let i = 0; i < flips; i++) out[int(rng, out.length)] = int(rng, 256);
      return out;
    }
    case 2:
      return out.subarray(0, int(rng, out.length + 1));
    case 3: {
      // Aim at the interesting bytes: counts, length octets and pointers.
      const at = int(rng, out.length);
      out[at] = [0x00, 0x3f, 0x40, 0x80, 0xc0, 0xff, 0x0c][int(rng, 7)]!;
      if (at + 1 < out.length) out[at + 1] = int(rng, 256);
      return out;
    }
    case 4: {
      const at = int(rng, out.length + 1);
      const extra = rng.bytes(1 + int(rng, 8));
      const grown = new Uint8Array(out.length + extra.length);
      grown.set(out.subarray(0, at));
      grown.set(extra, at);
      grown.set(out.subarray(at), at + extra.length);
      return grown;
    }
    default: {
      const other = corpus[int(rng, corpus.length)]!;
      const cut = int(rng, Math.min(out.length, other.length));
      const spliced = Uint8Array.from(out);
      spliced.set(other.subarray(cut, Math.min(other.length, out.length)), cut);
      return spliced;
    }
  }
}

describe('dns codec fuzz', () => {
  it(`${ITERATIONS} random and mutated packets: only DNS_MALFORMED, and what parses round trips`, () => {
    const seed = 0x5eed_d25;
    const rng = seededRandom(seed);
    const corpus = seeds().flatMap((m) => [serializeMessage(m), serializeMessage(m, { compress: false })]);
    const started = Date.now();
    let parsed = 0;
    let rejected = 0;
    for (let i = 0; i < ITERATIONS && Date.now() - started < TIME_BUDGET_MS; i++) {
      const packet = mutate(rng, corpus);
      const context = `seed ${seed} iteration ${i} packet ${toHex(packet)}`;
      let msg: DnsMessage;
      try {
        msg = parseMessage(packet);
      } catch (err) {
        if (!(err instanceof MeshError) || err.code !== ErrorCodes.DNS_MALFORMED) {
          throw new Error(`${context}: raised ${String(err)}`, { cause: err });
        }
        rejected++;
        continue;
      }
      parsed++;
      // Whatever the parser accepts must serialize and come back the same.
      for (const compress of [true, false]) {
        let again: DnsMessage;
        try {
          again = parseMessage(serializeMessage(msg, { compress }));
        } catch (err) {
          throw new Error(`${context}: re-serialize (compress=${compress}) failed: ${String(err)}`, { cause: err });
        }
        expect(again, context).toEqual(msg);
      }
      if (parsed < 50) corpus.push(packet);
    }
    expect(parsed + rejected).toBe(ITERATIONS);
    // Both outcomes must be exercised for the pass to mean anything.
    expect(parsed).toBeGreaterThan(500);
    expect(rejected).toBeGreaterThan(5000);
  });
});
