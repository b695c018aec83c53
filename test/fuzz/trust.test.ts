import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Ed25519Private, X25519Private } from '../../src/crypto/keys/index.js';
import { ErrorCodes } from '../../src/errors.js';
import { TOKEN_PREFIX, createToken, issueCert, meshIdOf, nodeIdOf, parseToken, verifyCert } from '../../src/mesh/index.js';
import { concatBytes, equalBytes, fromBase64Url, toBase64Url, utf8Bytes } from '../../src/util/bytes.js';
import { seededRandom } from '../../src/util/random.js';
import { decodeSigned, encodeSigned } from '../../src/wire/index.js';
import { TEN_GIB, expectCheapRejection, fuzzDecoder, mutatedFrom, varint } from './harness.js';

/**
 * The trust decoders: join tokens (parseToken: prefix, base64url, protobuf, authority signature,
 * pins, expiry) and node certificates (verifyCert: protobuf, authority signature, mesh, node id,
 * expiry, Noise key). Seed 0x7a057. Inputs are valid tokens and certificates mutated outside the
 * signature (the signature must catch it) and inside it, re-signed by the authority (the checks
 * after the signature must catch it).
 */
const SEED = 0x7a057;
const NOW = 1_800_000_000_000;
const DAY = 86_400_000;

const authority = Ed25519Private.fromPrivate(new Uint8Array(32).fill(0x11));
const otherAuthority = Ed25519Private.fromPrivate(new Uint8Array(32).fill(0x22));
const node = { signing: Ed25519Private.fromPrivate(new Uint8Array(32).fill(0x33)), noise: X25519Private.fromPrivate(new Uint8Array(32).fill(0x44)) };
const TOKEN_CONTEXT = utf8Bytes('osmoda-mesh token v1\0');
const CERT_CONTEXT = utf8Bytes('osmoda-mesh cert v1\0');

// ---- tokens ---------------------------------------------------------------------------------

function makeToken(signer: Ed25519Private, endpoints: string[], expiresAtMs: number, seed: number): string {
  const rnd = seededRandom(seed);
  return createToken(signer, { meshName: 'prod', issuerEndpoints: endpoints, issuerX25519: node.noise.publicKey, tokenId: rnd.bytes(16), secret: rnd.bytes(32), expiresAtMs });
}

const validTokens: string[] = [
  makeToken(authority, ['ws://203.0.113.10:18800'], NOW + DAY, 1),
  makeToken(authority, ['ws://203.0.113.10:18800', 'wss://mesh.example.test'], NOW + 1, 2),
  makeToken(authority, [], NOW + DAY, 3), // no endpoint: refused
  makeToken(authority, ['ws://a'], NOW - 1, 4), // expired
  makeToken(otherAuthority, ['ws://b'], NOW + DAY, 5), // another mesh, self-consistent
];
const tokenBytes = validTokens.map((t) => fromBase64Url(t.slice(TOKEN_PREFIX.length))!);
const tokenBodies = tokenBytes.map((b) => decodeSigned('token', b).body);

