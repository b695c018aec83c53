/**
 * The Noise Protocol Framework, revision 34, with no I/O (modelled on ChainSafe/js-libp2p-noise
 * `src/protocol.ts`, generalised over handshake patterns). Section numbers cite
 * https://noiseprotocol.org/noise_rev34.pdf. Primitives are node:crypto (OpenSSL), except
 * ChaChaPoly, which is libsodium when its addon loads (./aead.ts: 7-30x cheaper per small message).
 */
import { createHash, createHmac } from 'node:crypto';
import { ErrorCodes, MeshError, toMeshError } from '../../errors.js';
import { asBuffer, concatBytes, utf8Bytes } from '../../util/bytes.js';
import type { Random } from '../../util/random.js';
import { X25519Private } from '../keys/index.js';
import type { X25519KeyPair } from '../keys/index.js';
import { TAG_LENGTH, processAead } from './aead.js';
import { parseProtocolName } from './patterns.js';
import type { NoiseHash, NoiseProtocol, Token } from './patterns.js';

/** Spec §3: no Noise message (handshake or transport) may exceed 65535 bytes. */
export const NOISE_MAX_MESSAGE_LENGTH = 65535;
export const NOISE_TAG_LENGTH = TAG_LENGTH;
export const NOISE_KEY_LENGTH = 32;
const DHLEN = 32;
const HASHLEN = 32;

/** 2^64 - 1: spec §5.1 reserves this nonce (Rekey uses it), so it is never used for a message. */
export const NOISE_MAX_NONCE = 0xffff_ffff_ffff_ffffn;

const EMPTY = Buffer.alloc(0);
const ZEROS32 = Buffer.alloc(32);
const U32 = 0x1_0000_0000;

/**
 * Spec §5.1 CipherState: a ChaChaPoly key and a 64-bit message counter.
 *
 * The counter is kept as two uint32 halves so it stays exact past 2^53 without bigint arithmetic
 * on every message. Reaching 2^64-1 raises NOISE_NONCE_EXHAUSTED rather than wrapping, which would
 * reuse a nonce and destroy ChaChaPoly's confidentiality and integrity. The agent never gets near
 * it: it rekeys each direction at least hourly or every 2^30 bytes (SPEC, "Rekey"), but Rekey()
 * keeps the counter (§11.3), so what actually bounds the counter is the tunnel reconnecting with a
 * fresh handshake, which it does long before (2^64 messages is ~58,000 years at 10M msg/s). The
 * check therefore turns nonce reuse from improbable into impossible, like libp2p-noise's nonce.ts.
 */
export class CipherState {
  #key: Buffer | undefined;
  #lo = 0;
  #hi = 0;
  // 96-bit ChaChaPoly nonce (§12.3): 4 zero bytes then the counter little-endian; reused per call.
  readonly #iv = Buffer.alloc(12);

  constructor(key?: Uint8Array) {
    if (key !== undefined) this.initializeKey(key);
  }

