import * as dgram from 'node:dgram';
import { Writable } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import {
  DNS_HEADER_BYTES,
  DnsServer,
  Rcode,
  RecordClass,
  RecordType,
  buildQuery,
  buildResponse,
  parseMessage,
  serializeMessage,
  type DnsMessage,
} from '../../src/names/index.js';
import { utf8Bytes } from '../../src/util/bytes.js';
import { expectCheapRejection, fuzzDecoder, mutatedFrom } from './harness.js';

/**
 * DNS queries (and the answers an upstream sends back) through parseMessage, and what the agent
 * does with a query it accepted: build an answer that serializes and parses back. Then a share of
 * the same inputs through a real DnsServer over UDP, which must answer every query and never log
 * an internal error. Seed 0xd25f.
 */
const SEED = 0xd25f;

function seedMessages(): DnsMessage[] {
  const out: DnsMessage[] = [];
  let id = 1;
  for (const [name, type] of [
    ['db', RecordType.A],
    ['db.mesh', RecordType.A],
    ['cache.mesh', RecordType.AAAA],
    ['www.example.test', RecordType.ANY],
    ['_srv._tcp.example.test', RecordType.TXT],
    ['a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p', RecordType.MX],
    ['', RecordType.NS],
  ] as const) {
    out.push(buildQuery(name, type, { id: id++ }));
  }
  const edns = buildQuery('db.mesh', RecordType.A, { id: id++ });
  edns.additionals = [{ name: '', type: RecordType.OPT, class: 4096, ttl: 0, data: { kind: 'raw', rdata: Uint8Array.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]) } }];
  out.push(edns);
  const response = buildResponse(buildQuery('www.example.test', RecordType.A, { id: id++ }), {
    rcode: Rcode.NOERROR,
    answers: [
      { name: 'www.example.test', type: RecordType.CNAME, class: RecordClass.IN, ttl: 60, data: { kind: 'cname', target: 'h.example.test' } },
      { name: 'h.example.test', type: RecordType.A, class: RecordClass.IN, ttl: 60, data: { kind: 'a', address: '192.0.2.1' } },
      { name: 'h.example.test', type: RecordType.AAAA, class: RecordClass.IN, ttl: 60, data: { kind: 'aaaa', address: '2001:db8::1' } },
      { name: 'h.example.test', type: RecordType.TXT, class: RecordClass.IN, ttl: 60, data: { kind: 'txt', texts: [utf8Bytes('hello'), new Uint8Array(0)] } },
    ],
    authorities: [
      {
        name: 'example.test',
        type: RecordType.SOA,
        class: RecordClass.IN,
        ttl: 300,
        data: { kind: 'soa', mname: 'ns.example.test', rname: 'admin.example.test', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 },
      },
    ],
  });
  out.push(response);
  return out;
}

const messages = seedMessages();
const seedPackets = messages.flatMap((m) => [serializeMessage(m), serializeMessage(m, { compress: false })]);
const inputs = mutatedFrom(seedPackets, 600);

/** What the server does with a query it parsed: answer it, and the answer must round-trip. */
function parseAndAnswer(packet: Uint8Array): void {
  const msg = parseMessage(packet);
  for (const compress of [true, false]) {
    const again = parseMessage(serializeMessage(msg, { compress }));
    if (!isDeepStrictEqual(again, msg)) throw new Error(`parse → serialize (compress=${compress}) → parse changed the message`);
  }
  if (msg.questions.length === 1) {
    const q = msg.questions[0]!;
    const answer = buildResponse(msg, { rcode: Rcode.NOERROR, answers: [{ name: q.name, type: RecordType.A, class: RecordClass.IN, ttl: 5, data: { kind: 'a', address: '127.77.0.9' } }], authoritative: true });
    parseMessage(serializeMessage(answer));
  }
}

