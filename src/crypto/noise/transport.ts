import { ErrorCodes, MeshError } from '../../errors.js';
import { NOISE_MAX_MESSAGE_LENGTH, NOISE_TAG_LENGTH } from './state.js';
import type { CipherState, SplitCipherStates } from './state.js';

/** Largest plaintext one transport message carries: 65535 - 16-byte tag. */
export const NOISE_MAX_PLAINTEXT_LENGTH = NOISE_MAX_MESSAGE_LENGTH - NOISE_TAG_LENGTH;

const EMPTY_AD = new Uint8Array(0);

/**
 * The two post-handshake CipherStates of one tunnel (spec §5, transport phase, empty AD).
 *
 * The fast path lives in CipherState itself (key held as a Buffer, a reused 12-byte nonce buffer,
 * one exact-size output with the tag written in place). This class adds the limits and the
 * counters that the tunnel's rekey policy reads: rekey a direction after an hour or 2^30 bytes.
 * Rekey is one-sided per direction, so the tunnel must tell the peer when to call the matching
 * rekeyReceive(); this class only performs it.
 */
export class NoiseTransport {
  readonly #send: CipherState;
  readonly #receive: CipherState;
  #sentBytes = 0;
  #receivedBytes = 0;
  #sentBytesSinceRekey = 0;
  #receivedBytesSinceRekey = 0;

  constructor(states: SplitCipherStates) {
    if (!states.send.hasKey() || !states.receive.hasKey()) {
      throw new MeshError(ErrorCodes.NOISE_STATE, 'noise transport: both cipher states need a key (call split() after a complete handshake)');
    }
    this.#send = states.send;
    this.#receive = states.receive;
  }

  /** Encrypts one message; raises FRAME_TOO_LARGE above NOISE_MAX_PLAINTEXT_LENGTH. */
  seal(plaintext: Uint8Array): Uint8Array {
    if (plaintext.length > NOISE_MAX_PLAINTEXT_LENGTH) {
      throw new MeshError(
        ErrorCodes.FRAME_TOO_LARGE,
        `noise transport plaintext: ${plaintext.length} bytes, max ${NOISE_MAX_PLAINTEXT_LENGTH} (65535 minus the 16-byte tag)`,
      );
    }
    const out = this.#send.encryptWithAd(EMPTY_AD, plaintext);
    this.#sentBytes += out.length;
    this.#sentBytesSinceRekey += out.length;
    return out;
  }

  /** seal() of the concatenation of `parts`, without building it first (see CipherState.encryptParts). */
  sealParts(parts: readonly Uint8Array[]): Uint8Array {
    let total = 0;
    for (const part of parts) total += part.length;
    if (total > NOISE_MAX_PLAINTEXT_LENGTH) {
      throw new MeshError(ErrorCodes.FRAME_TOO_LARGE, `noise transport plaintext: ${total} bytes, max ${NOISE_MAX_PLAINTEXT_LENGTH} (65535 minus the 16-byte tag)`);
    }
    const out = this.#send.encryptParts(parts);
    this.#sentBytes += out.length;
    this.#sentBytesSinceRekey += out.length;
    return out;
  }

  /**
   * Decrypts one message from the peer. A failure (NOISE_DECRYPT) does not advance the receive
   * nonce, but the tunnel should still close: messages arrive in order, so a bad one means loss
   * or tampering.
   */
  open(ciphertext: Uint8Array): Uint8Array {
    if (ciphertext.length > NOISE_MAX_MESSAGE_LENGTH) {
      throw new MeshError(
        ErrorCodes.FRAME_TOO_LARGE,
        `noise transport message: ${ciphertext.length} bytes, max ${NOISE_MAX_MESSAGE_LENGTH}`,
        { wireReason: 'noise message too large' },
      );
    }
    if (ciphertext.length < NOISE_TAG_LENGTH) {
      throw new MeshError(
        ErrorCodes.MALFORMED_FRAME,
        `noise transport message: expected at least ${NOISE_TAG_LENGTH} bytes (the tag), got ${ciphertext.length}`,
        { wireReason: 'noise message truncated' },
      );
    }
    const out = this.#receive.decryptWithAd(EMPTY_AD, ciphertext);
    this.#receivedBytes += ciphertext.length;
    this.#receivedBytesSinceRekey += ciphertext.length;
    return out;
  }

  /** Noise Rekey() on the send direction (§11.3); the nonce keeps counting. */
  rekeySend(): void {
    this.#send.rekey();
    this.#sentBytesSinceRekey = 0;
  }

  /** Noise Rekey() on the receive direction, matching the peer's rekeySend(). */
  rekeyReceive(): void {
    this.#receive.rekey();
    this.#receivedBytesSinceRekey = 0;
  }

  /** Ciphertext bytes sealed in total (a Number: exact up to 2^53 bytes). */
  get sentBytes(): number {
    return this.#sentBytes;
  }

  /** Ciphertext bytes opened successfully in total. */
  get receivedBytes(): number {
    return this.#receivedBytes;
  }

  get sentBytesSinceRekey(): number {
    return this.#sentBytesSinceRekey;
  }

  get receivedBytesSinceRekey(): number {
    return this.#receivedBytesSinceRekey;
  }

  /** Messages sealed so far (the next send nonce). */
  get sendNonce(): bigint {
    return this.#send.nonce;
  }

  get receiveNonce(): bigint {
    return this.#receive.nonce;
  }
}
