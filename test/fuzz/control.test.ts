import { request } from 'node:http';
import { join } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDnsLabel, parseHostPort } from '../../src/config/index.js';
import * as control from '../../src/control/index.js';
import { ErrorCodes } from '../../src/errors.js';
import { utf8Bytes } from '../../src/util/bytes.js';
import { makeStub, makeTempDir, type TempDir } from '../unit/control/fixtures.js';
import { fuzzDecoder, mutatedFrom, showInput } from './harness.js';

/**
 * Control API request bodies (docs/CONTROL-API.md): the raw bytes of a POST body through
 * parseJsonBody and the route's parser, exactly as the server runs them. Every parse*Request the
 * server exports is fuzzed (a route added later is picked up by name). Then a share of the inputs
 * through a real ControlServer on its Unix socket: never a 500, always the error shape. Seed 0xc7a1.
 */
const SEED = 0xc7a1;

type Parser = (body: unknown) => unknown;

/** Valid bodies per parser; a parser not listed here is fuzzed from generic objects. */
const VALID_BODIES: Record<string, unknown[]> = {
  parseInitRequest: [{ mesh: 'prod' }, { mesh: 'a' }, { mesh: 'a'.repeat(63) }],
  parseTokenCreateRequest: [{}, { ttlMs: 86_400_000 }, { uses: 5 }, { ttlMs: 1, uses: 1 }, { ttlMs: control.MAX_TOKEN_TTL_MS }],
  parseJoinRequest: [{ token: 'osmt1_abc' }, { token: 'osmt1_abc', name: 'server2' }, { token: 'x'.repeat(8192), name: null }],
  parseExposeRequest: [
    { name: 'db', port: 5432 },
    { name: 'db', port: 5432, target: '127.0.0.1:5432' },
    { name: 'web', port: 80, target: 'backend.internal:8080', allowFrom: ['server2', 'tag:web'] },
    { name: 'x', port: 65535, target: '[::1]:1', allowFrom: [] },
  ],
  parseUnexposeRequest: [{ name: 'db' }],
  parseTokenRevokeRequest: [{ tokenId: '0123456789abcdef0123456789abcdef' }],
  parseRevokeRequest: [{ node: 'server3' }],
  parsePingRequest: [{ node: 'server2' }, { node: 'server2', count: 100 }, { node: 'a', count: 1 }],
};

const NASTY: unknown[] = [
  null, true, 0, -1, 0.5, 1e21, 2 ** 53, 2 ** 53 - 1, 65536, '', ' ', 'DB', 'db.mesh', '-db', 'a'.repeat(64), 'x'.repeat(9000), '5432', '127.0.0.1',
  '127.0.0.1:0', '[::1]', 'tag:', 'tag:Web', 'osmt1_', '0123456789ABCDEF0123456789ABCDEF', [], [null], ['server2', 5], Array(300).fill('a'), {}, { a: 1 },
];

const parsers: [string, Parser][] = Object.entries(control)
  .filter(([name, value]) => /^parse\w+Request$/.test(name) && typeof value === 'function')
  .map(([name, value]) => [name, value as Parser]);

// random JSON drawn once (generating it per case would dominate the run)
const RANDOM_JSON: unknown[] = fc.sample(fc.jsonValue({ maxDepth: 2 }), { seed: SEED, numRuns: 1_000 });

/** Bodies as the server receives them: bytes. Valid ones with fields damaged, plus byte-level mutations. */
function bodies(valid: unknown[]): fc.Arbitrary<Uint8Array> {
  const texts = valid.map((v) => utf8Bytes(JSON.stringify(v)));
  const keys = [...new Set(valid.flatMap((v) => Object.keys(v as object))), 'extra', '__proto__', 'constructor'];
  const fieldDamage = fc.tuple(fc.nat(valid.length - 1), fc.nat(keys.length - 1), fc.nat(5), fc.nat(NASTY.length - 1), fc.nat(RANDOM_JSON.length - 1)).map(([v, k, op, n, r]) => {
    const body = JSON.parse(JSON.stringify(valid[v])) as Record<string, unknown>;
    const key = keys[k]!;
    if (op === 0) delete body[key];
    else if (op <= 2) Object.defineProperty(body, key, { value: NASTY[n], enumerable: true, writable: true, configurable: true });
    else if (op <= 4) Object.defineProperty(body, key, { value: RANDOM_JSON[r], enumerable: true, writable: true, configurable: true });
    else return utf8Bytes(JSON.stringify(RANDOM_JSON[r]) ?? 'null');
    return utf8Bytes(JSON.stringify(body));
  });
  return fc.oneof({ weight: 3, arbitrary: fieldDamage }, { weight: 2, arbitrary: mutatedFrom(texts, 200) });
}

/** What an accepted body must satisfy beyond its type: what the handlers then rely on. */
function checkAccepted(name: string, parsed: unknown): void {
  const r = parsed as Record<string, unknown>;
  const fail = (why: string): never => {
    throw new Error(`${name} accepted ${showInput(parsed)}: ${why}`);
  };
  for (const field of ['mesh', 'name', 'node']) if (typeof r[field] === 'string' && !isDnsLabel(r[field])) fail(field);
  if (r['ttlMs'] !== undefined) {
    const ttl = r['ttlMs'] as number;
    // the expiry must stay a valid Date: the answer and `token list` print it
    if (!Number.isSafeInteger(ttl) || ttl <= 0 || Number.isNaN(new Date(Date.now() + ttl).getTime())) fail('ttlMs');
  }
  if (r['port'] !== undefined && (!Number.isInteger(r['port']) || (r['port'] as number) < 1 || (r['port'] as number) > 65535)) fail('port');
  if (typeof r['target'] === 'string') parseHostPort(r['target'], 'target');
  if (r['count'] !== undefined && ((r['count'] as number) < 1 || (r['count'] as number) > 100)) fail('count');
  if (typeof r['token'] === 'string' && (r['token'].length > 8192 || r['token'].trim() === '')) fail('token');
}

