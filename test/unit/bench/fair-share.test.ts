import { describe, expect, it } from 'vitest';
import { roundOrder, worstFairShareDeviationPct } from '../../../bench/workloads.js';

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

describe('bench round order', () => {
  const paths = ['direct', 'mesh', 'mesh (node 22)', 'mesh (node 24)', 'v8', 'glibc', 'ssh -L', 'wireguard-go', 'nebula', 'socat', 'relay', 'chain'];

  it('runs every path once per round, round 1 in the given order', () => {
    expect(roundOrder(paths, 1)).toEqual(paths);
    for (const round of [1, 2, 3, 4]) expect([...roundOrder(paths, round)].sort()).toEqual([...paths].sort());
  });

  it('over three rounds no path runs first twice, and none follows the same path twice', () => {
    for (const list of [paths, paths.slice(0, 4), paths.slice(0, 5)]) {
      const rounds = [1, 2, 3].map((r) => roundOrder(list, r));
      expect(new Set(rounds.map((order) => order[0])).size, list.join()).toBe(3);
      for (const path of list) {
        const before = rounds.map((order) => order[order.indexOf(path) - 1]).filter((p) => p !== undefined);
        expect(new Set(before).size, `${path} in ${list.length}`).toBe(before.length);
      }
    }
    // the mesh follows direct in one round of three, not in all
    expect([1, 2, 3].filter((r) => { const o = roundOrder(paths, r); return o[o.indexOf('mesh') - 1] === 'direct'; })).toEqual([1]);
  });

  it('repeats the three orders from round 4', () => {
    expect(roundOrder(paths, 4)).toEqual(roundOrder(paths, 1));
    expect(roundOrder(paths, 5)).toEqual(roundOrder(paths, 2));
  });
});