describe(`DNS decoder under fuzzing (seed 0x${SEED.toString(16)})`, () => {
  it('parseMessage: 100,000 mutated queries and answers, only DNS_MALFORMED; what parses is answered and round-trips', () => {
    const report = fuzzDecoder({ name: 'dns parseMessage', seed: SEED, input: inputs, decode: parseAndAnswer, allowed: [ErrorCodes.DNS_MALFORMED] });
    expect(report.accepted).toBeGreaterThan(5_000);
    expect(report.rejected).toBeGreaterThan(5_000);
  }, 120_000);

  it('length claims beyond the packet are refused cheaply (counts of 65535, RDLENGTH 65535, a label of 63)', () => {
    const header = (qd: number, an: number): number[] => [0x12, 0x34, 0x01, 0x00, qd >> 8, qd & 0xff, an >> 8, an & 0xff, 0, 0, 0, 0];
    expectCheapRejection('dns 65535 questions in 20 bytes', () => parseMessage(Uint8Array.from([...header(65535, 0), 2, 0x64, 0x62, 0, 0, 1, 0, 1])), [ErrorCodes.DNS_MALFORMED]);
    expectCheapRejection(
      'dns RDLENGTH 65535 with 4 bytes',
      () => parseMessage(Uint8Array.from([...header(0, 1), 0, 0, 1, 0, 1, 0, 0, 0, 60, 0xff, 0xff, 1, 2, 3, 4])),
      [ErrorCodes.DNS_MALFORMED],
    );
    expectCheapRejection('dns label of 63 with 2 bytes', () => parseMessage(Uint8Array.from([...header(1, 0), 63, 0x61, 0x62])), [ErrorCodes.DNS_MALFORMED]);
    const oversize = new Uint8Array(70_000);
    expectCheapRejection('dns 70,000-byte packet', () => parseMessage(oversize), [ErrorCodes.DNS_MALFORMED], 200);
  });

  describe('through a real DnsServer over UDP', () => {
    let server: DnsServer;
    let client: dgram.Socket;
    const errorLines: string[] = [];
    const waiters = new Map<number, () => void>();

    beforeAll(async () => {
      // a logger that keeps every error line: an exception that escaped into the server shows here
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          const line = chunk.toString('utf8');
          if (/"level":(50|60)/.test(line)) errorLines.push(line);
          done();
        },
      });
      server = new DnsServer({
        host: '127.0.0.1',
        port: 0,
        upstreams: [],
        logger: pino({ level: 'error' }, sink),
        lookup: (name) => (name === 'db' || name === 'cache' ? { addresses: ['127.77.0.9'], ttlSeconds: 5 } : undefined),
      });
      await server.start();
      client = dgram.createSocket('udp4');
      client.on('message', (msg) => {
        const id = msg.length >= 2 ? msg.readUInt16BE(0) : -1;
        waiters.get(id)?.();
        waiters.delete(id);
      });
      await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', () => resolve()));
    });

    afterAll(async () => {
      client?.close();
      await server?.close();
    });

    it('5,000 of the fuzz inputs as datagrams: every query (QR=0, 12+ bytes) is answered, no internal error', async () => {
      const runs = 5_000;
      const port = server.address().port;
      const packets = fc.sample(inputs, { seed: SEED + 1, numRuns: runs });
      let answered = 0;
      let expected = 0;
      const started = performance.now();
      for (let i = 0; i < packets.length; i++) {
        const packet = Uint8Array.from(packets[i]!);
        // distinct ids, so each answer is matched to its query; a response (QR=1) is dropped by design
        if (packet.length >= 2) {
          packet[0] = (i >> 8) & 0xff;
          packet[1] = i & 0xff;
        }
        const isQuery = packet.length >= DNS_HEADER_BYTES && (packet[2]! & 0x80) === 0;
        if (!isQuery || packet.length > 65_507) {
          client.send(packet.subarray(0, 65_507), port, '127.0.0.1');
          continue;
        }
        expected++;
        const got = new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 2_000);
          waiters.set(i, () => {
            clearTimeout(timer);
            resolve(true);
          });
        });
        client.send(packet, port, '127.0.0.1');
        if (await got) answered++;
      }
      const wallMs = performance.now() - started;
      console.log(
        `[fuzz] dns DnsServer over UDP: ${runs} datagrams, ${expected} of them queries, ${answered} answered, ${server.stats().formerr} FORMERR, ${errorLines.length} internal errors, in ${Math.round(wallMs)} ms, seed 0x${(SEED + 1).toString(16)}`,
      );
      expect(errorLines, errorLines.join('\n').slice(0, 2000)).toEqual([]);
      expect(expected).toBeGreaterThan(runs / 2);
      expect(answered).toBe(expected);
      expect(server.stats().errors).toBeGreaterThan(0); // the malformed ones were seen (FORMERR), not lost
    }, 120_000);
  });
});
