import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { x25519FromPrivate } from '../../../src/crypto/keys/index.js';
import { HandshakeState, NoiseTransport, parseProtocolName } from '../../../src/crypto/noise/index.js';
import type { HandshakeOptions } from '../../../src/crypto/noise/index.js';
import { fromHex, toHex } from '../../../src/util/bytes.js';

interface Vector {
  name?: string;
  protocol_name: string;
  init_prologue: string;
  init_psks?: string[];
  init_static?: string;
  init_ephemeral: string;
  init_remote_static?: string;
  resp_prologue: string;
  resp_psks?: string[];
  resp_static?: string;
  resp_ephemeral: string;
  resp_remote_static?: string;
  handshake_hash?: string;
  messages: { payload: string; ciphertext: string }[];
}

// Tests run from the repo root (/work/main); the shared vectors sit beside it.
const vectorPath = process.env['NOISE_VECTORS'] ?? resolve(process.cwd(), '../shared/vectors/noise.json');
const vectors = (JSON.parse(readFileSync(vectorPath, 'utf8')) as { vectors: Vector[] }).vectors;

function isSupported(protocolName: string): boolean {
  try {
    parseProtocolName(protocolName);
    return true;
  } catch {
    return false;
  }
}

function side(v: Vector, isInitiator: boolean): HandshakeOptions {
  const p = isInitiator ? 'init' : 'resp';
  const statik = v[`${p}_static`];
  const remote = v[`${p}_remote_static`];
  const psks = v[`${p}_psks`];
  const options: HandshakeOptions = {
    protocolName: v.protocol_name,
    initiator: isInitiator,
    prologue: fromHex(v[`${p}_prologue`]),
    e: x25519FromPrivate(fromHex(v[`${p}_ephemeral`])),
  };
  if (statik !== undefined) options.s = x25519FromPrivate(fromHex(statik));
  if (remote !== undefined) options.rs = fromHex(remote);
  if (psks !== undefined) options.psks = psks.map(fromHex);
  return options;
}

const ran: string[] = [];

describe('Noise known-answer vectors', () => {
  it('loads the vector file', () => {
    expect(vectors.length).toBeGreaterThan(0);
  });

  vectors.forEach((v, index) => {
    const title = `#${index} ${v.protocol_name} (${v.name ?? 'unnamed'})`;
    if (!isSupported(v.protocol_name)) {
      it.skip(`${title}: protocol not supported`, () => {});
      return;
    }
    it(title, () => {
      const init = new HandshakeState(side(v, true));
      const resp = new HandshakeState(side(v, false));
      const handshakeLength = init.protocol.pattern.messages.length;
      expect(v.messages.length).toBeGreaterThanOrEqual(handshakeLength);

      let i = 0;
      for (; i < handshakeLength; i++) {
        const m = v.messages[i]!;
        const [sender, receiver] = i % 2 === 0 ? [init, resp] : [resp, init];
        expect(toHex(sender.writeMessage(fromHex(m.payload))), `handshake message ${i} ciphertext`).toBe(m.ciphertext);
        expect(toHex(receiver.readMessage(fromHex(m.ciphertext))), `handshake message ${i} payload`).toBe(m.payload);
      }
      expect(init.isComplete).toBe(true);
      expect(resp.isComplete).toBe(true);
      expect(toHex(init.handshakeHash)).toBe(toHex(resp.handshakeHash));
      if (v.handshake_hash !== undefined) expect(toHex(init.handshakeHash)).toBe(v.handshake_hash);
      // Both sides learned (or were given) each other's static keys where the pattern has them.
      if (v.resp_static !== undefined) expect(toHex(init.remoteStatic!)).toBe(toHex(x25519FromPrivate(fromHex(v.resp_static)).publicKey));
      if (v.init_static !== undefined) expect(toHex(resp.remoteStatic!)).toBe(toHex(x25519FromPrivate(fromHex(v.init_static)).publicKey));

      const initT = new NoiseTransport(init.split());
      const respT = new NoiseTransport(resp.split());
      // Transport messages keep alternating from where the handshake stopped (README, Format).
      for (; i < v.messages.length; i++) {
        const m = v.messages[i]!;
        const [sender, receiver] = i % 2 === 0 ? [initT, respT] : [respT, initT];
        expect(toHex(sender.seal(fromHex(m.payload))), `transport message ${i} ciphertext`).toBe(m.ciphertext);
        expect(toHex(receiver.open(fromHex(m.ciphertext))), `transport message ${i} payload`).toBe(m.payload);
      }
      ran.push(v.protocol_name);
    });
  });

  it('ran every supported vector, including the 5 XX BLAKE2s ones', () => {
    expect(ran.length).toBeGreaterThan(0);
    expect(ran.length).toBe(vectors.filter((v) => isSupported(v.protocol_name)).length);
    expect(ran.filter((p) => p === 'Noise_XX_25519_ChaChaPoly_BLAKE2s').length).toBeGreaterThanOrEqual(5);
    if (process.env['NOISE_VECTORS'] === undefined) expect(ran.length).toBe(36);
  });
});
