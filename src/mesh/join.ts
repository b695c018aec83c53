import type { Logger } from 'pino';
import type WebSocket from 'ws';
import { ed25519Verify, type Ed25519Private } from '../crypto/keys/index.js';
import { HandshakeState, MESH_JOIN_PROTOCOL, NoiseTransport } from '../crypto/noise/index.js';
import { ErrorCodes, MeshError, isMeshError, toMeshError, type ErrorCode } from '../errors.js';
import { concatBytes, equalBytes, toHex, utf8Bytes } from '../util/bytes.js';
import type { Clock } from '../util/clock.js';
import { JOIN_PATH, isDnsLabel } from '../config/index.js';
import { CloseCodes, MessageSocket, closeWs, dialWebSocket, endpointUrl } from '../tunnel/index.js';
import {
  decodeJoinHello,
  decodeJoinRequest,
  decodeJoinResponse,
  encodeJoinHello,
  encodeJoinRequest,
  encodeJoinResponse,
  type JoinResponse,
  type NodeRecordWire,
  type TokenBody,
} from '../wire/index.js';
import { issueCert, verifyCert, type VerifiedCert } from './certs.js';
import type { NodeIdentity } from './identity.js';
import { nodeIdOf } from './identity.js';
import { joinPsk, type TokenStore } from './tokens.js';

/**
 * Join (SPEC §3): Noise XXpsk3 with the psk derived from the token secret. Message 1 names the
 * token id (public); message 2 proves the issuer holds the static key pinned in the token (or says
 * why the token is refused); message 3 proves the joiner holds the secret, bound to this one
 * handshake's ephemeral keys, so a recorded exchange is worthless on another connection. Then
 * the joiner sends its name and keys (with an Ed25519 signature over the handshake hash) and the
 * issuer answers with the signed certificate and the members it knows.
 */

const JOIN_PROOF_CONTEXT = utf8Bytes('osmoda-mesh join v1\0');

export function joinPrologue(meshId: Uint8Array): Uint8Array {
  return concatBytes(utf8Bytes('osmoda-mesh/1 join'), meshId);
}

export interface JoinResult {
  cert: VerifiedCert;
  certBytes: Uint8Array;
  authorityPublic: Uint8Array;
  members: NodeRecordWire[];
}

export interface JoinClientInit {
  token: TokenBody;
  name: string;
  identity: NodeIdentity;
  endpoints: string[];
  tags: string[];
  clock: Clock;
  timeoutMs: number;
  logger: Logger;
}

const REFUSAL_CODES = new Set<string>(Object.values(ErrorCodes));

function refusalError(code: string, message: string): MeshError {
  const known = REFUSAL_CODES.has(code) ? (code as ErrorCode) : ErrorCodes.JOIN_FAILED;
  return new MeshError(known, `join refused by the issuer: ${message}`);
}

