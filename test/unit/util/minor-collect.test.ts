import { describe, expect, it } from 'vitest';
import { loadMinorCollect } from '../../../src/util/buffer-reclaim.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// Its own file (vitest runs each file in a fresh worker): after other tests in the same process have
// run collections and busy loops, V8 may decide to allocate the Buffers of this tight loop straight
// into the old generation (allocation-site pretenuring), where no minor collection reaches them.
describe('minor collection', () => {
  it("this Node's minor collection frees dropped Buffers (CI runs this file under Node 20 and 24)", async () => {
    const collect = loadMinorCollect();
    expect(collect).toBeTypeOf('function');
    collect!();
    await sleep(20);
    const before = process.memoryUsage().external;
    for (let i = 0; i < 256; i++) Buffer.allocUnsafeSlow(64 * 1024).fill(i); // 16 MiB, dropped at once
    const grown = process.memoryUsage().external;
    expect(grown - before).toBeGreaterThan(12 * 2 ** 20);
    collect!();
    // the backing stores may be freed by a sweeper task just after the collection
    let after = process.memoryUsage().external;
    for (let i = 0; i < 100 && after - before > 4 * 2 ** 20; i++) {
      await sleep(10);
      after = process.memoryUsage().external;
    }
    expect(after - before).toBeLessThan(4 * 2 ** 20);
  });
});
