import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { X25519Private } from '../../src/crypto/keys/index.js';
import { CipherState, HandshakeState, MESH_JOIN_PROTOCOL, MESH_NOISE_PROTOCOL, NoiseTransport } from '../../src/crypto/noise/index.js';
import { ErrorCodes, MeshError } from '../../src/errors.js';
import { equalBytes, fromHex, utf8Bytes } from '../../src/util/bytes.js';
import { seededRandom } from '../../src/util/random.js';
import { FUZZ_RUNS, fuzzDecoder, mutatedFrom } from './harness.js';

/**
 * The Noise decoders of the agent: HandshakeState.readMessage for the two protocols it speaks
 * (XX for tunnels, XXpsk3 for joins; every message of both) and NoiseTransport.open. Seed 0x401se.
 *
 * Cost: a handshake message that gets past the length check costs one or two X25519 operations,
 * and a message that fails part-way poisons the state, which must be rebuilt (message 3 needs the
 * responder's two DHs of message 2 again). So the 100,000 handshake cases are spread over the six
 * message stages, weighted towards the cheap ones; transport messages get 100,000 of their own.
 */
const SEED = 0x4015e;
const HANDSHAKE_CODES = [ErrorCodes.MALFORMED_FRAME, ErrorCodes.FRAME_TOO_LARGE, ErrorCodes.NOISE_DECRYPT, ErrorCodes.HANDSHAKE_FAILED] as const;

// fixed keys: every rebuilt state is identical, so a failing input replays exactly
const keys = {
  si: X25519Private.fromPrivate(new Uint8Array(32).fill(1)),
  sr: X25519Private.fromPrivate(new Uint8Array(32).fill(2)),
  ei: X25519Private.fromPrivate(new Uint8Array(32).fill(3)),
  er: X25519Private.fromPrivate(new Uint8Array(32).fill(4)),
};
const psk = new Uint8Array(32).fill(5);
const prologue = utf8Bytes('osmoda-mesh/1 fuzz');

/**
 * X25519 public keys of small order (and their non-canonical encodings): a DH with them gives
 * all zeros, which the agent must refuse (HANDSHAKE_FAILED), never use as a key.
 */
const SMALL_ORDER_POINTS = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'cdeb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880',
  '4c9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7',
  'd9ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  'daffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  'dbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
].map(fromHex);

function pair(protocolName: string): { init: HandshakeState; resp: HandshakeState } {
  const psks = protocolName.includes('psk') ? [psk] : [];
  return {
    init: new HandshakeState({ protocolName, initiator: true, prologue, s: keys.si, e: keys.ei, psks }),
    resp: new HandshakeState({ protocolName, initiator: false, prologue, s: keys.sr, e: keys.er, psks }),
  };
}

/**
 * A state about to read message `k` (0-based), after the genuine messages before it. Only that
 * side's state matters, so the other side reads nothing (message 3's reader then costs the two DHs
 * of writing message 2, not four).
 */
function readerAt(protocolName: string, k: number): HandshakeState {
  const { init, resp } = pair(protocolName);
  const target = k % 2 === 0 ? resp : init;
  for (let i = 0; i < k; i++) {
    const [writer, reader] = i % 2 === 0 ? [init, resp] : [resp, init];
    const message = writer.writeMessage(new Uint8Array([i]));
    if (reader === target) reader.readMessage(message);
  }
  return target;
}

/** Genuine message `k` with several payloads (the writer's state is rebuilt for each). */
function genuineMessages(protocolName: string, k: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const payload of [new Uint8Array(0), new Uint8Array([k]), utf8Bytes('a certificate would be here'), new Uint8Array(300).fill(k)]) {
    const { init, resp } = pair(protocolName);
    for (let i = 0; i < k; i++) {
      const [writer, reader] = i % 2 === 0 ? [init, resp] : [resp, init];
      reader.readMessage(writer.writeMessage(new Uint8Array([i])));
    }
    out.push((k % 2 === 0 ? init : resp).writeMessage(payload));
  }
  return out;
}

interface Stage {
  protocolName: string;
  k: number;
  runs: number;
  /** XX message 1 is `e` plus a cleartext payload: any 32+ bytes are a valid message. */
  isAuthenticated: boolean;
}

const STAGES: Stage[] = [
  { protocolName: MESH_NOISE_PROTOCOL, k: 0, runs: 25_000, isAuthenticated: false },
  { protocolName: MESH_NOISE_PROTOCOL, k: 1, runs: 15_000, isAuthenticated: true },
  { protocolName: MESH_NOISE_PROTOCOL, k: 2, runs: 10_000, isAuthenticated: true },
  // XXpsk3: every `e` also runs MixKey, so even message 1's payload is authenticated
  { protocolName: MESH_JOIN_PROTOCOL, k: 0, runs: 25_000, isAuthenticated: true },
  { protocolName: MESH_JOIN_PROTOCOL, k: 1, runs: 15_000, isAuthenticated: true },
  { protocolName: MESH_JOIN_PROTOCOL, k: 2, runs: 10_000, isAuthenticated: true },
];

