import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Ed25519Private, X25519Private } from '../../../src/crypto/keys/index.js';
import { ErrorCodes } from '../../../src/errors.js';
import { issueCert, meshIdOf, verifyCert } from '../../../src/mesh/certs.js';
import { IDENTITY_FILE, loadOrCreateIdentity, nodeIdOf } from '../../../src/mesh/identity.js';
import { Membership, signRecord, verifyRecord } from '../../../src/mesh/membership.js';
import { ensureStateDir, readJsonFile, readSecretFile, writeFileAtomic, writeJsonFile } from '../../../src/mesh/state-files.js';
import { TOKENS_FILE, TOKEN_PREFIX, TokenStore, createToken, joinPsk, parseToken } from '../../../src/mesh/tokens.js';
import { concatBytes, toBase64Url, toHex, utf8Bytes } from '../../../src/util/bytes.js';
import { seededRandom } from '../../../src/util/random.js';
import { decodeSigned, encodeCertBody, encodeSigned, encodeTokenBody, decodeTokenBody } from '../../../src/wire/index.js';
import { expectMeshError } from '../../helpers/mesh-error.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const DAY = 86_400_000;


interface NodeKeys {
  signing: Ed25519Private;
  noise: X25519Private;
}

function nodeKeys(): NodeKeys {
  return { signing: Ed25519Private.generate(), noise: X25519Private.generate() };
}

function certFor(authority: Ed25519Private, node: NodeKeys, name: string, extra: { nowMs?: number; lifetimeMs?: number } = {}): Uint8Array {
  return issueCert(authority, {
    meshName: 'prod',
    name,
    ed25519Public: node.signing.publicKey,
    x25519Public: node.noise.publicKey,
    tags: ['db'],
    isAdmin: false,
    nowMs: extra.nowMs ?? NOW,
    ...(extra.lifetimeMs === undefined ? {} : { lifetimeMs: extra.lifetimeMs }),
  });
}

/** Signs a hand-made certificate body the way issueCert does (context string from SPEC/proto). */
function signCertBody(authority: Ed25519Private, body: Parameters<typeof encodeCertBody>[0]): Uint8Array {
  const bytes = encodeCertBody(body);
  return encodeSigned('cert', { body: bytes, signature: authority.sign(concatBytes(utf8Bytes('osmoda-mesh cert v1\0'), bytes)) });
}