async function joinOnce(url: string, init: JoinClientInit): Promise<JoinResult> {
  const deadline = init.clock.monotonicMs() + init.timeoutMs;
  const ws = await dialWebSocket(url, init.timeoutMs);
  const socket = new MessageSocket(ws);
  const token = init.token;
  const state = HandshakeState.initialize({
    protocolName: MESH_JOIN_PROTOCOL,
    initiator: true,
    prologue: joinPrologue(token.meshId),
    s: init.identity.noise,
    psks: [joinPsk(token.secret, token.tokenId)],
  });
  try {
    socket.send(state.writeMessage(encodeJoinHello({ version: 1, tokenId: token.tokenId })));
    const message2Payload = state.readMessage(await socket.next(init.clock, deadline));
    if (!equalBytes(state.remoteStatic!, token.issuerX25519)) {
      throw new MeshError(ErrorCodes.HANDSHAKE_FAILED, `the node at ${url} is not the issuer named in the token (its key does not match the pin)`);
    }
    if (message2Payload.length > 0) {
      const answer = decodeJoinResponse(message2Payload);
      if (answer.kind === 'refused') throw refusalError(answer.code, answer.message);
    }
    socket.send(state.writeMessage());
    const transport = new NoiseTransport(state.split());
    const proof = init.identity.signing.sign(concatBytes(JOIN_PROOF_CONTEXT, state.handshakeHash));
    socket.send(
      transport.seal(
        encodeJoinRequest({ name: init.name, ed25519Public: init.identity.signing.publicKey, ed25519Proof: proof, endpoints: init.endpoints, tags: init.tags }),
      ),
    );
    const response = decodeJoinResponse(transport.open(await socket.next(init.clock, deadline)));
    if (response.kind === 'refused') throw refusalError(response.code, response.message);
    if (!equalBytes(response.authorityPublic, token.authorityPublic)) {
      throw new MeshError(ErrorCodes.JOIN_FAILED, 'join: the issuer answered with another authority than the token pins');
    }
    const cert = verifyCert(response.cert, { authorityPublic: token.authorityPublic, nowMs: init.clock.now(), expectedX25519: init.identity.noise.publicKey });
    if (cert.name !== init.name || !equalBytes(cert.nodeId, init.identity.nodeId)) {
      throw new MeshError(ErrorCodes.JOIN_FAILED, 'join: the certificate issued does not match this node');
    }
    socket.close(CloseCodes.NORMAL, 'joined');
    return { cert, certBytes: response.cert, authorityPublic: response.authorityPublic, members: response.members };
  } catch (err) {
    socket.close(CloseCodes.JOIN_REFUSED, 'join aborted');
    if (isMeshError(err, ErrorCodes.HANDSHAKE_FAILED) && /closed the connection/.test((err as MeshError).message)) {
      const reason = (err as MeshError).wireReason;
      throw new MeshError(ErrorCodes.JOIN_FAILED, `join refused by the issuer${reason ? `: ${reason}` : ''}`, { cause: err });
    }
    throw toMeshError(err, ErrorCodes.JOIN_FAILED, 'join');
  }
}

/** Tries the issuer's endpoints in order; token refusals stop at once, network failures try the next. */
export async function joinMesh(init: JoinClientInit): Promise<JoinResult> {
  let lastError: MeshError | undefined;
  for (const endpoint of init.token.issuerEndpoints) {
    const url = endpointUrl(endpoint, JOIN_PATH);
    try {
      return await joinOnce(url, init);
    } catch (err) {
      const error = toMeshError(err, ErrorCodes.JOIN_FAILED);
      init.logger.warn({ endpoint, code: error.code, err: error.message }, 'join attempt failed');
      if (error.code !== ErrorCodes.DIAL_FAILED && error.code !== ErrorCodes.HANDSHAKE_TIMEOUT) throw error;
      lastError = error;
    }
  }
  throw new MeshError(ErrorCodes.JOIN_FAILED, `could not reach the issuer at ${init.token.issuerEndpoints.join(', ')}: ${lastError?.message ?? 'no endpoint'}`, {
    cause: lastError,
  });
}

export interface JoinIssuerInit {
  identity: NodeIdentity;
  authority: Ed25519Private;
  meshId: Uint8Array;
  meshName: string;
  tokens: TokenStore;
  clock: Clock;
  timeoutMs: number;
  logger: Logger;
  /** The node id currently holding `name`, if any (names are unique in the mesh). */
  nameOwner(name: string): string | undefined;
  /** Lifetime of the certificates issued (default DEFAULT_CERT_LIFETIME_MS). */
  certLifetimeMs?: number;
  /** True for a node id on the revocation list: it cannot come back, not even with a new token. */
  isRevoked(nodeIdHex: string): boolean;
  members(): NodeRecordWire[];
  onRefused(code: string): void;
  onJoined(cert: VerifiedCert): void;
}