  /** §5.1 InitializeKey: an empty or missing key means "no key" (handshake before the first DH). */
  initializeKey(key: Uint8Array | undefined): void {
    if (key === undefined || key.length === 0) {
      this.#key = undefined;
    } else {
      if (key.length !== NOISE_KEY_LENGTH) {
        throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `noise cipher key: expected ${NOISE_KEY_LENGTH} bytes, got ${key.length}`);
      }
      this.#key = Buffer.from(key);
    }
    this.#lo = 0;
    this.#hi = 0;
  }

  hasKey(): boolean {
    return this.#key !== undefined;
  }

  /** §5.1 SetNonce; accepts 0..2^64-1 exactly. */
  setNonce(nonce: bigint): void {
    if (typeof nonce !== 'bigint' || nonce < 0n || nonce > NOISE_MAX_NONCE) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `noise nonce: expected a bigint in 0..2^64-1, got ${String(nonce)}`);
    }
    this.#lo = Number(nonce & 0xffff_ffffn);
    this.#hi = Number(nonce >> 32n);
  }

  /** The next nonce this state will use. */
  get nonce(): bigint {
    return (BigInt(this.#hi) << 32n) | BigInt(this.#lo);
  }

  /** §5.1 EncryptWithAd: ciphertext ‖ 16-byte tag; the plaintext unchanged (copied) when there is no key. */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const key = this.#key;
    if (key === undefined) return new Uint8Array(plaintext);
    this.#checkNonce();
    this.#writeIv(this.#lo, this.#hi);
    const out = seal(key, this.#iv, ad, plaintext);
    this.#increment();
    return out;
  }

  /**
   * EncryptWithAd over a plaintext given as consecutive parts, with empty AD: the same ciphertext as
   * sealing their concatenation (ChaCha20 is a stream cipher), without first copying the parts into
   * one buffer. The tunnel uses it to seal a frame header and a data payload in place.
   */
  encryptParts(parts: readonly Uint8Array[]): Uint8Array {
    const key = this.#key;
    if (key === undefined) return concatBytes(...parts);
    this.#checkNonce();
    this.#writeIv(this.#lo, this.#hi);
    const out = plain(processAead().aead.sealParts(key, this.#iv, EMPTY, parts));
    this.#increment();
    return out;
  }

  /**
   * §5.1 DecryptWithAd. On an authentication failure it raises NOISE_DECRYPT and leaves the nonce
   * where it was (the spec requires it, so a forged message cannot desynchronise the two sides).
   */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    const key = this.#key;
    if (key === undefined) return new Uint8Array(ciphertext);
    this.#checkNonce();
    if (ciphertext.length < NOISE_TAG_LENGTH) {
      throw new MeshError(
        ErrorCodes.NOISE_DECRYPT,
        `noise ciphertext: expected at least ${NOISE_TAG_LENGTH} bytes (the tag), got ${ciphertext.length}`,
        { wireReason: 'noise decrypt failed' },
      );
    }
    this.#writeIv(this.#lo, this.#hi);
    const out = open(key, this.#iv, ad, ciphertext, () => this.nonce);
    this.#increment();
    return out;
  }

  /** §4.2 / §11.3 Rekey: k = ENCRYPT(k, 2^64-1, zerolen, zeros32)[0:32]; the nonce is kept. */
  rekey(): void {
    const key = this.#key;
    if (key === undefined) throw new MeshError(ErrorCodes.NOISE_STATE, 'noise rekey: cipher state has no key');
    const iv = Buffer.alloc(12, 0xff);
    iv.writeUInt32LE(0, 0);
    const next = seal(key, iv, EMPTY, ZEROS32);
    key.fill(0);
    this.#key = Buffer.from(next.subarray(0, NOISE_KEY_LENGTH));
  }

  #checkNonce(): void {
    if (this.#lo === 0xffff_ffff && this.#hi === 0xffff_ffff) {
      throw new MeshError(
        ErrorCodes.NOISE_NONCE_EXHAUSTED,
        'noise nonce: reached 2^64-1, the cipher state is used up; a new handshake is required',
        { wireReason: 'noise nonce exhausted' },
      );
    }
  }

  #writeIv(lo: number, hi: number): void {
    this.#iv.writeUInt32LE(lo, 4);
    this.#iv.writeUInt32LE(hi, 8);
  }

  #increment(): void {
    this.#lo += 1;
    if (this.#lo === U32) {
      this.#lo = 0;
      this.#hi += 1;
    }
  }
}

function seal(key: Buffer, iv: Buffer, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  return plain(processAead().aead.sealParts(key, iv, ad, [plaintext]));
}

/** A plain Uint8Array view of a Buffer (no copy): Uint8Array at the boundaries, so toEqual and
 * subclass checks behave the same for every caller. */
function plain(buf: Buffer): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function open(key: Buffer, iv: Buffer, ad: Uint8Array, ciphertext: Uint8Array, nonce: () => bigint): Uint8Array {
  try {
    return plain(processAead().aead.open(key, iv, ad, ciphertext));
  } catch (err) {
    throw new MeshError(
      ErrorCodes.NOISE_DECRYPT,
      `noise ciphertext: authentication failed (${ciphertext.length} bytes at nonce ${nonce()}); wrong key, tampered or out of order`,
      { cause: err, wireReason: 'noise decrypt failed' },
    );
  }
}

const HASH_ALGORITHMS: Readonly<Record<NoiseHash, string>> = { BLAKE2s: 'blake2s256', SHA256: 'sha256' };

/** Spec §5.2 SymmetricState: chaining key `ck`, handshake hash `h` and the handshake CipherState. */
export class SymmetricState {
  readonly cipherState = new CipherState();
  readonly #algorithm: string;
  #ck: Buffer;
  #h: Buffer;

