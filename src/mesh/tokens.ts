import { join } from 'node:path';
import { Ed25519Private, ed25519Verify, hkdfSha256, sha256 } from '../crypto/keys/index.js';
import { ErrorCodes, MeshError, truncateSecret } from '../errors.js';
import type { Random } from '../util/random.js';
import { concatBytes, equalBytes, fromBase64Url, fromHex, toBase64Url, toHex, utf8Bytes } from '../util/bytes.js';
import { decodeSigned, decodeTokenBody, encodeSigned, encodeTokenBody, type TokenBody } from '../wire/index.js';
import { meshIdOf } from './certs.js';
import { readJsonFile, writeJsonFile } from './state-files.js';

/** Join tokens (SPEC §3): `osmt1_` + base64url(SignedToken). Bearer secrets: never logged. */

export const TOKEN_PREFIX = 'osmt1_';
const TOKEN_CONTEXT = utf8Bytes('osmoda-mesh token v1\0');
const PSK_INFO = utf8Bytes('osmoda-mesh join psk v1');
const MAX_TOKEN_CHARS = 4096;

export function createToken(authority: Ed25519Private, body: Omit<TokenBody, 'version' | 'meshId' | 'authorityPublic'>): string {
  const full: TokenBody = { ...body, version: 1, meshId: meshIdOf(authority.publicKey), authorityPublic: authority.publicKey };
  const bodyBytes = encodeTokenBody(full);
  const signature = authority.sign(concatBytes(TOKEN_CONTEXT, bodyBytes));
  return TOKEN_PREFIX + toBase64Url(encodeSigned('token', { body: bodyBytes, signature }));
}

function tokenError(code: (typeof ErrorCodes)[keyof typeof ErrorCodes], message: string): MeshError {
  return new MeshError(code, message, { wireReason: 'bad-token' });
}

/**
 * Parses and checks a token offline: prefix, encoding, authority signature (catches a mangled or
 * tampered token before any network traffic), mesh id pin, expiry.
 */
export function parseToken(text: string, nowMs: number): TokenBody {
  const trimmed = text.trim();
  if (!trimmed.startsWith(TOKEN_PREFIX)) {
    throw tokenError(ErrorCodes.TOKEN_MALFORMED, `join token: expected prefix ${TOKEN_PREFIX}, got '${truncateSecret(trimmed, 6)}'`);
  }
  if (trimmed.length > MAX_TOKEN_CHARS) throw tokenError(ErrorCodes.TOKEN_MALFORMED, `join token: longer than ${MAX_TOKEN_CHARS} characters`);
  const bytes = fromBase64Url(trimmed.slice(TOKEN_PREFIX.length));
  if (bytes === undefined) throw tokenError(ErrorCodes.TOKEN_MALFORMED, 'join token: not base64url after the prefix (was it copied completely?)');
  let body: TokenBody;
  let signed;
  try {
    signed = decodeSigned('token', bytes);
    body = decodeTokenBody(signed.body);
  } catch (err) {
    throw new MeshError(ErrorCodes.TOKEN_MALFORMED, `join token: cannot be decoded (${(err as Error).message}); was it copied completely?`, { cause: err, wireReason: 'bad-token' });
  }
  if (!ed25519Verify(body.authorityPublic, concatBytes(TOKEN_CONTEXT, signed.body), signed.signature)) {
    throw tokenError(ErrorCodes.TOKEN_MALFORMED, 'join token: signature does not match its contents (tampered with or corrupted)');
  }
  if (!equalBytes(body.meshId, meshIdOf(body.authorityPublic))) {
    throw tokenError(ErrorCodes.TOKEN_MALFORMED, 'join token: mesh id does not match its authority key');
  }
  if (body.issuerEndpoints.length === 0) {
    throw tokenError(ErrorCodes.TOKEN_MALFORMED, 'join token: names no issuer endpoint (the issuing node has no --public-endpoint)');
  }
  if (body.expiresAtMs <= nowMs) {
    throw tokenError(ErrorCodes.TOKEN_EXPIRED, expiredMessage(body.expiresAtMs));
  }
  return body;
}

export function expiredMessage(expiresAtMs: number): string {
  return `token expired at ${new Date(expiresAtMs).toISOString()} (create a new one with \`osmoda-mesh token create\`)`;
}

/** The XXpsk3 pre-shared key is derived from the token secret, never the secret itself. */
export function joinPsk(secret: Uint8Array, tokenId: Uint8Array): Uint8Array {
  return hkdfSha256(secret, tokenId, PSK_INFO, 32);
}