/** Serves one join connection on the issuer. Never throws: failures close the socket with a reason. */
export async function serveJoin(ws: WebSocket, init: JoinIssuerInit): Promise<void> {
  const deadline = init.clock.monotonicMs() + init.timeoutMs;
  const socket = new MessageSocket(ws);
  const state = HandshakeState.initialize({
    protocolName: MESH_JOIN_PROTOCOL,
    initiator: false,
    prologue: joinPrologue(init.meshId),
    s: init.identity.noise,
  });
  const refuse = (code: string, message: string, transport?: NoiseTransport): void => {
    init.onRefused(code);
    init.logger.warn({ code, reason: message }, 'join refused');
    const answer: JoinResponse = { kind: 'refused', code, message };
    try {
      socket.send(transport ? transport.seal(encodeJoinResponse(answer)) : state.writeMessage(encodeJoinResponse(answer)));
    } catch {
      // the joiner is gone; nothing to tell
    }
    socket.close(CloseCodes.JOIN_REFUSED, code);
  };
  let stage = 'message 1';
  try {
    const hello = decodeJoinHello(state.readMessage(await socket.next(init.clock, deadline)));
    let psk: Uint8Array;
    try {
      psk = init.tokens.pskFor(hello.tokenId, init.clock.now());
    } catch (err) {
      const error = toMeshError(err);
      refuse(error.code, error.message);
      return;
    }
    state.setPsk(psk);
    stage = 'message 2';
    socket.send(state.writeMessage());
    stage = 'message 3';
    try {
      state.readMessage(await socket.next(init.clock, deadline));
    } catch (err) {
      if (isMeshError(err, ErrorCodes.NOISE_DECRYPT)) {
        init.onRefused(ErrorCodes.TOKEN_MALFORMED);
        init.logger.warn({ stage }, 'join refused: the token secret does not match (tampered or wrong token)');
        socket.close(CloseCodes.JOIN_REFUSED, 'token secret does not match');
        return;
      }
      throw err;
    }
    const transport = new NoiseTransport(state.split());
    stage = 'join request';
    const request = decodeJoinRequest(transport.open(await socket.next(init.clock, deadline)));
    if (!ed25519Verify(request.ed25519Public, concatBytes(JOIN_PROOF_CONTEXT, state.handshakeHash), request.ed25519Proof)) {
      refuse(ErrorCodes.JOIN_FAILED, 'the joiner did not prove it holds its signing key', transport);
      return;
    }
    if (!isDnsLabel(request.name)) {
      refuse(ErrorCodes.INVALID_ARGUMENT, `node name '${request.name}' is not a DNS label (a-z, 0-9, -; at most 63)`, transport);
      return;
    }
    const joinerId = toHex(nodeIdOf(request.ed25519Public));
    if (init.isRevoked(joinerId)) {
      // checked before the token is consumed: a revoked node must not use up someone's token
      refuse(ErrorCodes.CERT_REVOKED, `this node (id ${joinerId}) was revoked from the mesh; a new identity (a fresh state dir) needs a new token`, transport);
      return;
    }
    const owner = init.nameOwner(request.name);
    if (owner !== undefined && owner !== joinerId) {
      refuse(ErrorCodes.NAME_TAKEN, `node name '${request.name}' is already taken in this mesh (join with --name)`, transport);
      return;
    }
    try {
      init.tokens.consume(hello.tokenId, init.clock.now(), joinerId);
    } catch (err) {
      const error = toMeshError(err);
      refuse(error.code, error.message, transport);
      return;
    }
    const certBytes = issueCert(init.authority, {
      meshName: init.meshName,
      name: request.name,
      ed25519Public: request.ed25519Public,
      x25519Public: state.remoteStatic!,
      tags: request.tags,
      isAdmin: false,
      nowMs: init.clock.now(),
      ...(init.certLifetimeMs === undefined ? {} : { lifetimeMs: init.certLifetimeMs }),
    });
    const cert = verifyCert(certBytes, { authorityPublic: init.authority.publicKey, nowMs: init.clock.now() });
    socket.send(transport.seal(encodeJoinResponse({ kind: 'accepted', cert: certBytes, authorityPublic: init.authority.publicKey, members: init.members() })));
    init.onJoined(cert);
    init.logger.info({ peer: request.name, nodeId: joinerId }, 'node joined the mesh');
    socket.close(CloseCodes.NORMAL, 'joined');
    // give the close frame a moment; the socket is terminated by closeWs's timer otherwise
  } catch (err) {
    const error = toMeshError(err, ErrorCodes.JOIN_FAILED);
    init.onRefused(error.code);
    init.logger.warn({ stage, code: error.code, err: error.message }, 'join connection failed');
    closeWs(ws, CloseCodes.JOIN_REFUSED, error.wireReason ?? 'join failed');
  }
}