/** Replaces the first occurrence of `from` (as UTF-8) inside `bytes` with `to` of the same length. */
function replaceText(bytes: Uint8Array, from: string, to: string): Uint8Array {
  const a = Buffer.from(from);
  const b = Buffer.from(to);
  expect(b.length).toBe(a.length);
  const at = Buffer.from(bytes).indexOf(a);
  expect(at, `'${from}' not found`).toBeGreaterThanOrEqual(0);
  const out = Uint8Array.from(bytes);
  out.set(b, at);
  return out;
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'osmt-trust-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('certificates', () => {
  const authority = Ed25519Private.generate();
  const node = nodeKeys();

  it('a certificate from the mesh authority verifies and carries its fields', () => {
    const bytes = certFor(authority, node, 'server2');
    const cert = verifyCert(bytes, { authorityPublic: authority.publicKey, nowMs: NOW + DAY, expectedX25519: node.noise.publicKey });
    expect(cert.name).toBe('server2');
    expect(cert.meshName).toBe('prod');
    expect(toHex(cert.meshId)).toBe(toHex(meshIdOf(authority.publicKey)));
    expect(cert.nodeIdHex).toBe(toHex(nodeIdOf(node.signing.publicKey)));
    expect(cert.tags).toEqual(['db']);
    expect(cert.issuedAtMs).toBe(NOW);
    expect(cert.expiresAtMs).toBe(NOW + 365 * DAY);
    expect(cert.isAdmin).toBe(false);
    expect(cert.bytes).toBe(bytes);
  });

  it('a certificate from another authority → CERT_UNTRUSTED', () => {
    const other = Ed25519Private.generate();
    const err = expectMeshError(
      () => verifyCert(certFor(other, node, 'rogue'), { authorityPublic: authority.publicKey, nowMs: NOW }),
      ErrorCodes.CERT_UNTRUSTED,
      /certificate for 'rogue' is not signed by this mesh's authority/,
    );
    expect(err.wireReason).toBe('untrusted-cert');
  });

  it('signed by the authority but naming another mesh id → CERT_UNTRUSTED (wrong-mesh)', () => {
    const bytes = signCertBody(authority, {
      version: 1,
      meshId: new Uint8Array(16).fill(7),
      meshName: 'prod',
      nodeId: nodeIdOf(node.signing.publicKey),
      name: 'odd',
      ed25519Public: node.signing.publicKey,
      x25519Public: node.noise.publicKey,
      tags: [],
      issuedAtMs: NOW,
      expiresAtMs: NOW + DAY,
      isAdmin: false,
    });
    const err = expectMeshError(() => verifyCert(bytes, { authorityPublic: authority.publicKey, nowMs: NOW }), ErrorCodes.CERT_UNTRUSTED, /belongs to another mesh/);
    expect(err.wireReason).toBe('wrong-mesh');
  });

  it('a node id that does not match the key → CERT_INVALID', () => {
    const bytes = signCertBody(authority, {
      version: 1,
      meshId: meshIdOf(authority.publicKey),
      meshName: 'prod',
      nodeId: new Uint8Array(16),
      name: 'odd',
      ed25519Public: node.signing.publicKey,
      x25519Public: node.noise.publicKey,
      tags: [],
      issuedAtMs: NOW,
      expiresAtMs: NOW + DAY,
      isAdmin: false,
    });
    expectMeshError(() => verifyCert(bytes, { authorityPublic: authority.publicKey, nowMs: NOW }), ErrorCodes.CERT_INVALID, /node id does not match its key/);
  });

  it('expired → CERT_EXPIRED with the expiry time; valid until the last millisecond', () => {
    const bytes = certFor(authority, node, 'old', { lifetimeMs: DAY });
    expect(verifyCert(bytes, { authorityPublic: authority.publicKey, nowMs: NOW + DAY - 1 }).name).toBe('old');
    const err = expectMeshError(
      () => verifyCert(bytes, { authorityPublic: authority.publicKey, nowMs: NOW + DAY }),
      ErrorCodes.CERT_EXPIRED,
      `certificate for 'old' expired at ${new Date(NOW + DAY).toISOString()}`,
    );
    expect(err.wireReason).toBe('expired-cert');
  });

  it('an X25519 key other than the Noise remote static → CERT_KEY_MISMATCH', () => {
    const bytes = certFor(authority, node, 'server2');
    expectMeshError(
      () => verifyCert(bytes, { authorityPublic: authority.publicKey, nowMs: NOW, expectedX25519: X25519Private.generate().publicKey }),
      ErrorCodes.CERT_KEY_MISMATCH,
      /names another Noise key/,
    );
  });

  it('a tampered body (name changed, admin flag flipped) → CERT_UNTRUSTED', () => {
    const bytes = certFor(authority, node, 'server2');
    const signed = decodeSigned('cert', bytes);
    const renamed = encodeSigned('cert', { body: replaceText(signed.body, 'server2', 'server3'), signature: signed.signature });
    expectMeshError(() => verifyCert(renamed, { authorityPublic: authority.publicKey, nowMs: NOW }), ErrorCodes.CERT_UNTRUSTED, /'server3' is not signed/);
    // append is_admin=true (field 11, varint): a later field wins in protobuf decoding
    const promoted = encodeSigned('cert', { body: concatBytes(signed.body, Uint8Array.from([0x58, 0x01])), signature: signed.signature });
    expectMeshError(() => verifyCert(promoted, { authorityPublic: authority.publicKey, nowMs: NOW }), ErrorCodes.CERT_UNTRUSTED);
  });

  it('a flipped signature byte → CERT_UNTRUSTED; garbage → CERT_INVALID', () => {
    const signed = decodeSigned('cert', certFor(authority, node, 'server2'));
    const sig = Uint8Array.from(signed.signature);
    sig[10] = sig[10]! ^ 0x01;
    expectMeshError(() => verifyCert(encodeSigned('cert', { body: signed.body, signature: sig }), { authorityPublic: authority.publicKey, nowMs: NOW }), ErrorCodes.CERT_UNTRUSTED);
    expectMeshError(() => verifyCert(Uint8Array.from([1, 2, 3, 4]), { authorityPublic: authority.publicKey, nowMs: NOW }), ErrorCodes.CERT_INVALID, /^certificate: /);
    expectMeshError(() => verifyCert(new Uint8Array(0), { authorityPublic: authority.publicKey, nowMs: NOW }), ErrorCodes.CERT_INVALID);
  });
});

