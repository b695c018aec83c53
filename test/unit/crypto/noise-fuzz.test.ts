import { describe, expect, it } from 'vitest';
import { MeshError } from '../../../src/errors.js';
import { X25519Private } from '../../../src/crypto/keys/index.js';
import { CipherState, HandshakeState, MESH_JOIN_PROTOCOL, MESH_NOISE_PROTOCOL, NoiseTransport } from '../../../src/crypto/noise/index.js';
import { seededRandom } from '../../../src/util/random.js';
import type { Random } from '../../../src/util/random.js';

const SEED = 0x5eed_2024;
const INPUTS_PER_STAGE = 2000;
const TIME_BUDGET_MS = 15_000;
const ALLOWED = new Set(['MESH_ERR_MALFORMED_FRAME', 'MESH_ERR_FRAME_TOO_LARGE', 'MESH_ERR_NOISE_DECRYPT', 'MESH_ERR_HANDSHAKE_FAILED']);

// Fixed keys: every replay rebuilds a stage cheaply and identically, so one input = one fresh state.
const keys = {
  si: X25519Private.fromPrivate(new Uint8Array(32).fill(1)),
  sr: X25519Private.fromPrivate(new Uint8Array(32).fill(2)),
  ei: X25519Private.fromPrivate(new Uint8Array(32).fill(3)),
  er: X25519Private.fromPrivate(new Uint8Array(32).fill(4)),
};
const psk = new Uint8Array(32).fill(5);

interface Stage {
  name: string;
  /** False for XX message 1, which is `e` plus a cleartext payload: nothing to authenticate. */
  isAuthenticated: boolean;
  /** Returns the state that must read next, the genuine message it would get and its payload. */
  build(): { reader: HandshakeState; genuine: Uint8Array; payload: Uint8Array };
}

function pair(protocolName: string): { init: HandshakeState; resp: HandshakeState } {
  const isIK = protocolName.includes('_IK');
  const psks = protocolName.includes('psk') ? [psk] : [];
  return {
    init: new HandshakeState({ protocolName, initiator: true, s: keys.si, e: keys.ei, psks, ...(isIK ? { rs: keys.sr.publicKey } : {}) }),
    resp: new HandshakeState({ protocolName, initiator: false, s: keys.sr, e: keys.er, psks }),
  };
}

function stages(protocolName: string, count: number): Stage[] {
  const out: Stage[] = [];
  for (let k = 0; k < count; k++) {
    out.push({
      name: `${protocolName} message ${k + 1}`,
      isAuthenticated: !(protocolName === MESH_NOISE_PROTOCOL && k === 0),
      build() {
        const { init, resp } = pair(protocolName);
        for (let i = 0; i < k; i++) {
          const [s, r] = i % 2 === 0 ? [init, resp] : [resp, init];
          r.readMessage(s.writeMessage(new Uint8Array([i])));
        }
        const [s, r] = k % 2 === 0 ? [init, resp] : [resp, init];
        const payload = new Uint8Array([k, k]);
        return { reader: r, genuine: s.writeMessage(payload), payload };
      },
    });
  }
  return out;
}

function fuzzInput(rnd: Random, genuine: Uint8Array): Uint8Array {
  const mode = Math.floor(rnd.float() * 6);
  if (mode === 0) return rnd.bytes(Math.floor(rnd.float() * 160)); // random, mostly short
  if (mode === 1) return rnd.bytes(Math.max(0, genuine.length + Math.floor(rnd.float() * 9) - 4)); // random, near the real length
  if (mode === 2) return genuine.slice(0, Math.floor(rnd.float() * genuine.length)); // truncated
  if (mode === 3) {
    const m = new Uint8Array(genuine);
    m[Math.floor(rnd.float() * m.length)]! ^= 1 << Math.floor(rnd.float() * 8); // one bit flipped
    return m;
  }
  if (mode === 4) return new Uint8Array([...genuine, ...rnd.bytes(1 + Math.floor(rnd.float() * 8))]); // trailing bytes
  return rnd.float() < 0.05 ? new Uint8Array(65536 + Math.floor(rnd.float() * 10)) : rnd.bytes(32); // oversize or bare `e`
}

describe('Noise readMessage fuzz (seed printed on failure)', () => {
  const all = [...stages(MESH_NOISE_PROTOCOL, 3), ...stages(MESH_JOIN_PROTOCOL, 3), ...stages('Noise_IK_25519_ChaChaPoly_BLAKE2s', 2)];
  for (const stage of all) {
    it(`${stage.name}: ${INPUTS_PER_STAGE} inputs raise only MeshError`, () => {
      const rnd = seededRandom(SEED ^ stage.name.length);
      const deadline = performance.now() + TIME_BUDGET_MS;
      const codes = new Map<string, number>();
      let accepted = 0;
      let ran = 0;
      let current = stage.build();
      for (; ran < INPUTS_PER_STAGE && performance.now() < deadline; ran++) {
        const input = fuzzInput(rnd, current.genuine);
        try {
          current.reader.readMessage(input);
          accepted++;
          current = stage.build();
        } catch (err) {
          if (!(err instanceof MeshError) || !ALLOWED.has(err.code)) {
            throw new Error(`seed ${SEED}, input ${ran} (${input.length} bytes): unexpected ${String(err)}`, { cause: err });
          }
          codes.set(err.code, (codes.get(err.code) ?? 0) + 1);
          // Length checks reject before any state changes, so the same state is reused; failures
          // part-way (decrypt, small-order DH) poison it and a fresh one is built.
          const isPrecheck = err.code === 'MESH_ERR_MALFORMED_FRAME' || err.code === 'MESH_ERR_FRAME_TOO_LARGE';
          if (current.reader.isFailed === isPrecheck) {
            throw new Error(`seed ${SEED}, input ${ran}: ${err.code} left isFailed=${current.reader.isFailed}`);
          }
          if (!isPrecheck) current = stage.build();
        }
      }
      expect(ran).toBeGreaterThanOrEqual(500); // the time budget must not hollow the test out
      expect(codes.get('MESH_ERR_MALFORMED_FRAME') ?? 0).toBeGreaterThan(0);
      if (stage.isAuthenticated) {
        expect(codes.get('MESH_ERR_NOISE_DECRYPT') ?? 0).toBeGreaterThan(0);
      }
      expect(accepted + [...codes.values()].reduce((a, b) => a + b, 0)).toBe(ran);
      // A state that saw only rejected-by-length inputs still accepts the genuine message.
      expect(current.reader.readMessage(current.genuine)).toEqual(current.payload);
    });
  }

  it('NoiseTransport.open on 2000 random inputs raises only MeshError and never advances the nonce', () => {
    const rnd = seededRandom(SEED);
    const t = new NoiseTransport({ send: new CipherState(new Uint8Array(32).fill(6)), receive: new CipherState(new Uint8Array(32).fill(7)) });
    for (let i = 0; i < 2000; i++) {
      const input = rnd.bytes(Math.floor(rnd.float() * 120));
      try {
        t.open(input);
        throw new Error(`seed ${SEED}, input ${i}: random bytes authenticated`);
      } catch (err) {
        expect(err, `seed ${SEED}, input ${i}`).toBeInstanceOf(MeshError);
      }
    }
    expect(t.receiveNonce).toBe(0n);
  });
});