/** A token whose body was changed and then signed again by the authority (signature valid). */
function resigned(bodies: Uint8Array[], signer: Ed25519Private, context: Uint8Array, kind: 'token' | 'cert'): fc.Arbitrary<Uint8Array> {
  return mutatedFrom(bodies, 200).map((body) => encodeSigned(kind, { body, signature: signer.sign(concatBytes(context, body)) }));
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const ODD_CHARS = [' ', '\n', '\t', '=', '+', '/', '.', '!', 'é', '\u0000', '\u200b', '😀'];

/** Text-level damage a token suffers on its way through a chat window or a file. */
function mutatedText(tokens: string[]): fc.Arbitrary<string> {
  return fc.tuple(fc.nat(), fc.nat(11), fc.nat(), fc.nat(), fc.nat()).map(([pick, op, a, b, seed]) => {
    const t = tokens[pick % tokens.length]!;
    const rnd = seededRandom(seed);
    const at = a % (t.length + 1);
    switch (op) {
      case 0:
        return t;
      case 1: {
        const chars = [...t];
        for (let i = 0; i < 1 + (b % 4); i++) chars[Math.floor(rnd.float() * chars.length)] = B64URL[Math.floor(rnd.float() * 64)]!;
        return chars.join('');
      }
      case 2:
        return t.slice(0, at) + ODD_CHARS[b % ODD_CHARS.length]! + t.slice(at + 1);
      case 3:
        return t.slice(0, at);
      case 4:
        return t.slice(0, at) + t.slice(at, at + 1 + (b % 40)).repeat(2) + t.slice(at + 1 + (b % 40));
      case 5:
        return ['osmt2_', 'OSMT1_', 'osmt1', '', 'osmt1__', ' osmt1_'][b % 6]! + t.slice(TOKEN_PREFIX.length);
      case 6:
        return `${[' ', '\n', '\r\n', '\t', '\ufeff'][b % 5]}${t}${[' ', '\n', '\r\n', ''][a % 4]}`;
      case 7:
        return t + t.slice(TOKEN_PREFIX.length).repeat(1 + (b % 80)); // up to far beyond 4096 characters
      case 8:
        return TOKEN_PREFIX + Array.from({ length: a % 300 }, () => B64URL[Math.floor(rnd.float() * 64)]).join('');
      case 9:
        return t.toLowerCase();
      case 10:
        return TOKEN_PREFIX + t.slice(TOKEN_PREFIX.length).split('').reverse().join('');
      default:
        return String.fromCharCode(...Array.from({ length: a % 120 }, () => Math.floor(rnd.float() * 0x3000)));
    }
  });
}

const tokenInputs: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: mutatedText(validTokens) },
  { weight: 4, arbitrary: mutatedFrom(tokenBytes, 300).map((b) => TOKEN_PREFIX + toBase64Url(b)) },
  { weight: 2, arbitrary: resigned(tokenBodies, authority, TOKEN_CONTEXT, 'token').map((b) => TOKEN_PREFIX + toBase64Url(b)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
);

function checkedToken(text: string): void {
  const body = parseToken(text, NOW);
  if (!equalBytes(body.meshId, meshIdOf(body.authorityPublic))) throw new Error('accepted a token whose mesh id is not its authority');
  if (body.issuerEndpoints.length === 0) throw new Error('accepted a token without an endpoint');
  if (body.expiresAtMs <= NOW) throw new Error('accepted an expired token');
  if (body.secret.length !== 32 || body.tokenId.length !== 16 || body.issuerX25519.length !== 32) throw new Error('accepted a token with a short field');
}

// ---- certificates ---------------------------------------------------------------------------

const validCerts: Uint8Array[] = [
  issueCert(authority, { meshName: 'prod', name: 'db1', ed25519Public: node.signing.publicKey, x25519Public: node.noise.publicKey, tags: ['db'], isAdmin: false, nowMs: NOW - DAY }),
  issueCert(authority, { meshName: 'prod', name: 'admin', ed25519Public: node.signing.publicKey, x25519Public: node.noise.publicKey, tags: [], isAdmin: true, nowMs: NOW - DAY, lifetimeMs: 2 * DAY }),
  issueCert(authority, { meshName: 'prod', name: 'old', ed25519Public: node.signing.publicKey, x25519Public: node.noise.publicKey, tags: [], isAdmin: false, nowMs: NOW - 2 * DAY, lifetimeMs: DAY }),
  issueCert(authority, { meshName: 'prod', name: 'other-key', ed25519Public: node.signing.publicKey, x25519Public: new Uint8Array(32).fill(9), tags: [], isAdmin: false, nowMs: NOW }),
  issueCert(otherAuthority, { meshName: 'zulu', name: 'rogue', ed25519Public: node.signing.publicKey, x25519Public: node.noise.publicKey, tags: [], isAdmin: true, nowMs: NOW }),
];
const certBodies = validCerts.map((c) => decodeSigned('cert', c).body);

const certInputs: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 6, arbitrary: mutatedFrom(validCerts, 400) },
  { weight: 3, arbitrary: resigned(certBodies, authority, CERT_CONTEXT, 'cert') },
  { weight: 1, arbitrary: resigned(certBodies, otherAuthority, CERT_CONTEXT, 'cert') },
);