describe('join tokens', () => {
  const authority = Ed25519Private.generate();
  const issuerX25519 = X25519Private.generate().publicKey;
  const make = (expiresAtMs: number, endpoints = ['ws://127.0.0.1:18800']): string =>
    createToken(authority, {
      meshName: 'prod',
      issuerEndpoints: endpoints,
      issuerX25519,
      tokenId: new Uint8Array(16).fill(1),
      secret: new Uint8Array(32).fill(2),
      expiresAtMs,
    });

  it('round trip: parseToken returns what createToken put in', () => {
    const token = make(NOW + DAY);
    expect(token.startsWith(TOKEN_PREFIX)).toBe(true);
    expect(token.slice(TOKEN_PREFIX.length)).toMatch(/^[A-Za-z0-9_-]+$/);
    const body = parseToken(`  ${token}\n`, NOW);
    expect(body.meshName).toBe('prod');
    expect(toHex(body.meshId)).toBe(toHex(meshIdOf(authority.publicKey)));
    expect(toHex(body.authorityPublic)).toBe(toHex(authority.publicKey));
    expect(body.issuerEndpoints).toEqual(['ws://127.0.0.1:18800']);
    expect(toHex(body.issuerX25519)).toBe(toHex(issuerX25519));
    expect(toHex(body.tokenId)).toBe('01'.repeat(16));
    expect(toHex(body.secret)).toBe('02'.repeat(32));
    expect(body.expiresAtMs).toBe(NOW + DAY);
  });

  it('expired → TOKEN_EXPIRED naming the ISO time and the fix', () => {
    const expiresAtMs = NOW - 1000;
    const err = expectMeshError(() => parseToken(make(expiresAtMs), NOW), ErrorCodes.TOKEN_EXPIRED);
    expect(err.message).toContain(new Date(expiresAtMs).toISOString());
    expect(err.message).toContain('osmoda-mesh token create');
    // expiry is inclusive: a token is dead at its expiry instant
    expectMeshError(() => parseToken(make(NOW), NOW), ErrorCodes.TOKEN_EXPIRED);
  });

  it('a character flipped in the middle → TOKEN_MALFORMED', () => {
    const token = make(NOW + DAY);
    const payload = token.slice(TOKEN_PREFIX.length);
    // every position in the middle half, so the test does not hinge on one lucky byte
    const from = Math.floor(payload.length / 4);
    const to = Math.floor((3 * payload.length) / 4);
    for (let i = from; i < to; i++) {
      const c = payload[i]!;
      const replacement = c === 'A' ? 'B' : 'A';
      const tampered = TOKEN_PREFIX + payload.slice(0, i) + replacement + payload.slice(i + 1);
      const err = expectMeshError(() => parseToken(tampered, NOW), ErrorCodes.TOKEN_MALFORMED);
      expect(err.message.startsWith('join token: ')).toBe(true);
      expect(err.message).not.toContain(payload.slice(0, 20));
    }
  });

  it('a changed body byte (re-encoded, signature kept) → TOKEN_MALFORMED "tampered"', () => {
    const signed = decodeSigned('token', Buffer.from(make(NOW + DAY).slice(TOKEN_PREFIX.length), 'base64url'));
    const body = decodeTokenBody(signed.body);
    // a longer expiry, or another issuer endpoint: what an attacker would change
    const forged = encodeTokenBody({ ...body, expiresAtMs: NOW + 1000 * DAY });
    const token = TOKEN_PREFIX + toBase64Url(encodeSigned('token', { body: forged, signature: signed.signature }));
    expectMeshError(() => parseToken(token, NOW), ErrorCodes.TOKEN_MALFORMED, /signature does not match its contents \(tampered with or corrupted\)/);
    const redirected = replaceText(signed.body, '127.0.0.1', '127.0.0.2');
    const token2 = TOKEN_PREFIX + toBase64Url(encodeSigned('token', { body: redirected, signature: signed.signature }));
    expectMeshError(() => parseToken(token2, NOW), ErrorCodes.TOKEN_MALFORMED, /tampered/);
  });

  it('a token re-signed by another authority but claiming this mesh id → TOKEN_MALFORMED', () => {
    const other = Ed25519Private.generate();
    const signed = decodeSigned('token', Buffer.from(make(NOW + DAY).slice(TOKEN_PREFIX.length), 'base64url'));
    const body = decodeTokenBody(signed.body);
    const swapped = encodeTokenBody({ ...body, authorityPublic: other.publicKey });
    const sig = other.sign(concatBytes(utf8Bytes('osmoda-mesh token v1\0'), swapped));
    const token = TOKEN_PREFIX + toBase64Url(encodeSigned('token', { body: swapped, signature: sig }));
    expectMeshError(() => parseToken(token, NOW), ErrorCodes.TOKEN_MALFORMED, /mesh id does not match its authority key/);
  });

  it('wrong prefix, bad alphabet, truncation, no endpoint, overlong → TOKEN_MALFORMED without echoing the secret', () => {
    const token = make(NOW + DAY);
    const payload = token.slice(TOKEN_PREFIX.length);
    const wrong = expectMeshError(() => parseToken('osmt2_' + payload, NOW), ErrorCodes.TOKEN_MALFORMED, /expected prefix osmt1_, got 'osmt2_…'/);
    expect(wrong.message).not.toContain(payload.slice(0, 10));
    expectMeshError(() => parseToken(payload, NOW), ErrorCodes.TOKEN_MALFORMED, /expected prefix osmt1_/);
    expectMeshError(() => parseToken('', NOW), ErrorCodes.TOKEN_MALFORMED, /expected prefix osmt1_, got ''/);
    expectMeshError(() => parseToken(TOKEN_PREFIX + payload.slice(0, 40) + '+/=' + payload.slice(40), NOW), ErrorCodes.TOKEN_MALFORMED, /not base64url/);
    expectMeshError(() => parseToken(token.slice(0, token.length - 30), NOW), ErrorCodes.TOKEN_MALFORMED, /copied completely|tampered/);
    expectMeshError(() => parseToken(make(NOW + DAY, []), NOW), ErrorCodes.TOKEN_MALFORMED, /names no issuer endpoint/);
    expectMeshError(() => parseToken(TOKEN_PREFIX + 'A'.repeat(5000), NOW), ErrorCodes.TOKEN_MALFORMED, /longer than 4096 characters/);
  });

  it('every token error carries the wire reason bad-token', () => {
    expect(expectMeshError(() => parseToken('x', NOW), ErrorCodes.TOKEN_MALFORMED).wireReason).toBe('bad-token');
    expect(expectMeshError(() => parseToken(make(NOW - 1), NOW), ErrorCodes.TOKEN_EXPIRED).wireReason).toBe('bad-token');
  });
});