interface StoredToken {
  id: string;
  secretHash: string;
  /** Kept so the issuer can derive the psk; the file is 0600 like the node key. */
  psk: string;
  createdAtMs: number;
  expiresAtMs: number;
  usesLeft: number;
  /** Node ids that joined with it: a repeated join by the same node is answered again, not counted. */
  usedBy: string[];
}

export const TOKENS_FILE = 'tokens.json';

export interface TokenRecord {
  id: string;
  expiresAtMs: number;
  usesLeft: number;
}

/**
 * The issuer's view of the tokens it created: stored hashed (SHA-256 of the secret) with the
 * derived psk; uses are written to disk before a join is answered.
 */
export class TokenStore {
  readonly #path: string;
  readonly #tokens = new Map<string, StoredToken>();

  constructor(stateDir: string) {
    this.#path = join(stateDir, TOKENS_FILE);
    const stored = readJsonFile<{ tokens: StoredToken[] }>(this.#path, true);
    for (const t of stored?.tokens ?? []) this.#tokens.set(t.id, t);
  }

  #save(): void {
    writeJsonFile(this.#path, { version: 1, tokens: [...this.#tokens.values()] });
  }

  create(random: Random, input: { nowMs: number; ttlMs: number; uses: number }): { id: Uint8Array; secret: Uint8Array; expiresAtMs: number } {
    const id = random.bytes(16);
    const secret = random.bytes(32);
    const expiresAtMs = input.nowMs + input.ttlMs;
    this.prune(input.nowMs);
    this.#tokens.set(toHex(id), {
      id: toHex(id),
      secretHash: toHex(sha256(secret)),
      psk: toHex(joinPsk(secret, id)),
      createdAtMs: input.nowMs,
      expiresAtMs,
      usesLeft: input.uses,
      usedBy: [],
    });
    this.#save();
    return { id, secret, expiresAtMs };
  }

  /** The psk for a token id, or a typed refusal (unknown, expired, used up). */
  pskFor(tokenId: Uint8Array, nowMs: number, joinerNodeId?: string): Uint8Array {
    const token = this.#tokens.get(toHex(tokenId));
    if (token === undefined) throw tokenError(ErrorCodes.TOKEN_UNKNOWN, 'token is not known to this issuer (revoked, or created on another node)');
    if (token.expiresAtMs <= nowMs) throw tokenError(ErrorCodes.TOKEN_EXPIRED, expiredMessage(token.expiresAtMs));
    if (token.usesLeft <= 0 && (joinerNodeId === undefined || !token.usedBy.includes(joinerNodeId))) {
      throw tokenError(ErrorCodes.TOKEN_USED_UP, 'token has no uses left (create a new one with `osmoda-mesh token create`)');
    }
    return fromHex(token.psk);
  }

  /**
   * Counts one use for this node, durably, before the join is answered. A node that already used
   * this token (a restart replaying joinTokenFile) does not use it up again.
   */
  consume(tokenId: Uint8Array, nowMs: number, joinerNodeId: string): void {
    const token = this.#tokens.get(toHex(tokenId));
    if (token === undefined) throw tokenError(ErrorCodes.TOKEN_UNKNOWN, 'token is not known to this issuer');
    if (token.usedBy.includes(joinerNodeId)) return;
    if (token.expiresAtMs <= nowMs) throw tokenError(ErrorCodes.TOKEN_EXPIRED, expiredMessage(token.expiresAtMs));
    if (token.usesLeft <= 0) throw tokenError(ErrorCodes.TOKEN_USED_UP, 'token has no uses left (create a new one with `osmoda-mesh token create`)');
    token.usesLeft -= 1;
    token.usedBy.push(joinerNodeId);
    this.#save();
  }

  /** Forgets a token: later joins with it are refused as unknown. */
  revoke(tokenIdHex: string): boolean {
    const wasKnown = this.#tokens.delete(tokenIdHex);
    if (wasKnown) this.#save();
    return wasKnown;
  }

  list(): TokenRecord[] {
    return [...this.#tokens.values()].map((t) => ({ id: t.id, expiresAtMs: t.expiresAtMs, usesLeft: t.usesLeft }));
  }

  /** Drops tokens expired for more than a day (kept a while so the refusal says "expired"). */
  prune(nowMs: number): void {
    for (const [id, t] of this.#tokens) if (t.expiresAtMs + 86_400_000 < nowMs) this.#tokens.delete(id);
  }
}