describe(`control API bodies under fuzzing (seed 0x${SEED.toString(16)})`, () => {
  it('every route parser the server exports is covered', () => {
    expect(parsers.map(([n]) => n).sort()).toEqual(expect.arrayContaining(Object.keys(VALID_BODIES).filter((n) => n in control).sort()));
    expect(parsers.length).toBeGreaterThanOrEqual(7);
  });

  for (const [name, parse] of parsers) {
    it(`parseJsonBody + ${name}: 100,000 damaged bodies, only INVALID_ARGUMENT`, () => {
      const valid = VALID_BODIES[name] ?? [{}, { name: 'db' }, { node: 'server2' }];
      const report = fuzzDecoder({
        name: `control ${name}`,
        seed: SEED,
        input: bodies(valid),
        decode: (raw) => {
          const parsed = parse(control.parseJsonBody(raw));
          checkAccepted(name, parsed);
          return parsed;
        },
        allowed: [ErrorCodes.INVALID_ARGUMENT],
      });
      expect(report.rejected).toBeGreaterThan(10_000);
    }, 120_000);
  }

  it('parseResolveQuery: 100,000 query strings, only INVALID_ARGUMENT', () => {
    fuzzDecoder({
      name: 'control parseResolveQuery',
      seed: SEED,
      input: fc.oneof(fc.string({ maxLength: 300 }), fc.stringMatching(/^name=[a-z0-9.%-]{0,300}$/), fc.constantFrom('name=db', 'name=db.mesh', 'name=', 'x=1', 'name=%ff', 'name=a&name=b')),
      decode: (query) => control.parseResolveQuery(new URLSearchParams(query)),
      allowed: [ErrorCodes.INVALID_ARGUMENT],
    });
  }, 120_000);

  it('a token lifetime past what a Date holds is refused naming ttlMs (it answered 500 and stored the token)', () => {
    expect(() => control.parseTokenCreateRequest({ ttlMs: 2 ** 53 - 1 })).toThrow(/^ttlMs: expected at most \d+ \(10 years\)/);
    expect(control.parseTokenCreateRequest({ ttlMs: control.MAX_TOKEN_TTL_MS })).toEqual({ ttlMs: control.MAX_TOKEN_TTL_MS });
  });

  describe('through a real ControlServer', () => {
    let tmp: TempDir;
    let server: control.ControlServer;
    let socketPath: string;
    const errorLogs: string[] = [];

    beforeAll(async () => {
      tmp = makeTempDir();
      socketPath = join(tmp.dir, 'control.sock');
      const logger = pino({ level: 'error' }, { write: (line: string) => void errorLogs.push(line) });
      server = new control.ControlServer({ socketPath, handlers: makeStub().handlers, logger });
      await server.start();
    });

    afterAll(async () => {
      await server?.close();
      tmp?.cleanup();
    });

    function post(path: string, body: Uint8Array | undefined, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> | undefined; ms: number }> {
      const started = performance.now();
      return new Promise((resolve, reject) => {
        const req = request({ socketPath, path, method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            let json: Record<string, unknown> | undefined;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, json, ms: performance.now() - started });
          });
        });
        req.on('error', reject);
        if (body !== undefined) req.end(Buffer.from(body));
        else req.end();
      });
    }

    it('2,000 fuzzed bodies on the POST routes: 200 or 400 with {schema, code, message}, never a 500', async () => {
      const routes: [string, string][] = [
        ['/v1/init', 'parseInitRequest'],
        ['/v1/tokens', 'parseTokenCreateRequest'],
        ['/v1/tokens/revoke', 'parseTokenRevokeRequest'],
        ['/v1/ping', 'parsePingRequest'],
        ['/v1/join', 'parseJoinRequest'],
        ['/v1/expose', 'parseExposeRequest'],
        ['/v1/unexpose', 'parseUnexposeRequest'],
      ];
      const statuses = new Map<number, number>();
      let n = 0;
      for (const [path, parser] of routes) {
        const samples = fc.sample(bodies(VALID_BODIES[parser]!), { seed: SEED + n++, numRuns: Math.ceil(2_000 / routes.length) });
        for (const body of samples) {
          const answer = await post(path, body);
          statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
          expect([200, 400], `${path} ${showInput(body)} → ${answer.status} ${JSON.stringify(answer.json)}`).toContain(answer.status);
          if (answer.status !== 200) {
            expect(answer.json?.['schema']).toBe(1);
            expect(answer.json?.['code']).toBe(ErrorCodes.INVALID_ARGUMENT);
            expect(typeof answer.json?.['message']).toBe('string');
          }
        }
      }
      console.log(`[fuzz] control ControlServer over its socket: ${[...statuses.values()].reduce((a, b) => a + b, 0)} requests, statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
      expect(errorLogs).toEqual([]);
    }, 120_000);

    it('a declared body of 10 GiB is refused with 413 before a byte of it is read', async () => {
      // no body follows: an answer that waited for one would hang until the request timeout
      const answer = await post('/v1/expose', undefined, { 'content-length': String(10 * 2 ** 30) });
      expect(answer.status).toBe(413);
      expect(answer.json?.['code']).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(answer.ms).toBeLessThan(2_000);
      console.log(`[fuzz] control 10 GiB content-length: 413 in ${answer.ms.toFixed(1)} ms`);
    });
  });
});
