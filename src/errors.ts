/**
 * One error type for the whole agent. Callers match on `code` (stable, never renamed); `message`
 * names the thing, what was wrong and, where there is one, the fix. A protocol error from a peer
 * also carries `wireReason`, the short reason sent to that peer when the tunnel is closed.
 */
export const ErrorCodes = {
  // bad input (config, CLI, control API bodies)
  INVALID_CONFIG: 'MESH_ERR_INVALID_CONFIG',
  INVALID_ARGUMENT: 'MESH_ERR_INVALID_ARGUMENT',
  /** A Compose file that is not valid YAML or not valid Compose (`compose import`); names file:line. */
  COMPOSE_INVALID: 'MESH_ERR_COMPOSE_INVALID',
  // wire and crypto
  MALFORMED_FRAME: 'MESH_ERR_MALFORMED_FRAME',
  FRAME_TOO_LARGE: 'MESH_ERR_FRAME_TOO_LARGE',
  NOISE_DECRYPT: 'MESH_ERR_NOISE_DECRYPT',
  NOISE_STATE: 'MESH_ERR_NOISE_STATE',
  NOISE_NONCE_EXHAUSTED: 'MESH_ERR_NOISE_NONCE_EXHAUSTED',
  HANDSHAKE_TIMEOUT: 'MESH_ERR_HANDSHAKE_TIMEOUT',
  HANDSHAKE_FAILED: 'MESH_ERR_HANDSHAKE_FAILED',
  // trust
  CERT_INVALID: 'MESH_ERR_CERT_INVALID',
  CERT_EXPIRED: 'MESH_ERR_CERT_EXPIRED',
  CERT_UNTRUSTED: 'MESH_ERR_CERT_UNTRUSTED',
  CERT_KEY_MISMATCH: 'MESH_ERR_CERT_KEY_MISMATCH',
  /** The node is on the mesh's signed revocation list (`osmoda-mesh revoke`). */
  CERT_REVOKED: 'MESH_ERR_CERT_REVOKED',
  TOKEN_MALFORMED: 'MESH_ERR_TOKEN_MALFORMED',
  TOKEN_EXPIRED: 'MESH_ERR_TOKEN_EXPIRED',
  TOKEN_USED_UP: 'MESH_ERR_TOKEN_USED_UP',
  TOKEN_UNKNOWN: 'MESH_ERR_TOKEN_UNKNOWN',
  TOKEN_WRONG_MESH: 'MESH_ERR_TOKEN_WRONG_MESH',
  NAME_TAKEN: 'MESH_ERR_NAME_TAKEN',
  NOT_ADMIN: 'MESH_ERR_NOT_ADMIN',
  NOT_JOINED: 'MESH_ERR_NOT_JOINED',
  ALREADY_JOINED: 'MESH_ERR_ALREADY_JOINED',
  JOIN_FAILED: 'MESH_ERR_JOIN_FAILED',
  // mux
  STREAM_RESET: 'MESH_ERR_STREAM_RESET',
  WINDOW_EXCEEDED: 'MESH_ERR_WINDOW_EXCEEDED',
  STREAM_LIMIT: 'MESH_ERR_STREAM_LIMIT',
  PROTOCOL: 'MESH_ERR_PROTOCOL',
  TUNNEL_CLOSED: 'MESH_ERR_TUNNEL_CLOSED',
  // names / forward
  UNKNOWN_SERVICE: 'MESH_ERR_UNKNOWN_SERVICE',
  NO_PROVIDER: 'MESH_ERR_NO_PROVIDER',
  PEER_DOWN: 'MESH_ERR_PEER_DOWN',
  PING_TIMEOUT: 'MESH_ERR_PING_TIMEOUT',
  DIAL_FAILED: 'MESH_ERR_DIAL_FAILED',
  /** The providing node's allowFrom rule for the service does not match the opener. */
  ACCESS_DENIED: 'MESH_ERR_ACCESS_DENIED',
  /** nat mode (SPEC §4a) could not install or remove its nftables rules. */
  NAT_SETUP: 'MESH_ERR_NAT_SETUP',
  PORT_IN_USE: 'MESH_ERR_PORT_IN_USE',
  VIP_EXHAUSTED: 'MESH_ERR_VIP_EXHAUSTED',
  DNS_MALFORMED: 'MESH_ERR_DNS_MALFORMED',
  // state and control
  STATE_DIR: 'MESH_ERR_STATE_DIR',
  KEY_FILE_PERMISSIONS: 'MESH_ERR_KEY_FILE_PERMISSIONS',
  AGENT_UNREACHABLE: 'MESH_ERR_AGENT_UNREACHABLE',
  NOT_FOUND: 'MESH_ERR_NOT_FOUND',
  INTERNAL: 'MESH_ERR_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface MeshErrorOptions {
  cause?: unknown;
  /** Short reason sent to the peer when this error closes a tunnel or stream. */
  wireReason?: string;
}

export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly wireReason: string | undefined;

  constructor(code: ErrorCode, message: string, options: MeshErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshError';
    this.code = code;
    this.wireReason = options.wireReason;
  }
}

export function isMeshError(err: unknown, code?: ErrorCode): err is MeshError {
  return err instanceof MeshError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a MeshError, keeping the original as `cause`. */
export function toMeshError(err: unknown, code: ErrorCode = ErrorCodes.INTERNAL, context?: string): MeshError {
  if (err instanceof MeshError) return err;
  const text = err instanceof Error ? err.message : String(err);
  return new MeshError(code, context === undefined ? text : `${context}: ${text}`, { cause: err });
}

/** Shows at most the first few characters of a secret-bearing value in an error message. */
export function truncateSecret(value: string, keep = 8): string {
  return value.length <= keep ? value : `${value.slice(0, keep)}…`;
}