describe('TokenStore', () => {
  it('uses=1: X consumes it, Y is refused, X again is a no-op; all of it survives a restart', () => {
    const store = new TokenStore(dir);
    const { id, secret, expiresAtMs } = store.create(seededRandom(7), { nowMs: NOW, ttlMs: DAY, uses: 1 });
    expect(expiresAtMs).toBe(NOW + DAY);
    expect(toHex(store.pskFor(id, NOW))).toBe(toHex(joinPsk(secret, id)));
    expect(store.list()).toEqual([{ id: toHex(id), expiresAtMs, usesLeft: 1 }]);

    store.consume(id, NOW, 'node-x');
    expect(store.list()[0]!.usesLeft).toBe(0);
    const usedUp = expectMeshError(() => store.consume(id, NOW, 'node-y'), ErrorCodes.TOKEN_USED_UP, /no uses left/);
    expect(usedUp.message).toContain('osmoda-mesh token create');
    expectMeshError(() => store.pskFor(id, NOW, 'node-y'), ErrorCodes.TOKEN_USED_UP);
    expectMeshError(() => store.pskFor(id, NOW), ErrorCodes.TOKEN_USED_UP);
    // the node that used it may repeat its join (NixOS restart with the same joinTokenFile)
    expect(() => store.consume(id, NOW, 'node-x')).not.toThrow();
    expect(toHex(store.pskFor(id, NOW, 'node-x'))).toBe(toHex(joinPsk(secret, id)));
    expect(store.list()[0]!.usesLeft).toBe(0);

    const reopened = new TokenStore(dir);
    expect(reopened.list()).toEqual([{ id: toHex(id), expiresAtMs, usesLeft: 0 }]);
    expectMeshError(() => reopened.consume(id, NOW, 'node-y'), ErrorCodes.TOKEN_USED_UP);
    expect(() => reopened.consume(id, NOW, 'node-x')).not.toThrow();
  });

  it('uses=2 counts each distinct node once', () => {
    const store = new TokenStore(dir);
    const { id } = store.create(seededRandom(8), { nowMs: NOW, ttlMs: DAY, uses: 2 });
    store.consume(id, NOW, 'a');
    store.consume(id, NOW, 'a');
    expect(store.list()[0]!.usesLeft).toBe(1);
    store.consume(id, NOW, 'b');
    expect(new TokenStore(dir).list()[0]!.usesLeft).toBe(0);
    expectMeshError(() => store.consume(id, NOW, 'c'), ErrorCodes.TOKEN_USED_UP);
  });

  it('expired and unknown tokens are refused with their own codes', () => {
    const store = new TokenStore(dir);
    const { id, expiresAtMs } = store.create(seededRandom(9), { nowMs: NOW, ttlMs: 1000, uses: 5 });
    const expired = expectMeshError(() => store.pskFor(id, NOW + 1000), ErrorCodes.TOKEN_EXPIRED);
    expect(expired.message).toContain(new Date(expiresAtMs).toISOString());
    expectMeshError(() => store.consume(id, NOW + 5000, 'z'), ErrorCodes.TOKEN_EXPIRED);
    expectMeshError(() => store.pskFor(new Uint8Array(16), NOW), ErrorCodes.TOKEN_UNKNOWN);
    expectMeshError(() => store.consume(new Uint8Array(16), NOW, 'z'), ErrorCodes.TOKEN_UNKNOWN);
  });

  it('the token file is 0600 and holds only the secret hash, never the secret', () => {
    const store = new TokenStore(dir);
    const { secret } = store.create(seededRandom(10), { nowMs: NOW, ttlMs: DAY, uses: 1 });
    const path = join(dir, TOKENS_FILE);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8')).not.toContain(toHex(secret));
  });

  it('a token file readable by others is refused (KEY_FILE_PERMISSIONS)', () => {
    new TokenStore(dir).create(seededRandom(11), { nowMs: NOW, ttlMs: DAY, uses: 1 });
    chmodSync(join(dir, TOKENS_FILE), 0o644);
    expectMeshError(() => new TokenStore(dir), ErrorCodes.KEY_FILE_PERMISSIONS, /chmod 600/);
  });
});

