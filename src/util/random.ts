import { randomBytes } from 'node:crypto';

/** Randomness passed in, so tests can use a seeded generator (STYLE: injectable randomness). */
export interface Random {
  bytes(length: number): Uint8Array;
  /** Uniform float in [0, 1), for jitter and replica choice; never for keys. */
  float(): number;
}

export const systemRandom: Random = {
  bytes: (length) => new Uint8Array(randomBytes(length)),
  float: () => Math.random(),
};

/** Deterministic generator for tests (xorshift128+ over a 32-bit seed); prints nothing, holds no globals. */
export function seededRandom(seed: number): Random {
  let s0 = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let s1 = (seed * 0x85ebca6b) >>> 0 || 2;
  const next32 = (): number => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= x << 23;
    x ^= x >>> 17;
    x ^= y ^ (y >>> 26);
    s1 = x >>> 0;
    return (s0 + s1) >>> 0;
  };
  return {
    bytes(length) {
      const out = new Uint8Array(length);
      for (let i = 0; i < length; i++) out[i] = next32() & 0xff;
      return out;
    },
    float: () => next32() / 0x1_0000_0000,
  };
}
