import fc from 'fast-check';
import { expect } from 'vitest';
import { MeshError, type ErrorCode } from '../../src/errors.js';
import { concatBytes } from '../../src/util/bytes.js';
import { seededRandom } from '../../src/util/random.js';

/**
 * Property-based fuzzing of one decoder (issue 5, hostile input): every input either decodes or
 * raises a MeshError with one of the codes the decoder is documented to raise. Anything else (a
 * TypeError, a RangeError, a MeshError with an unexpected code) fails the property; fast-check then
 * shrinks it and prints the seed and path, and the message below repeats the seed so the failure
 * replays with `{ seed, path }`. Each run prints one line with its counts so the closing note of
 * the issue can cite them.
 */

/** Cases per decoder in CI (issue 5: at least 100,000). */
export const FUZZ_RUNS = 100_000;

export interface FuzzReport {
  name: string;
  cases: number;
  accepted: number;
  rejected: number;
  codes: Partial<Record<ErrorCode, number>>;
  wallMs: number;
  /** CPU time of this process during the run: the fair figure on a shared, loaded machine. */
  cpuMs: number;
  slowestCaseMs: number;
}

export interface FuzzSpec<T> {
  name: string;
  seed: number;
  input: fc.Arbitrary<T>;
  decode(input: T): unknown;
  /** The codes this decoder may raise; any other failure is a bug. */
  allowed: readonly ErrorCode[];
  numRuns?: number;
  /** How a failing input is shown (default: JSON with byte arrays as hex). */
  show?(input: T): string;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function showInput(value: unknown): string {
  if (value instanceof Uint8Array) return `hex:${hex(value).slice(0, 400)}`;
  const text = JSON.stringify(value, (_k, v: unknown) => (v instanceof Uint8Array ? `hex:${hex(v)}` : v));
  return (text ?? String(value)).slice(0, 400);
}

export function fuzzDecoder<T>(spec: FuzzSpec<T>): FuzzReport {
  const numRuns = spec.numRuns ?? FUZZ_RUNS;
  const report: FuzzReport = { name: spec.name, cases: 0, accepted: 0, rejected: 0, codes: {}, wallMs: 0, cpuMs: 0, slowestCaseMs: 0 };
  const allowed = new Set<string>(spec.allowed);
  // Most cases end in a thrown error, and capturing its stack is most of what a rejection costs
  // (about 40% here): stacks are off while fuzzing and back on to replay a failing input.
  const stackTraceLimit = Error.stackTraceLimit;
  const replay = (input: T): unknown => {
    Error.stackTraceLimit = stackTraceLimit;
    try {
      spec.decode(input);
      return undefined;
    } catch (err) {
      return err;
    }
  };
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  try {
    Error.stackTraceLimit = 0;
    fc.assert(
      fc.property(spec.input, (input) => {
        report.cases++;
        const t0 = performance.now();
        try {
          spec.decode(input);
          report.accepted++;
        } catch (err) {
          if (!(err instanceof MeshError)) {
            const again = replay(input);
            throw new Error(`${spec.name} threw a non-MeshError ${String(err)} for ${(spec.show ?? showInput)(input)}`, { cause: again ?? err });
          }
          if (!allowed.has(err.code)) {
            const again = replay(input);
            throw new Error(`${spec.name} threw ${err.code} (${err.message}), not one of ${spec.allowed.join(', ')}, for ${(spec.show ?? showInput)(input)}`, { cause: again ?? err });
          }
          report.rejected++;
          report.codes[err.code] = (report.codes[err.code] ?? 0) + 1;
        } finally {
          report.slowestCaseMs = Math.max(report.slowestCaseMs, performance.now() - t0);
        }
      }),
      { seed: spec.seed, numRuns, endOnFailure: true },
    );
  } catch (err) {
    throw new Error(`fuzz ${spec.name} failed with seed ${spec.seed} (0x${spec.seed.toString(16)}): ${(err as Error).message}`, { cause: err });
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  report.wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuStarted);
  report.cpuMs = (cpu.user + cpu.system) / 1000;
  printReport(report, spec.seed);
  // every case ran and was classified; no hang hid behind a time budget
  expect(report.cases).toBe(numRuns);
  expect(report.accepted + report.rejected).toBe(numRuns);
  return report;
}

export function printReport(report: FuzzReport, seed: number): void {
  const codes = Object.entries(report.codes)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code.replace('MESH_ERR_', '')} ${n}`)
    .join(', ');
  console.log(
    `[fuzz] ${report.name}: ${report.cases} cases, ${report.accepted} accepted, ${report.rejected} rejected (${codes || 'none'}) in ${Math.round(report.wallMs)} ms wall, ${Math.round(report.cpuMs)} ms CPU, slowest case ${report.slowestCaseMs.toFixed(2)} ms, seed 0x${seed.toString(16)}`,
  );
}

// ---- hostile byte strings built from valid ones ---------------------------------------------

/** LEB128 varint of a non-negative integer up to 2^53 (protobuf lengths and tags). */
export function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

export const TEN_GIB = 10 * 2 ** 30;

/** Varints that parsers mishandle: 10 GiB, 2^32 ± 1, 2^53, 10-byte and overlong encodings. */
const HOSTILE_VARINTS: readonly number[][] = [
  varint(TEN_GIB),
  varint(2 ** 32 - 1),
  varint(2 ** 32 + 1),
  varint(2 ** 31),
  varint(2 ** 53 - 1),
  [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
  [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
  [0xff, 0xff, 0xff, 0xff, 0x0f],
  [0x80],
];

/** A corpus of valid encodings drawn from `valid` with a fixed seed (generation is the costly part). */
export function corpus(valid: fc.Arbitrary<Uint8Array>, seed: number, size = 1_000): Uint8Array[] {
  return fc.sample(valid, { seed, numRuns: size }).map((b) => Uint8Array.from(b));
}

/**
 * Hostile inputs built from a corpus of valid encodings: kept as is, byte overwrites anywhere, bit
 * flips, truncation, insertion, splices of two encodings, hostile varints (huge length claims)
 * inserted or written at any offset, repetition, plus plain random bytes. Starting from valid
 * encodings keeps the fuzzer inside the parser's deep states instead of failing on the first tag.
 *
 * fast-check draws only a few integers per case (which entry, which mutation, where, a seed for the
 * bytes it writes), so 100,000 cases cost milliseconds of generation; the mutation itself is a
 * pure function of them, so a failure replays from fast-check's seed and path.
 */
export function mutatedFrom(valid: readonly Uint8Array[], maxRandom = 400): fc.Arbitrary<Uint8Array> {
  if (valid.length === 0) throw new Error('mutatedFrom: empty corpus');
  // plain copies: encoders hand out Buffers, whose slice() is a view, and the mutations below
  // write into what slice() returns
  const entries = valid.map((b) => Uint8Array.from(b));
  return fc
    .tuple(fc.nat(), fc.nat(15), fc.nat(), fc.nat(), fc.nat())
    .map(([pick, op, a, b, seed]) => mutate(entries, pick % entries.length, op, a, b, seed, maxRandom));
}

function mutate(valid: readonly Uint8Array[], index: number, op: number, a: number, b: number, seed: number, maxRandom: number): Uint8Array {
  const base = valid[index]!;
  const rnd = seededRandom(seed);
  const at = base.length === 0 ? 0 : a % base.length;
  switch (op) {
    case 0:
    case 1:
      return base.slice();
    case 2:
    case 3:
    case 4: {
      const out = base.slice();
      if (out.length === 0) return out;
      const edits = 1 + (b % 6);
      for (let i = 0; i < edits; i++) out[Math.floor(rnd.float() * out.length)] = Math.floor(rnd.float() * 256);
      return out;
    }
    case 5:
    case 6: {
      const out = base.slice();
      if (out.length > 0) out[at]! ^= 1 << (b % 8);
      return out;
    }
    case 7:
    case 8:
      return base.slice(0, a % (base.length + 1));
    case 9: {
      const i = a % (base.length + 1);
      return concatBytes(base.subarray(0, i), rnd.bytes(1 + (b % 12)), base.subarray(i));
    }
    case 10: {
      const other = valid[b % valid.length]!;
      return concatBytes(base.subarray(0, a % (base.length + 1)), other.subarray(seed % (other.length + 1)));
    }
    case 11:
    case 12: {
      const v = Uint8Array.from(HOSTILE_VARINTS[b % HOSTILE_VARINTS.length]!);
      const i = a % (base.length + 1);
      const rest = op === 11 ? base.subarray(i) : base.subarray(Math.min(base.length, i + v.length));
      return concatBytes(base.subarray(0, i), v, rest);
    }
    case 13: {
      const n = 2 + (b % 5);
      return concatBytes(...Array.from({ length: n }, () => base));
    }
    default:
      return rnd.bytes(a % (maxRandom + 1));
  }
}


/**
 * Runs `decode` on an input that claims far more bytes than it holds, `times` times, and checks it
 * is refused with an allowed code, cheaply (no work or allocation proportional to the claim: a
 * 10 GiB claim must cost what a 10-byte one costs).
 */
export function expectCheapRejection(what: string, decode: () => unknown, allowed: readonly ErrorCode[], times = 2_000): { perCallUs: number; maxExternalGrowthBytes: number } {
  let maxGrowth = 0;
  // stacks off, as in fuzzDecoder: capturing one costs more than the rejection it belongs to
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const started = performance.now();
  try {
    for (let i = 0; i < times; i++) {
      // sampled every 100 calls: memoryUsage() itself costs more than the call
      const isSampled = i % 100 === 0;
      const before = isSampled ? process.memoryUsage().arrayBuffers : 0;
      let thrown: unknown;
      try {
        decode();
      } catch (err) {
        thrown = err;
      }
      if (isSampled) maxGrowth = Math.max(maxGrowth, process.memoryUsage().arrayBuffers - before);
      expect(thrown, `${what}: expected a MeshError`).toBeInstanceOf(MeshError);
      expect(allowed, `${what}: ${(thrown as MeshError).message}`).toContain((thrown as MeshError).code);
    }
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  const perCallUs = ((performance.now() - started) * 1000) / times;
  console.log(`[fuzz] ${what}: refused ${times} times, ${perCallUs.toFixed(1)} µs per call, largest ArrayBuffer growth during a call ${maxGrowth} bytes`);
  // a claim honoured by allocating would cost milliseconds and show gigabytes of ArrayBuffers
  expect(perCallUs, `${what}: rejection is not cheap`).toBeLessThan(1_000);
  expect(maxGrowth, `${what}: allocated for the claim`).toBeLessThan(16 * 1024 * 1024);
  return { perCallUs, maxExternalGrowthBytes: maxGrowth };
}