describe('node identity', () => {
  it('is created 0600 on first start and loaded unchanged afterwards', () => {
    const a = loadOrCreateIdentity(dir);
    const path = join(dir, IDENTITY_FILE);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const b = loadOrCreateIdentity(dir);
    expect(b.nodeIdHex).toBe(a.nodeIdHex);
    expect(toHex(b.noise.publicKey)).toBe(toHex(a.noise.publicKey));
    expect(toHex(b.signing.publicKey)).toBe(toHex(a.signing.publicKey));
    expect(a.nodeIdHex).toBe(toHex(nodeIdOf(a.signing.publicKey)));
    expect(a.nodeIdHex).toMatch(/^[0-9a-f]{32}$/);
  });

  it('a 0644 identity file is refused with KEY_FILE_PERMISSIONS naming the path and the fix', () => {
    loadOrCreateIdentity(dir);
    const path = join(dir, IDENTITY_FILE);
    chmodSync(path, 0o644);
    const err = expectMeshError(() => loadOrCreateIdentity(dir), ErrorCodes.KEY_FILE_PERMISSIONS);
    expect(err.message).toContain(path);
    expect(err.message).toContain('644');
    expect(err.message).toContain(`chmod 600 ${path}`);
    chmodSync(path, 0o640);
    expectMeshError(() => loadOrCreateIdentity(dir), ErrorCodes.KEY_FILE_PERMISSIONS);
  });

  it('an identity file with bad keys or bad JSON → STATE_DIR (never a fresh identity)', () => {
    const path = join(dir, IDENTITY_FILE);
    writeFileSync(path, JSON.stringify({ version: 1, ed25519Private: 'zz', x25519Private: '00' }), { mode: 0o600 });
    expectMeshError(() => loadOrCreateIdentity(dir), ErrorCodes.STATE_DIR, /holds no valid keys/);
    writeFileSync(path, '{not json', { mode: 0o600 });
    expectMeshError(() => loadOrCreateIdentity(dir), ErrorCodes.STATE_DIR, /is not valid JSON/);
  });
});

