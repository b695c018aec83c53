import { describe, expect, it } from 'vitest';
import { coldBareWs, coldTunnelSetup } from '../../bench/mux-throughput.js';

/**
 * The benchmark's cold-setup rows (bench/in-process.ts) must time what they say: every run a new
 * connection that reaches the first byte back, through a real handshake for the tunnel row.
 */
describe('cold setup measurement', () => {
  it('tunnel: each run is a fresh tunnel with checked certificates and a byte through a stream', async () => {
    const r = await coldTunnelSetup(3, 1);
    expect(r.runsMs).toHaveLength(3);
    for (const ms of r.runsMs) {
      expect(Number.isFinite(ms)).toBe(true);
      expect(ms).toBeGreaterThan(0);
    }
    expect(r.p50Ms).toBeGreaterThanOrEqual(Math.min(...r.runsMs));
    expect(r.p90Ms).toBeGreaterThanOrEqual(r.p50Ms);
  });

  it('bare ws baseline: each run a fresh connection and one echoed message', async () => {
    const r = await coldBareWs(3, 1);
    expect(r.runsMs).toHaveLength(3);
    for (const ms of r.runsMs) expect(ms).toBeGreaterThan(0);
  });
});