function checkedCert(bytes: Uint8Array): void {
  const cert = verifyCert(bytes, { authorityPublic: authority.publicKey, nowMs: NOW, expectedX25519: node.noise.publicKey });
  if (!equalBytes(cert.meshId, meshIdOf(authority.publicKey))) throw new Error('accepted a certificate of another mesh');
  if (!equalBytes(cert.nodeId, nodeIdOf(cert.ed25519Public))) throw new Error('accepted a certificate whose node id is not its key');
  if (cert.expiresAtMs <= NOW) throw new Error('accepted an expired certificate');
  if (!equalBytes(cert.x25519Public, node.noise.publicKey)) throw new Error('accepted a certificate for another Noise key');
}

describe(`trust decoders under fuzzing (seed 0x${SEED.toString(16)})`, () => {
  it('parseToken: 100,000 damaged, mutated and re-signed tokens, only TOKEN_MALFORMED / TOKEN_EXPIRED', () => {
    const report = fuzzDecoder({ name: 'trust parseToken', seed: SEED, input: tokenInputs, decode: checkedToken, allowed: [ErrorCodes.TOKEN_MALFORMED, ErrorCodes.TOKEN_EXPIRED] });
    expect(report.accepted).toBeGreaterThan(1_000);
    expect(report.codes[ErrorCodes.TOKEN_EXPIRED] ?? 0).toBeGreaterThan(100);
  }, 180_000);

  it('verifyCert: 100,000 mutated and re-signed certificates, only the four certificate codes', () => {
    const report = fuzzDecoder({
      name: 'trust verifyCert',
      seed: SEED,
      input: certInputs,
      decode: checkedCert,
      allowed: [ErrorCodes.CERT_INVALID, ErrorCodes.CERT_UNTRUSTED, ErrorCodes.CERT_EXPIRED, ErrorCodes.CERT_KEY_MISMATCH],
    });
    expect(report.accepted).toBeGreaterThan(1_000);
    for (const code of [ErrorCodes.CERT_INVALID, ErrorCodes.CERT_UNTRUSTED, ErrorCodes.CERT_EXPIRED, ErrorCodes.CERT_KEY_MISMATCH]) {
      expect(report.codes[code] ?? 0, code).toBeGreaterThan(100);
    }
  }, 180_000);

  it('a 10 GiB length claim inside a token or a certificate is refused cheaply', () => {
    const claim = varint(TEN_GIB);
    const huge = Uint8Array.from([0x0a, ...claim, 1, 2, 3]);
    expectCheapRejection('token SignedToken.body 10 GiB', () => parseToken(TOKEN_PREFIX + toBase64Url(huge), NOW), [ErrorCodes.TOKEN_MALFORMED]);
    expectCheapRejection('cert SignedCert.body 10 GiB', () => verifyCert(huge, { authorityPublic: authority.publicKey, nowMs: NOW }), [ErrorCodes.CERT_INVALID]);
    // the text itself is capped before it is decoded: a 10 MB paste costs a length check
    const long = TOKEN_PREFIX + 'A'.repeat(10_000_000);
    expectCheapRejection('token of 10 MB', () => parseToken(long, NOW), [ErrorCodes.TOKEN_MALFORMED], 50);
  });

  it('the corpora cover what they claim (sanity of the generators)', () => {
    expect(() => checkedToken(validTokens[0]!)).not.toThrow();
    expect(() => checkedCert(validCerts[0]!)).not.toThrow();
  });
});
