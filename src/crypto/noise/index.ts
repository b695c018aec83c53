export {
  CipherState,
  HandshakeState,
  NOISE_KEY_LENGTH,
  NOISE_MAX_MESSAGE_LENGTH,
  NOISE_MAX_NONCE,
  NOISE_TAG_LENGTH,
  SymmetricState,
} from './state.js';
export type { HandshakeOptions, SplitCipherStates } from './state.js';
export { parsePattern, parseProtocolName } from './patterns.js';
export type { HandshakePattern, NoiseHash, NoiseProtocol, Token } from './patterns.js';
export { NOISE_MAX_PLAINTEXT_LENGTH, NoiseTransport } from './transport.js';
export { processAead } from './aead.js';
export type { AeadName, ChaChaPolyAead } from './aead.js';

/** The tunnel handshake between members: mutual static keys, identity certs in the payloads. */
export const MESH_NOISE_PROTOCOL = 'Noise_XX_25519_ChaChaPoly_BLAKE2s';
/** The join handshake: XX plus the join token's 32-byte secret as psk3 (SPEC, join tokens). */
export const MESH_JOIN_PROTOCOL = 'Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s';
