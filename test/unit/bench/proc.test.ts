import { describe, expect, it } from 'vitest';
import { parseStatusMemoryKb, sampleWhile, usage } from '../../../bench/proc.js';

describe('bench/proc: memory of a process tree', () => {
  it('reads VmRSS and RssAnon from /proc/PID/status text', () => {
    const status = ['Name:\tnode', 'VmPeak:\t 1234 kB', 'VmRSS:\t   61440 kB', 'RssAnon:\t   16384 kB', 'RssFile:\t   45056 kB', 'RssShmem:\t       0 kB'].join('\n');
    expect(parseStatusMemoryKb(status)).toEqual({ rssKb: 61440, privateKb: 16384 });
  });

  it('gives 0 for a field the text lacks (a kernel thread has no VmRSS)', () => {
    expect(parseStatusMemoryKb('Name:\tkthreadd\nState:\tS (sleeping)\n')).toEqual({ rssKb: 0, privateKb: 0 });
  });

  it('measures this process: private memory is part of its RSS, and grows with what it allocates', async () => {
    const now = usage([process.pid]);
    expect(now.rssMb).toBeGreaterThan(10);
    expect(now.privateMb).toBeGreaterThan(1);
    expect(now.privateMb).toBeLessThan(now.rssMb);
    let held: Buffer | undefined;
    const sampled = await sampleWhile({ self: [process.pid] }, async () => {
      held = Buffer.alloc(64 * 1024 * 1024, 1); // touched, so resident
      await new Promise((resolve) => setTimeout(resolve, 50));
    }, 10);
    expect(held!.length).toBe(64 * 1024 * 1024);
    expect(sampled.privateMbMax.self).toBeGreaterThanOrEqual(now.privateMb + 60);
    expect(sampled.rssMbMax.self).toBeGreaterThanOrEqual(sampled.privateMbMax.self);
    held = undefined;
  });
});
