import fc from 'fast-check';
import type { Frame } from '../../../src/wire/index.js';

/** fast-check generators of valid frames, shared by the wire codec tests. */

export const streamIdArb = fc.integer({ min: 1, max: 0xffff_ffff });
export const u32Arb = fc.integer({ min: 0, max: 0xffff_ffff });
const smallText = fc.string({ maxLength: 40 });

/** One generator per stream frame kind (open, accept, data, window, fin, reset). */
const streamFrameKinds: fc.Arbitrary<Frame>[] = [
  fc.record({ kind: fc.constant('open' as const), streamId: streamIdArb, service: fc.string({ minLength: 1, maxLength: 30 }), port: fc.integer({ min: 1, max: 65535 }), window: u32Arb }),
  fc.record({ kind: fc.constant('accept' as const), streamId: streamIdArb, window: u32Arb }),
  fc.record({ kind: fc.constant('data' as const), streamId: streamIdArb, data: fc.uint8Array({ maxLength: 300 }) }),
  fc.record({ kind: fc.constant('window' as const), streamId: streamIdArb, credit: fc.integer({ min: 1, max: 0xffff_ffff }) }),
  fc.record({ kind: fc.constant('fin' as const), streamId: streamIdArb }),
  fc.record({ kind: fc.constant('reset' as const), streamId: streamIdArb, code: smallText, message: smallText }),
];

/** The six stream frames, with any valid content. */
export const streamFrameArb: fc.Arbitrary<Frame> = fc.oneof(...streamFrameKinds);

/** Every kind of frame, each kind equally likely: the stream frames and the tunnel-level ones. */
export const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  ...streamFrameKinds,
  fc.record({ kind: fc.constant('ping' as const), id: fc.maxSafeNat() }),
  fc.record({ kind: fc.constant('pong' as const), id: fc.maxSafeNat() }),
  fc.record({
    kind: fc.constant('gossip' as const),
    records: fc.array(fc.record({ body: fc.uint8Array({ maxLength: 80 }), signature: fc.uint8Array({ minLength: 64, maxLength: 64 }) }), { maxLength: 3 }),
  }),
  fc.record({ kind: fc.constant('rekey' as const) }),
  fc.record({ kind: fc.constant('goaway' as const), code: smallText, message: smallText }),
);
