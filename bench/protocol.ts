import { randomBytes } from 'node:crypto';
import { X25519Private, ed25519Backend, x25519Backend } from '../src/crypto/keys/index.js';
import { HandshakeState, MESH_NOISE_PROTOCOL, NoiseTransport } from '../src/crypto/noise/index.js';
import { decodeBatch, encodeBatch, MAX_DATA_FRAME, type Frame } from '../src/wire/index.js';
import { benchMesh } from './bench-mesh.js';
import { withNodeCryptoCurves } from './crypto-primitives.js';
import { measure, withRatios, type Measurement } from './harness.js';

/** The agent's own protocol costs in process: Noise handshakes, frame codec, seal + open per message. */
export function protocolCosts(opts: { ms: number; repeats: number }): Measurement[] {
  const out: Measurement[] = [];
  const si = X25519Private.generate();
  const sr = X25519Private.generate();
  const prologue = new Uint8Array(16);
  // each side's payload is a certificate, checked by the other side as the agent checks it
  const mesh = benchMesh();
  const payloadI = mesh.identity('initiator', si).payload;
  const payloadR = mesh.identity('responder', sr).payload;
  const handshake = (): NoiseTransport => {
    const i = HandshakeState.initialize({ protocolName: MESH_NOISE_PROTOCOL, initiator: true, prologue, s: si });
    const r = HandshakeState.initialize({ protocolName: MESH_NOISE_PROTOCOL, initiator: false, prologue, s: sr });
    r.readMessage(i.writeMessage());
    mesh.verifyRemote(i.readMessage(r.writeMessage(payloadR)), i.remoteStatic);
    mesh.verifyRemote(r.readMessage(i.writeMessage(payloadI)), r.remoteStatic);
    r.split();
    return new NoiseTransport(i.split());
  };
  // node:crypto's X25519 and Ed25519 first, the baseline; then libsodium's, which the agent uses when it loads
  const what = 'Noise XX handshake, both sides (a key generation and 3 DHs each, a certificate checked each)';
  out.push(withNodeCryptoCurves(() => measure(`${what}, X25519 and Ed25519 node:crypto`, 'handshake', handshake, opts)));
  if (x25519Backend() === 'libsodium' && ed25519Backend() === 'libsodium') out.push(measure(`${what}, X25519 and Ed25519 libsodium`, 'handshake', handshake, opts));

  const data = randomBytes(MAX_DATA_FRAME);
  const frames: Frame[] = [{ kind: 'data', streamId: 7, data }];
  const encoded = encodeBatch(frames);
  out.push(measure('encodeBatch one 64 KiB data frame', 'frame codec', () => encodeBatch(frames), { ...opts, bytesPerOp: data.length }));
  out.push(measure('decodeBatch one 64 KiB data frame', 'frame codec', () => decodeBatch(encoded), { ...opts, bytesPerOp: data.length }));
  const small: Frame[] = Array.from({ length: 64 }, (_, k) => ({ kind: 'window', streamId: 2 * k + 1, credit: 262_144 }));
  out.push(measure('encodeBatch 64 window updates', 'frame codec', () => encodeBatch(small), opts));

  const sender = handshake();
  const receiverPair = (() => {
    const i = HandshakeState.initialize({ protocolName: MESH_NOISE_PROTOCOL, initiator: true, prologue, s: si });
    const r = HandshakeState.initialize({ protocolName: MESH_NOISE_PROTOCOL, initiator: false, prologue, s: sr });
    r.readMessage(i.writeMessage());
    i.readMessage(r.writeMessage());
    r.readMessage(i.writeMessage());
    return { send: new NoiseTransport(i.split()), receive: new NoiseTransport(r.split()) };
  })();
  void sender;
  out.push(
    measure('encode + seal + open + decode a 64 KiB data frame', 'message path', () => decodeBatch(receiverPair.receive.open(receiverPair.send.seal(encodeBatch(frames)))), {
      ...opts,
      bytesPerOp: data.length,
    }),
  );
  return withRatios(out);
}
