export { forceCurveBackend } from './backend.js';
export type { CurveBackend } from './backend.js';
export { X25519Private, X25519_KEY_LENGTH, generateX25519, x25519, x25519Backend, x25519FromPrivate } from './x25519.js';
export type { X25519KeyPair } from './x25519.js';
export {
  ED25519_KEY_LENGTH,
  ED25519_SIGNATURE_LENGTH,
  Ed25519Private,
  ed25519Backend,
  ed25519FromPrivate,
  ed25519Sign,
  ed25519Verify,
  generateEd25519,
} from './ed25519.js';
export type { Ed25519KeyPair } from './ed25519.js';
export { hkdfSha256, sha256 } from './hash.js';