describe('membership', () => {
  const authority = Ed25519Private.generate();
  const self = nodeKeys();
  const b = nodeKeys();
  const selfId = toHex(nodeIdOf(self.signing.publicKey));
  const record = (node: NodeKeys, cert: Uint8Array, seq: number, services: { name: string; ports: number[] }[] = []) =>
    signRecord(node.signing, { cert, seq, endpoints: ['ws://127.0.0.2:18800'], services, updatedAtMs: NOW + seq });

  it('a newer seq wins, a stale or equal one is ignored', () => {
    const m = new Membership(authority.publicKey, selfId);
    const cert = certFor(authority, b, 'b');
    expect(m.apply(record(b, cert, 1), NOW).result).toBe('new');
    expect(m.apply(record(b, cert, 3, [{ name: 'cache', ports: [6379] }]), NOW).result).toBe('updated');
    const stale = m.apply(record(b, cert, 2), NOW);
    expect(stale.result).toBe('stale');
    expect(stale.member.seq).toBe(3);
    expect(m.apply(record(b, cert, 3), NOW).result).toBe('stale');
    const current = m.byName('b')!;
    expect(current.seq).toBe(3);
    expect(current.services).toEqual([{ name: 'cache', ports: [6379] }]);
    expect(m.get(toHex(nodeIdOf(b.signing.publicKey)))?.name).toBe('b');
  });

  it('others() leaves this node out, all() has it', () => {
    const m = new Membership(authority.publicKey, selfId);
    m.apply(record(self, certFor(authority, self, 'self'), 1), NOW, true);
    m.apply(record(b, certFor(authority, b, 'b'), 1), NOW);
    expect(m.all().map((x) => x.name).sort()).toEqual(['b', 'self']);
    expect(m.others().map((x) => x.name)).toEqual(['b']);
  });

  it('a record with a bad signature is rejected and changes nothing', () => {
    const m = new Membership(authority.publicKey, selfId);
    const cert = certFor(authority, b, 'b');
    m.apply(record(b, cert, 1), NOW);
    // signed by someone else's key over b's certificate: a forged update
    const forged = signRecord(nodeKeys().signing, { cert, seq: 9, endpoints: ['ws://198.51.100.1:1'], services: [], updatedAtMs: NOW });
    expectMeshError(() => m.apply(forged, NOW), ErrorCodes.CERT_INVALID, /node record of 'b' has a bad signature/);
    const flipped = record(b, cert, 10);
    const body = Uint8Array.from(flipped.body);
    const idx = Buffer.from(body).indexOf(Buffer.from('127.0.0.2'));
    body[idx + 8] = '9'.charCodeAt(0);
    expectMeshError(() => m.apply({ body, signature: flipped.signature }, NOW), ErrorCodes.CERT_INVALID, /bad signature/);
    expect(m.byName('b')!.seq).toBe(1);
    expect(m.byName('b')!.endpoints).toEqual(['ws://127.0.0.2:18800']);
  });

  it('a record whose certificate is from another mesh is rejected', () => {
    const m = new Membership(authority.publicKey, selfId);
    const otherMesh = Ed25519Private.generate();
    const rec = record(b, certFor(otherMesh, b, 'intruder'), 1);
    expectMeshError(() => m.apply(rec, NOW), ErrorCodes.CERT_UNTRUSTED, /'intruder' is not signed by this mesh's authority/);
    expect(m.all()).toEqual([]);
    expectMeshError(() => verifyRecord(rec, authority.publicKey, NOW), ErrorCodes.CERT_UNTRUSTED);
  });

  it('a record whose certificate expired is rejected', () => {
    const m = new Membership(authority.publicKey, selfId);
    const rec = record(b, certFor(authority, b, 'b', { lifetimeMs: DAY }), 1);
    expectMeshError(() => m.apply(rec, NOW + 2 * DAY), ErrorCodes.CERT_EXPIRED);
  });

  it('toJSON/load round trip skips records that no longer verify', () => {
    const m = new Membership(authority.publicKey, selfId);
    m.apply(record(b, certFor(authority, b, 'b', { lifetimeMs: DAY }), 4), NOW);
    m.apply(record(self, certFor(authority, self, 'self'), 2), NOW, true);
    const json = m.toJSON();
    const reloaded = new Membership(authority.publicKey, selfId);
    expect(reloaded.load(json, NOW)).toBe(0);
    expect(reloaded.byName('b')?.seq).toBe(4);
    const later = new Membership(authority.publicKey, selfId);
    expect(later.load({ records: [...json.records, { body: '***', signature: 'x' }] }, NOW + 2 * DAY)).toBe(2);
    expect(later.all().map((x) => x.name)).toEqual(['self']);
  });
});

describe('state files', () => {
  it('writeFileAtomic writes the content 0600 and leaves no temp file', () => {
    const path = join(dir, 'members.json');
    writeFileAtomic(path, 'one');
    writeFileAtomic(path, utf8Bytes('two'));
    expect(readFileSync(path, 'utf8')).toBe('two');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['members.json']);
  });

  it('writeFileAtomic under a regular file fails with STATE_DIR naming the path (also as root)', () => {
    const file = join(dir, 'file.txt');
    writeFileSync(file, 'x');
    // ENOTDIR does not depend on permission bits, so this fails for root too
    const path = join(file, 'sub', 'state.json');
    const err = expectMeshError(() => writeFileAtomic(path, 'data'), ErrorCodes.STATE_DIR);
    expect(err.message).toContain(`cannot write ${path}`);
    expect(err.message).toMatch(/ENOTDIR|ENOENT/);
    expect(err.cause).toBeDefined();
    expect(readdirSync(dir)).toEqual(['file.txt']);
  });

  it('writeFileAtomic to a path that is a directory fails and removes its temp file', () => {
    const target = join(dir, 'taken');
    mkdirSync(target);
    writeFileSync(join(target, 'inside'), 'x');
    const err = expectMeshError(() => writeFileAtomic(target, 'data'), ErrorCodes.STATE_DIR);
    expect(err.message).toContain(target);
    expect(readdirSync(dir)).toEqual(['taken']);
  });

  it('ensureStateDir creates 0700, tightens a 0755 dir, and refuses a regular file', () => {
    const sub = join(dir, 'state');
    ensureStateDir(sub);
    expect(statSync(sub).mode & 0o777).toBe(0o700);
    chmodSync(sub, 0o755);
    ensureStateDir(sub);
    expect(statSync(sub).mode & 0o777).toBe(0o700);
    const file = join(dir, 'plain');
    writeFileSync(file, '');
    const err = expectMeshError(() => ensureStateDir(file), ErrorCodes.STATE_DIR);
    expect(err.message).toContain(`state dir ${file}`);
  });

  it('readSecretFile: missing → undefined; readJsonFile: bad JSON → STATE_DIR; writeJsonFile round trips', () => {
    expect(readSecretFile(join(dir, 'nope'))).toBeUndefined();
    expect(readJsonFile(join(dir, 'nope'), false)).toBeUndefined();
    const path = join(dir, 'x.json');
    writeJsonFile(path, { a: [1, 2] });
    expect(readJsonFile(path, true)).toEqual({ a: [1, 2] });
    writeFileSync(path, '{', { mode: 0o600 });
    expectMeshError(() => readJsonFile(path, false), ErrorCodes.STATE_DIR, /x\.json is not valid JSON/);
  });
});