  /** §5.2 InitializeSymmetric. */
  constructor(protocolName: string, hash: NoiseHash) {
    this.#algorithm = HASH_ALGORITHMS[hash];
    const name = asBuffer(utf8Bytes(protocolName));
    if (name.length <= HASHLEN) {
      this.#h = Buffer.alloc(HASHLEN);
      name.copy(this.#h);
    } else {
      this.#h = this.#hash(name);
    }
    this.#ck = Buffer.from(this.#h);
  }

  mixKey(ikm: Uint8Array): void {
    const [ck, tempK] = this.#hkdf(ikm, 2);
    this.#ck = ck;
    this.cipherState.initializeKey(tempK);
  }

  mixHash(data: Uint8Array): void {
    this.#h = this.#hash(this.#h, asBuffer(data));
  }

  mixKeyAndHash(ikm: Uint8Array): void {
    const [ck, tempH, tempK] = this.#hkdf(ikm, 3);
    this.#ck = ck;
    this.mixHash(tempH!);
    this.cipherState.initializeKey(tempK);
  }

  getHandshakeHash(): Uint8Array {
    return new Uint8Array(this.#h);
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.cipherState.encryptWithAd(this.#h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.cipherState.decryptWithAd(this.#h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  /** §5.2 Split: c1 carries initiator→responder, c2 responder→initiator. */
  split(): [CipherState, CipherState] {
    const [k1, k2] = this.#hkdf(EMPTY, 2);
    // The chaining key could derive these keys again; nothing needs it after Split.
    this.#ck.fill(0);
    return [new CipherState(k1), new CipherState(k2)];
  }

  #hash(...parts: Buffer[]): Buffer {
    const h = createHash(this.#algorithm);
    for (const p of parts) h.update(p);
    return h.digest();
  }

  #hmac(key: Buffer, ...parts: Buffer[]): Buffer {
    const m = createHmac(this.#algorithm, key);
    for (const p of parts) m.update(p);
    return m.digest();
  }

  /** §4.3 HKDF(chaining_key, input_key_material, num_outputs) over HMAC-HASH. */
  #hkdf(ikm: Uint8Array, outputs: 2 | 3): Buffer[] {
    const tempKey = this.#hmac(this.#ck, asBuffer(ikm));
    const out1 = this.#hmac(tempKey, Buffer.of(1));
    const out2 = this.#hmac(tempKey, out1, Buffer.of(2));
    if (outputs === 2) return [out1, out2];
    return [out1, out2, this.#hmac(tempKey, out2, Buffer.of(3))];
  }
}

export interface HandshakeOptions {
  /** e.g. `Noise_XX_25519_ChaChaPoly_BLAKE2s`; see parseProtocolName for what is supported. */
  protocolName: string;
  initiator: boolean;
  prologue?: Uint8Array;
  /** Local static key pair; required when the pattern sends or pre-shares it. */
  s?: X25519KeyPair;
  /** Fixed local ephemeral, only for known-answer vectors and tests; otherwise generated. */
  e?: X25519KeyPair;
  /** The remote static public key known in advance (IK initiator, KK both sides). */
  rs?: Uint8Array;
  /** PSKs in the order the pattern's psk tokens use them; may also be supplied later by setPsk. */
  psks?: readonly Uint8Array[];
  /** Source for ephemeral keys; defaults to node:crypto key generation. */
  random?: Random;
}

export interface SplitCipherStates {
  send: CipherState;
  receive: CipherState;
}

/**
 * Spec §5.3 HandshakeState for any supported pattern.
 *
 * Errors: a call out of turn, after completion or after a failure raises NOISE_STATE. A message
 * rejected before anything is processed (too long, too short, psk not yet set) leaves the state
 * usable. A failure part-way (authentication, small-order key) leaves the state failed: `h` and
 * `ck` have absorbed part of the message, and an error from DECRYPT or DH ends the handshake (§5).
 */
export class HandshakeState {
  readonly protocol: NoiseProtocol;
  readonly isInitiator: boolean;
  readonly #symmetric: SymmetricState;
  readonly #s: X25519Private | undefined;
  #e: X25519Private | undefined;
  #rs: Uint8Array | undefined;
  #re: Uint8Array | undefined;
  readonly #psks: (Uint8Array | undefined)[];
  #pskIndex = 0;
  #messageIndex = 0;
  #isFailed = false;
  #isSplit = false;
  readonly #random: Random | undefined;

  /** Same as `new HandshakeState(options)`, named after spec §5.3 Initialize(). */
  static initialize(options: HandshakeOptions): HandshakeState {
    return new HandshakeState(options);
  }

  constructor(options: HandshakeOptions) {
    const protocol = parseProtocolName(options.protocolName);
    this.protocol = protocol;
    if (typeof options.initiator !== 'boolean') {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `noise initiator: expected a boolean, got ${typeof options.initiator}`);
    }
    this.isInitiator = options.initiator;
    this.#random = options.random;
    const pattern = protocol.pattern;
    const role = this.isInitiator ? 'initiator' : 'responder';

    const localPre = this.isInitiator ? pattern.initiatorPreMessage : pattern.responderPreMessage;
    const remotePre = this.isInitiator ? pattern.responderPreMessage : pattern.initiatorPreMessage;
    const localTokens = new Set<Token>(localPre);
    pattern.messages.forEach((tokens, i) => {
      if (this.#isOwnMessage(i)) for (const t of tokens) localTokens.add(t);
    });
    const needsS = localTokens.has('s');
    const needsRs = remotePre.includes('s');

    if (needsS !== (options.s !== undefined)) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        needsS
          ? `noise s: ${protocol.name} as ${role} needs a local static key, got none`
          : `noise s: ${protocol.name} as ${role} uses no local static key, but one was given`,
      );
    }
    if (needsRs !== (options.rs !== undefined)) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        needsRs
          ? `noise rs: ${protocol.name} as ${role} needs the remote static public key in advance, got none`
          : `noise rs: ${protocol.name} as ${role} learns the remote static key in the handshake, but one was given`,
      );
    }
    this.#s = options.s === undefined ? undefined : X25519Private.from(options.s);
    this.#e = options.e === undefined ? undefined : X25519Private.from(options.e);
    if (options.rs !== undefined) this.#rs = checkPublicKey('noise rs', options.rs);

    const pskCount = pattern.messages.reduce((n, tokens) => n + tokens.filter((t) => t === 'psk').length, 0);
    const psks = options.psks ?? [];
    if (psks.length > pskCount) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `noise psks: ${protocol.name} has ${pskCount} psk token(s), got ${psks.length} psks`);
    }
    this.#psks = Array.from({ length: pskCount }, (_, i) => (psks[i] === undefined ? undefined : checkPsk(psks[i]!)));

    const prologue = options.prologue ?? EMPTY;
    if (!(prologue instanceof Uint8Array)) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `noise prologue: expected a Uint8Array, got ${typeof prologue}`);
    }

    this.#symmetric = new SymmetricState(protocol.name, protocol.hash);
    this.#symmetric.mixHash(prologue);
    // §7.3: the initiator's pre-message keys are hashed first, then the responder's.
    this.#mixPreMessage(pattern.initiatorPreMessage, this.isInitiator);
    this.#mixPreMessage(pattern.responderPreMessage, !this.isInitiator);
  }

  get isComplete(): boolean {
    return this.#messageIndex >= this.protocol.pattern.messages.length;
  }

  get isFailed(): boolean {
    return this.#isFailed;
  }

  /** True when the next step is writeMessage (false once complete). */
  get isWriteTurn(): boolean {
    return !this.isComplete && this.#isOwnMessage(this.#messageIndex);
  }

  /** Index of the next handshake message (0-based). */
  get messageIndex(): number {
    return this.#messageIndex;
  }

  /** The peer's static public key, once known (pre-message or received `s`). */
  get remoteStatic(): Uint8Array | undefined {
    return this.#rs === undefined ? undefined : new Uint8Array(this.#rs);
  }

  get localStatic(): Uint8Array | undefined {
    return this.#s === undefined ? undefined : new Uint8Array(this.#s.publicKey);
  }

  /** `h` (spec §5.2 GetHandshakeHash); a channel binding once the handshake is complete. */
  get handshakeHash(): Uint8Array {
    return this.#symmetric.getHandshakeHash();
  }

  /**
   * Supplies the PSK for psk token `index` (default: the next unprocessed one). Allowed any time
   * before that token is processed: an XXpsk3 responder learns which join token is in use only from
   * message 1's payload.
   */
  setPsk(psk: Uint8Array, index = this.#pskIndex): void {
    if (this.#isFailed) throw new MeshError(ErrorCodes.NOISE_STATE, 'noise setPsk: the handshake has failed');
    if (!Number.isInteger(index) || index < this.#pskIndex || index >= this.#psks.length) {
      throw new MeshError(
        ErrorCodes.NOISE_STATE,
        `noise setPsk: psk index ${index} is not pending (${this.#psks.length} psk token(s), ${this.#pskIndex} already processed)`,
      );
    }
    this.#psks[index] = checkPsk(psk);
  }

  writeMessage(payload: Uint8Array = EMPTY): Uint8Array {
    this.#checkTurn(true);
    if (!(payload instanceof Uint8Array)) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `noise payload: expected a Uint8Array, got ${typeof payload}`);
    }
    const tokens = this.protocol.pattern.messages[this.#messageIndex]!;
    const overhead = this.#overhead(tokens);
    if (overhead + payload.length > NOISE_MAX_MESSAGE_LENGTH) {
      throw new MeshError(
        ErrorCodes.FRAME_TOO_LARGE,
        `noise handshake message ${this.#messageIndex + 1}: payload of ${payload.length} bytes makes ${overhead + payload.length} bytes, max ${NOISE_MAX_MESSAGE_LENGTH}`,
      );
    }
    this.#checkPskReady(tokens);
    try {
      const ss = this.#symmetric;
      const parts: Uint8Array[] = [];
      for (const token of tokens) {
        switch (token) {
          case 'e': {
            const e = this.#e ?? this.#generateEphemeral();
            this.#e = e;
            parts.push(e.publicKey);
            ss.mixHash(e.publicKey);
            if (this.protocol.pattern.isPsk) ss.mixKey(e.publicKey);
            break;
          }
          case 's':
            parts.push(ss.encryptAndHash(this.#s!.publicKey));
            break;
          case 'psk':
            ss.mixKeyAndHash(this.#psks[this.#pskIndex++]!);
            break;
          default:
            ss.mixKey(this.#dh(token));
        }
      }
      parts.push(ss.encryptAndHash(payload));
      this.#messageIndex++;
      return concatBytes(...parts);
    } catch (err) {
      this.#isFailed = true;
      throw inContext(err, `noise writeMessage ${this.#messageIndex + 1}`);
    }
  }

  /** Processes one handshake message from the peer and returns its decrypted payload. */
  readMessage(message: Uint8Array): Uint8Array {
    this.#checkTurn(false);
    if (!(message instanceof Uint8Array)) {
      throw new MeshError(ErrorCodes.MALFORMED_FRAME, `noise handshake message: expected a Uint8Array, got ${typeof message}`);
    }
    const number = this.#messageIndex + 1;
    if (message.length > NOISE_MAX_MESSAGE_LENGTH) {
      throw new MeshError(
        ErrorCodes.FRAME_TOO_LARGE,
        `noise handshake message ${number}: ${message.length} bytes, max ${NOISE_MAX_MESSAGE_LENGTH}`,
        { wireReason: 'noise message too large' },
      );
    }
    const tokens = this.protocol.pattern.messages[this.#messageIndex]!;
    const minimum = this.#overhead(tokens);
    if (message.length < minimum) {
      throw new MeshError(
        ErrorCodes.MALFORMED_FRAME,
        `noise handshake message ${number}: expected at least ${minimum} bytes for tokens [${tokens.join(', ')}], got ${message.length}`,
        { wireReason: 'noise message truncated' },
      );
    }
    this.#checkPskReady(tokens);
    try {
      const ss = this.#symmetric;
      let offset = 0;
      for (const token of tokens) {
        switch (token) {
          case 'e': {
            const re = message.slice(offset, offset + DHLEN);
            offset += DHLEN;
            this.#re = re;
            ss.mixHash(re);
            if (this.protocol.pattern.isPsk) ss.mixKey(re);
            break;
          }
          case 's': {
            const length = DHLEN + (ss.cipherState.hasKey() ? NOISE_TAG_LENGTH : 0);
            this.#rs = ss.decryptAndHash(message.subarray(offset, offset + length));
            offset += length;
            break;
          }
          case 'psk':
            ss.mixKeyAndHash(this.#psks[this.#pskIndex++]!);
            break;
          default:
            ss.mixKey(this.#dh(token));
        }
      }
      const payload = ss.decryptAndHash(message.subarray(offset));
      this.#messageIndex++;
      return payload;
    } catch (err) {
      this.#isFailed = true;
      throw inContext(err, `noise readMessage ${number}`);
    }
  }

  /**
   * §5.2 Split, oriented for this side. Allowed once, after the last handshake message: a second
   * pair of CipherStates with the same keys would reuse nonces.
   */
  split(): SplitCipherStates {
    if (!this.isComplete || this.#isFailed) {
      throw new MeshError(ErrorCodes.NOISE_STATE, `noise split: the handshake is not complete (next message ${this.#messageIndex + 1})`);
    }
    if (this.#isSplit) throw new MeshError(ErrorCodes.NOISE_STATE, 'noise split: already called; the cipher states exist once');
    this.#isSplit = true;
    const [c1, c2] = this.#symmetric.split();
    return this.isInitiator ? { send: c1, receive: c2 } : { send: c2, receive: c1 };
  }

  #isOwnMessage(index: number): boolean {
    // Every supported pattern starts with `->`: even messages are the initiator's.
    return (index % 2 === 0) === this.isInitiator;
  }

  #checkTurn(isWrite: boolean): void {
    const op = isWrite ? 'writeMessage' : 'readMessage';
    if (this.#isFailed) throw new MeshError(ErrorCodes.NOISE_STATE, `noise ${op}: the handshake has already failed`);
    if (this.isComplete) throw new MeshError(ErrorCodes.NOISE_STATE, `noise ${op}: the handshake is complete; use split()`);
    if (this.#isOwnMessage(this.#messageIndex) !== isWrite) {
      throw new MeshError(
        ErrorCodes.NOISE_STATE,
        `noise ${op}: out of turn, message ${this.#messageIndex + 1} is to be ${isWrite ? 'read' : 'written'} by the ${this.isInitiator ? 'initiator' : 'responder'}`,
      );
    }
  }

  #checkPskReady(tokens: readonly Token[]): void {
    let next = this.#pskIndex;
    for (const t of tokens) {
      if (t !== 'psk') continue;
      if (this.#psks[next] === undefined) {
        throw new MeshError(ErrorCodes.NOISE_STATE, `noise psk: message ${this.#messageIndex + 1} needs psk ${next}, call setPsk() first`);
      }
      next++;
    }
  }

  /** Bytes a message with `tokens` adds around its payload, given the key state now. */
  #overhead(tokens: readonly Token[]): number {
    let hasKey = this.#symmetric.cipherState.hasKey();
    let n = 0;
    for (const t of tokens) {
      if (t === 'e') {
        n += DHLEN;
        if (this.protocol.pattern.isPsk) hasKey = true;
      } else if (t === 's') {
        n += DHLEN + (hasKey ? NOISE_TAG_LENGTH : 0);
      } else {
        hasKey = true;
      }
    }
    return n + (hasKey ? NOISE_TAG_LENGTH : 0);
  }

  #mixPreMessage(tokens: readonly Token[], isLocal: boolean): void {
    for (const t of tokens) {
      if (t === 's') {
        this.#symmetric.mixHash(isLocal ? this.#s!.publicKey : this.#rs!);
      } else {
        // No supported pattern pre-shares anything but `s`; refuse rather than guess.
        throw new MeshError(ErrorCodes.INTERNAL, `noise pre-message token '${t}' is not supported`);
      }
    }
  }

  #dh(token: Exclude<Token, 'e' | 's' | 'psk'>): Uint8Array {
    // §7: the first letter names the initiator's key, the second the responder's.
    const [initKey, respKey] = [token[0] as 'e' | 's', token[1] as 'e' | 's'];
    const localKind = this.isInitiator ? initKey : respKey;
    const remoteKind = this.isInitiator ? respKey : initKey;
    const local = localKind === 'e' ? this.#e : this.#s;
    const remote = remoteKind === 'e' ? this.#re : this.#rs;
    if (local === undefined || remote === undefined) {
      throw new MeshError(ErrorCodes.NOISE_STATE, `noise token '${token}': a key is missing (local ${localKind} or remote ${remoteKind})`);
    }
    return local.dh(remote);
  }

  #generateEphemeral(): X25519Private {
    return this.#random === undefined ? X25519Private.generate() : X25519Private.fromPrivate(this.#random.bytes(DHLEN));
  }
}

function checkPublicKey(field: string, key: Uint8Array): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== DHLEN) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field}: expected a ${DHLEN}-byte X25519 public key, got ${key instanceof Uint8Array ? `${key.length} bytes` : typeof key}`);
  }
  return new Uint8Array(key);
}

function checkPsk(psk: Uint8Array): Uint8Array {
  if (!(psk instanceof Uint8Array) || psk.length !== 32) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `noise psk: expected 32 bytes, got ${psk instanceof Uint8Array ? `${psk.length} bytes` : typeof psk}`);
  }
  return new Uint8Array(psk);
}

/** Prefixes which handshake step failed, keeping the code, the wire reason and the original as cause. */
function inContext(err: unknown, context: string): MeshError {
  if (!(err instanceof MeshError)) return toMeshError(err, ErrorCodes.INTERNAL, context);
  return new MeshError(err.code, `${context}: ${err.message}`, { cause: err, wireReason: err.wireReason });
}