describe(`Noise decoders under fuzzing (seed 0x${SEED.toString(16)})`, () => {
  it('the handshake stages add up to 100,000 cases', () => {
    expect(STAGES.reduce((n, s) => n + s.runs, 0)).toBeGreaterThanOrEqual(FUZZ_RUNS);
  });

  for (const stage of STAGES) {
    const name = `${stage.protocolName.split('_')[1]} message ${stage.k + 1}`;
    it(`readMessage, ${name}: ${stage.runs} inputs, only typed errors; a failed state is never reused`, () => {
      const genuine = genuineMessages(stage.protocolName, stage.k);
      // small-order points where `e` goes, the rest genuine: the DH on them must be refused
      const smallOrder = SMALL_ORDER_POINTS.map((point) => {
        const m = genuine[1]!.slice();
        m.set(point, 0);
        return m;
      });
      const oversize = [new Uint8Array(65_536).fill(7), new Uint8Array(70_000)];
      const inputs = mutatedFrom([...genuine, ...smallOrder, ...oversize]);
      let reader = readerAt(stage.protocolName, stage.k);
      let rebuilds = 0;
      const report = fuzzDecoder({
        name: `noise ${name}`,
        seed: SEED + stage.k,
        numRuns: stage.runs,
        input: inputs,
        allowed: HANDSHAKE_CODES,
        decode: (message) => {
          try {
            reader.readMessage(message);
          } catch (err) {
            const isPrecheck = err instanceof MeshError && (err.code === ErrorCodes.MALFORMED_FRAME || err.code === ErrorCodes.FRAME_TOO_LARGE);
            // a length refusal leaves the state untouched; anything later must mark it failed
            if (reader.isFailed === isPrecheck) throw new Error(`${(err as Error).message}: left isFailed=${reader.isFailed}`);
            if (!isPrecheck) {
              reader = readerAt(stage.protocolName, stage.k);
              rebuilds++;
            }
            throw err;
          }
          // authenticated stages accept exactly the genuine bytes: a changed bit must not pass
          if (stage.isAuthenticated && !genuine.some((g) => equalBytes(g, message))) throw new Error('a modified handshake message authenticated');
          reader = readerAt(stage.protocolName, stage.k);
        },
      });
      expect(report.codes[ErrorCodes.MALFORMED_FRAME] ?? 0).toBeGreaterThan(0);
      expect(report.codes[ErrorCodes.FRAME_TOO_LARGE] ?? 0).toBeGreaterThan(0);
      if (stage.isAuthenticated) expect(report.codes[ErrorCodes.NOISE_DECRYPT] ?? 0).toBeGreaterThan(0);
      if (stage.k === 1) expect(report.codes[ErrorCodes.HANDSHAKE_FAILED] ?? 0).toBeGreaterThan(0); // message 2: the peer's `e` meets a DH at once (ee)
      console.log(`[fuzz] noise ${name}: ${rebuilds} states rebuilt after a failure`);
    }, 120_000);
  }

  it('NoiseTransport.open: 100,000 inputs; exactly the genuine ciphertexts open, nothing else moves the nonce', () => {
    const key = new Uint8Array(32).fill(9);
    const rnd = seededRandom(SEED);
    const plaintexts = [new Uint8Array(0), new Uint8Array([1]), rnd.bytes(100), rnd.bytes(1000)];
    // sealed at nonce 0 and at nonce 1: the second set must never open on a receiver at nonce 0
    const atZero = plaintexts.map((p) => {
      const fresh = new CipherState(key);
      return fresh.encryptWithAd(new Uint8Array(0), p);
    });
    const atOne = plaintexts.map((p) => {
      const s = new CipherState(key);
      s.setNonce(1n);
      return s.encryptWithAd(new Uint8Array(0), p);
    });
    const receiver = (): NoiseTransport => new NoiseTransport({ send: new CipherState(new Uint8Array(32).fill(8)), receive: new CipherState(key) });
    let transport = receiver();
    let opened = 0;
    const report = fuzzDecoder({
      name: 'noise NoiseTransport.open',
      seed: SEED,
      input: fc.oneof(
        { weight: 20, arbitrary: mutatedFrom([...atZero, ...atOne], 200) },
        { weight: 1, arbitrary: fc.integer({ min: 65_536, max: 66_000 }).map((n) => new Uint8Array(n)) },
      ),
      allowed: [ErrorCodes.MALFORMED_FRAME, ErrorCodes.FRAME_TOO_LARGE, ErrorCodes.NOISE_DECRYPT],
      decode: (message) => {
        try {
          transport.open(message);
        } catch (err) {
          if (transport.receiveNonce !== 0n) throw new Error('a rejected message moved the receive nonce');
          throw err;
        }
        if (!atZero.some((g) => equalBytes(g, message))) throw new Error('a message that is not a genuine nonce-0 ciphertext opened');
        opened++;
        // the genuine message moved the nonce to 1: replaying it now must fail (checked once)
        if (opened === 1) {
          let replayed: unknown;
          try {
            transport.open(message);
          } catch (err) {
            replayed = err;
          }
          if (!(replayed instanceof MeshError) || replayed.code !== ErrorCodes.NOISE_DECRYPT) throw new Error('a replayed transport message opened');
        }
        transport = receiver();
      },
    });
    expect(report.accepted).toBe(opened);
    expect(opened).toBeGreaterThan(100);
    expect(report.codes[ErrorCodes.NOISE_DECRYPT] ?? 0).toBeGreaterThan(10_000);
  }, 120_000);
});
