import { describe, expect, it } from 'vitest';
import { worstFairShareDeviationPct } from '../../../bench/workloads.js';

describe('bench fair share', () => {
  it('is the furthest stream from an equal share, in % of that share', () => {
    expect(worstFairShareDeviationPct([1, 1, 1, 1])).toBe(0);
    expect(worstFairShareDeviationPct([1.2, 1, 1, 0.8])).toBeCloseTo(20, 9);
    expect(worstFairShareDeviationPct([2, 0, 1, 1])).toBeCloseTo(100, 9);
  });

  it('has no figure for one stream or no traffic', () => {
    expect(worstFairShareDeviationPct([3])).toBeNull();
    expect(worstFairShareDeviationPct([])).toBeNull();
    expect(worstFairShareDeviationPct([0, 0])).toBeNull();
  });
});
