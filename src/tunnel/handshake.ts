import { HandshakeState, MESH_NOISE_PROTOCOL, NoiseTransport } from '../crypto/noise/index.js';
import type { X25519KeyPair } from '../crypto/keys/index.js';
import { ErrorCodes, MeshError, isMeshError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { concatBytes, utf8Bytes } from '../util/bytes.js';
import { CloseCodes } from './config.js';
import type { MessageSocket } from './message-socket.js';

/** The tunnel handshake: Noise XX, certificates in messages 2 and 3 (SPEC §3, §4). */

export function tunnelPrologue(meshId: Uint8Array): Uint8Array {
  return concatBytes(utf8Bytes('osmoda-mesh/1'), meshId);
}

export interface HandshakeInit<Remote> {
  socket: MessageSocket;
  clock: Clock;
  timeoutMs: number;
  staticKey: X25519KeyPair;
  meshId: Uint8Array;
  /** This side's payload (certificate and record). */
  payload: Uint8Array;
  /**
   * Checks the peer's payload against the static key it proved it holds; throws MeshError to
   * refuse (e.g. certificate not signed by the authority). Its result is returned to the caller.
   */
  verifyRemote(payload: Uint8Array, remoteStatic: Uint8Array): Remote;
}

export interface HandshakeResult<Remote> {
  transport: NoiseTransport;
  remote: Remote;
  remoteStatic: Uint8Array;
  handshakeHash: Uint8Array;
  /** Transport messages that came right behind the handshake: pass them to the Tunnel. */
  earlyMessages: Uint8Array[];
}

function closeCodeFor(err: unknown): number {
  if (isMeshError(err, ErrorCodes.HANDSHAKE_TIMEOUT)) return CloseCodes.HANDSHAKE_TIMEOUT;
  if (
    isMeshError(err, ErrorCodes.CERT_UNTRUSTED) ||
    isMeshError(err, ErrorCodes.CERT_EXPIRED) ||
    isMeshError(err, ErrorCodes.CERT_INVALID) ||
    isMeshError(err, ErrorCodes.CERT_KEY_MISMATCH)
  ) {
    return CloseCodes.UNTRUSTED_PEER;
  }
  return CloseCodes.HANDSHAKE_FAILED;
}

function wrap(err: unknown): MeshError {
  if (err instanceof MeshError) return err;
  return new MeshError(ErrorCodes.HANDSHAKE_FAILED, `handshake: ${(err as Error).message}`, { cause: err });
}

/**
 * Runs one side of the XX handshake. Stages: initiator 1 → e; 2 ← e, ee, s, es + payload;
 * 3 → s, se + payload. On any failure the socket is closed with a reason the peer can log, and the
 * error is rethrown; the socket is left attached to nothing on success (the tunnel takes it).
 */
export async function performTunnelHandshake<Remote>(isInitiator: boolean, init: HandshakeInit<Remote>): Promise<HandshakeResult<Remote>> {
  const deadline = init.clock.monotonicMs() + init.timeoutMs;
  const state = HandshakeState.initialize({
    protocolName: MESH_NOISE_PROTOCOL,
    initiator: isInitiator,
    prologue: tunnelPrologue(init.meshId),
    s: init.staticKey,
  });
  let remote: Remote | undefined;
  const checkRemote = (payload: Uint8Array): void => {
    const rs = state.remoteStatic;
    if (rs === undefined) throw new MeshError(ErrorCodes.HANDSHAKE_FAILED, 'handshake: no remote static key');
    remote = init.verifyRemote(payload, rs);
  };
  try {
    if (isInitiator) {
      init.socket.send(state.writeMessage()); // stage 1
      checkRemote(state.readMessage(await init.socket.next(init.clock, deadline))); // stage 2
      init.socket.send(state.writeMessage(init.payload)); // stage 3
    } else {
      state.readMessage(await init.socket.next(init.clock, deadline)); // stage 1
      init.socket.send(state.writeMessage(init.payload)); // stage 2
      checkRemote(state.readMessage(await init.socket.next(init.clock, deadline))); // stage 3
    }
    if (!state.isComplete || remote === undefined) throw new MeshError(ErrorCodes.HANDSHAKE_FAILED, 'handshake: incomplete');
    const handshakeHash = state.handshakeHash;
    const transport = new NoiseTransport(state.split());
    const earlyMessages = init.socket.detach();
    return { transport, remote, remoteStatic: state.remoteStatic!, handshakeHash, earlyMessages };
  } catch (err) {
    const error = wrap(err);
    init.socket.close(closeCodeFor(error), error.wireReason ?? 'handshake failed');
    throw error;
  }
}
