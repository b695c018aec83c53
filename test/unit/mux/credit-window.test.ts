import { describe, expect, it } from 'vitest';
import { ReceiveWindow, SendCredit } from '../../../src/mux/index.js';
import { seededRandom } from '../../../src/util/random.js';

const KiB = 1024;

describe('SendCredit', () => {
  it('takes no more than it was granted', () => {
    const credit = new SendCredit(100);
    expect(credit.take(60)).toBe(60);
    expect(credit.take(60)).toBe(40);
    expect(credit.take(60)).toBe(0);
    expect(credit.grant(10)).toBe(true);
    expect(credit.bytes).toBe(10);
  });

  it('refuses a grant that passes a uint32 window, and nonsense amounts', () => {
    const credit = new SendCredit(0xffff_fff0);
    expect(credit.grant(0x0f)).toBe(true);
    expect(credit.grant(1)).toBe(false);
    expect(credit.bytes).toBe(0xffff_ffff);
    const other = new SendCredit();
    expect(other.grant(-1)).toBe(false);
    expect(other.grant(1.5)).toBe(false);
    expect(other.grant(Number.NaN)).toBe(false);
    expect(other.bytes).toBe(0);
  });
});

describe('ReceiveWindow', () => {
  it('an acceptor window is closed until open(); an opener window is open at once', () => {
    const acceptor = new ReceiveWindow({ initialWindowBytes: 64 * KiB, maxWindowBytes: 256 * KiB, isOpen: false });
    expect(acceptor.receive(1)).toBe(false);
    expect(acceptor.open()).toBe(64 * KiB);
    expect(acceptor.receive(64 * KiB)).toBe(true);
    const opener = new ReceiveWindow({ initialWindowBytes: 64 * KiB, maxWindowBytes: 256 * KiB, isOpen: true });
    expect(opener.limitBytes).toBe(64 * KiB);
  });

  it('rejects data past the limit without counting it', () => {
    const w = new ReceiveWindow({ initialWindowBytes: 4 * KiB, maxWindowBytes: 4 * KiB, isOpen: true });
    expect(w.receive(4 * KiB - 1)).toBe(true);
    expect(w.receive(2)).toBe(false);
    expect(w.receivedBytes).toBe(4 * KiB - 1);
    expect(w.receive(1)).toBe(true);
  });

  it('an update falls due when half the window was consumed, and credits exactly the consumed bytes', () => {
    const w = new ReceiveWindow({ initialWindowBytes: 8 * KiB, maxWindowBytes: 8 * KiB, isOpen: true });
    w.receive(8 * KiB);
    w.setConsumed(4 * KiB - 1);
    expect(w.takeUpdate()).toBe(0);
    w.setConsumed(4 * KiB);
    expect(w.takeUpdate()).toBe(4 * KiB);
    expect(w.limitBytes).toBe(12 * KiB);
    expect(w.takeUpdate()).toBe(0);
  });

  it('consumption never goes back and never passes what arrived', () => {
    const w = new ReceiveWindow({ initialWindowBytes: 8 * KiB, maxWindowBytes: 8 * KiB, isOpen: true });
    w.receive(1000);
    w.setConsumed(5000);
    expect(w.consumedBytes).toBe(1000);
    w.setConsumed(10);
    expect(w.consumedBytes).toBe(1000);
  });

  it('doubles the window when the reader keeps up, never beyond maxWindowBytes', () => {
    const w = new ReceiveWindow({ initialWindowBytes: 16 * KiB, maxWindowBytes: 100 * KiB, isOpen: true });
    const windows: number[] = [];
    for (let i = 0; i < 20; i++) {
      const n = w.limitBytes - w.receivedBytes;
      w.receive(n);
      w.setConsumed(w.receivedBytes); // the reader takes everything at once
      const credit = w.takeUpdate();
      expect(credit).toBeGreaterThan(0);
      expect(credit).toBeLessThanOrEqual(w.windowBytes);
      windows.push(w.windowBytes);
    }
    expect(windows.slice(0, 4)).toEqual([32 * KiB, 64 * KiB, 100 * KiB, 100 * KiB]);
    expect(Math.max(...windows)).toBe(100 * KiB);
  });

  it('does not grow for a reader that lags (half a window unread when the update falls due)', () => {
    const w = new ReceiveWindow({ initialWindowBytes: 16 * KiB, maxWindowBytes: 1024 * KiB, isOpen: true });
    for (let i = 0; i < 10; i++) {
      w.receive(w.limitBytes - w.receivedBytes); // the sender fills the window
      w.setConsumed(w.consumedBytes + 8 * KiB); // the reader takes only half
      expect(w.takeUpdate()).toBe(8 * KiB);
      expect(w.windowBytes).toBe(16 * KiB);
    }
  });

  it('asks reserveGrowth for the extra bytes and stays put (still crediting) when refused', () => {
    const w = new ReceiveWindow({ initialWindowBytes: 16 * KiB, maxWindowBytes: 1024 * KiB, isOpen: true });
    const asked: number[] = [];
    w.receive(16 * KiB);
    w.setConsumed(16 * KiB);
    expect(
      w.takeUpdate((extra) => {
        asked.push(extra);
        return false;
      }),
    ).toBe(16 * KiB);
    expect(asked).toEqual([16 * KiB]);
    expect(w.windowBytes).toBe(16 * KiB);
  });

  it('keeps its invariants under a random schedule (seeded)', () => {
    const seed = 0xc0ffee;
    const rnd = seededRandom(seed);
    const max = 512 * KiB;
    const w = new ReceiveWindow({ initialWindowBytes: 4 * KiB, maxWindowBytes: max, isOpen: true });
    let senderCredit = w.limitBytes;
    let granted = w.limitBytes;
    for (let step = 0; step < 20_000; step++) {
      const r = rnd.float();
      if (r < 0.5) {
        const n = Math.floor(rnd.float() * (senderCredit + 1));
        expect(w.receive(n), `seed ${seed} step ${step}`).toBe(true);
        senderCredit -= n;
      } else {
        w.setConsumed(w.consumedBytes + Math.floor(rnd.float() * (w.backlogBytes + 1)));
        const credit = w.takeUpdate();
        senderCredit += credit;
        granted += credit;
      }
      const ok =
        w.receivedBytes <= w.limitBytes &&
        granted === w.limitBytes &&
        w.windowBytes <= max &&
        w.limitBytes - w.consumedBytes <= w.windowBytes;
      if (!ok) expect.fail(`seed ${seed} step ${step}: invariant broken ${JSON.stringify({ ...w, r: w.receivedBytes, l: w.limitBytes, c: w.consumedBytes, win: w.windowBytes, granted })}`);
    }
    expect(w.windowBytes).toBe(max);
    expect(w.receive(senderCredit + 1)).toBe(false);
  });
});
