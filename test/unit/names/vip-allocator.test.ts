import { describe, it, expect } from 'vitest';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { DEFAULT_VIP_CIDR, VipAllocator, intToIpv4, ipv4ToInt, parseCidr } from '../../../src/names/index.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof MeshError ? err.code : `not a MeshError: ${String(err)}`;
  }
}

describe('ipv4 helpers and parseCidr', () => {
  it('converts both ways', () => {
    expect(ipv4ToInt('127.77.0.53')).toBe(0x7f4d0035);
    expect(intToIpv4(0x7f4d0035)).toBe('127.77.0.53');
    expect(intToIpv4(ipv4ToInt('255.255.255.255'))).toBe('255.255.255.255');
    expect(ipv4ToInt('0.0.0.0')).toBe(0);
    for (const bad of ['1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', ' 1.2.3.4', 'a.b.c.d', '']) {
      expect(codeOf(() => ipv4ToInt(bad)), bad).toBe(ErrorCodes.INVALID_ARGUMENT);
    }
    expect(codeOf(() => intToIpv4(2 ** 32))).toBe(ErrorCodes.INVALID_ARGUMENT);
  });

  it('parses CIDRs and refuses host bits', () => {
    expect(parseCidr('127.77.0.0/16')).toEqual({ network: 0x7f4d0000, prefix: 16, size: 65536 });
    expect(parseCidr('10.0.0.0/8').size).toBe(2 ** 24);
    expect(() => parseCidr('127.77.0.1/16')).toThrow(/host bits set; expected 127.77.0.0\/16/);
    expect(codeOf(() => parseCidr('127.77.0.0/33'))).toBe(ErrorCodes.INVALID_CONFIG);
    expect(codeOf(() => parseCidr('127.77.0.0'))).toBe(ErrorCodes.INVALID_CONFIG);
    expect(codeOf(() => parseCidr('127.777.0.0/16'))).toBe(ErrorCodes.INVALID_CONFIG);
  });
});

describe('VipAllocator', () => {
  it('gives the same VIP for the same name, in any order and in any instance', () => {
    const a = new VipAllocator();
    const names = ['cache', 'db', 'web', 'api', 'queue'];
    const first = names.map((n) => a.allocate(n));
    expect(names.map((n) => a.allocate(n))).toEqual(first);
    expect(a.allocate('CACHE')).toBe(first[0]);
    const b = new VipAllocator({ cidr: DEFAULT_VIP_CIDR });
    const reversed = [...names].reverse().map((n) => b.allocate(n)).reverse();
    expect(reversed).toEqual(first);
    for (const vip of first) expect(vip).toMatch(/^127\.77\.\d+\.\d+$/);
    expect(new Set(first).size).toBe(names.length);
    expect(a.lookup('db')).toBe(first[1]);
    expect(a.lookup('missing')).toBeUndefined();
    expect(a.nameOf(first[2]!)).toBe('web');
  });

  it('probes linearly on a collision', () => {
    // In a /29 (8 addresses, 3 reserved: .0, .1, .7) collisions are certain among 5 names.
    const a = new VipAllocator({ cidr: '127.0.0.0/29' });
    const vips = ['a', 'b', 'c', 'd', 'e'].map((n) => a.allocate(n));
    expect(new Set(vips).size).toBe(5);
    expect(vips.sort()).toEqual(['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']);
    // Find two names with the same preferred slot: the second lands on the next free one.
    const probe = new VipAllocator({ cidr: '127.0.0.0/24' });
    const preferred = new Map<string, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; i < 1000 && pair === undefined; i++) {
      const name = `svc${i}`;
      const fresh = new VipAllocator({ cidr: '127.0.0.0/24' });
      const vip = fresh.allocate(name);
      const other = preferred.get(vip);
      if (other !== undefined && vip !== '127.0.0.254') pair = [other, name];
      preferred.set(vip, name);
    }
    expect(pair).toBeDefined();
    const v1 = probe.allocate(pair![0]);
    const v2 = probe.allocate(pair![1]);
    expect(ipv4ToInt(v2)).toBeGreaterThan(ipv4ToInt(v1));
    expect(ipv4ToInt(v2) - ipv4ToInt(v1)).toBeLessThanOrEqual(2); // next slot, or one more past .53
    // Released: the second name's VIP does not move (stability), and the freed slot is reused.
    probe.release(pair![0]);
    expect(probe.lookup(pair![1])).toBe(v2);
    expect(probe.allocate(pair![0])).toBe(v1);
  });

  it('never hands out the network, broadcast, x.x.0.1 or x.x.0.53', () => {
    const a = new VipAllocator({ cidr: '127.77.0.0/26' });
    expect(a.capacity).toBe(64 - 4);
    const vips = new Set<string>();
    for (let i = 0; i < a.capacity; i++) vips.add(a.allocate(`s${i}`));
    expect(vips.size).toBe(60);
    for (const reserved of ['127.77.0.0', '127.77.0.1', '127.77.0.53', '127.77.0.63']) {
      expect(vips.has(reserved), reserved).toBe(false);
      expect(a.isReserved(reserved)).toBe(true);
    }
    const extra = new VipAllocator({ cidr: '127.77.0.0/30', reserved: ['127.77.0.2'] });
    expect(extra.capacity).toBe(0);
    expect(codeOf(() => extra.allocate('x'))).toBe(ErrorCodes.VIP_EXHAUSTED);
    expect(codeOf(() => new VipAllocator({ reserved: ['10.0.0.1'] }))).toBe(ErrorCodes.INVALID_CONFIG);
  });

  it('exhausts a /30 with VIP_EXHAUSTED, and release frees a slot', () => {
    const a = new VipAllocator({ cidr: '127.1.2.0/30' });
    expect(a.capacity).toBe(1); // .0 network, .1 reserved, .3 broadcast
    expect(a.allocate('only')).toBe('127.1.2.2');
    let err: unknown;
    try {
      a.allocate('second');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MeshError);
    expect((err as MeshError).code).toBe(ErrorCodes.VIP_EXHAUSTED);
    expect((err as MeshError).message).toMatch(/127\.1\.2\.0\/30.*'second'/);
    expect(a.allocate('only')).toBe('127.1.2.2'); // an existing name still resolves when full
    expect(a.release('only')).toBe(true);
    expect(a.release('only')).toBe(false);
    expect(a.allocate('second')).toBe('127.1.2.2');
  });

  it('round trips through JSON, keeping probed VIPs where they were', () => {
    const a = new VipAllocator({ cidr: '127.0.0.0/28' });
    for (const n of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) a.allocate(n);
    const json = a.toJSON();
    expect(json.version).toBe(1);
    expect(json.cidr).toBe('127.0.0.0/28');
    expect(Object.keys(json.entries)).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    const restored = VipAllocator.fromJSON(JSON.parse(JSON.stringify(json)));
    expect(restored.entries()).toEqual(a.entries());
    const fromText = VipAllocator.fromJSON(JSON.stringify(a));
    expect(fromText.toJSON()).toEqual(json);
    // Restored in a different order of first use, VIPs stay what was persisted.
    const reordered = VipAllocator.fromJSON({ version: 1, cidr: '127.0.0.0/28', entries: Object.fromEntries(Object.entries(json.entries).reverse()) });
    for (const { name, vip } of a.entries()) expect(reordered.lookup(name)).toBe(vip);
  });

  it('refuses inconsistent JSON with INVALID_CONFIG naming the entry', () => {
    const cases: Array<[unknown, RegExp]> = [
      ['not json', /not valid JSON/],
      [[], /expected an object/],
      [{ version: 2, cidr: '127.0.0.0/24', entries: {} }, /version must be 1/],
      [{ version: 1, cidr: '10.0.0.0/24', entries: {} }, /inside 127.0.0.0\/8/],
      [{ version: 1, cidr: '127.0.0.0/24', entries: [] }, /entries must be an object/],
      [{ version: 1, cidr: '127.0.0.0/24', entries: { a: '127.0.1.5' } }, /entries\['a'\]: 127.0.1.5 is outside/],
      [{ version: 1, cidr: '127.0.0.0/24', entries: { a: '127.0.0.53' } }, /entries\['a'\]: 127.0.0.53 is a reserved address/],
      [{ version: 1, cidr: '127.0.0.0/24', entries: { a: '127.0.0.5', b: '127.0.0.5' } }, /entries\['b'\]: 127.0.0.5 is already held by 'a'/],
      [{ version: 1, cidr: '127.0.0.0/24', entries: { a: '127.0.0.5', A: '127.0.0.6' } }, /entries\['A'\]: name appears twice/],
      [{ version: 1, cidr: '127.0.0.0/24', entries: { a: 5 } }, /entries\['a'\]: expected a string/],
    ];
    for (const [input, pattern] of cases) {
      let err: unknown;
      try {
        VipAllocator.fromJSON(input);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(input)).toBeInstanceOf(MeshError);
      expect((err as MeshError).code).toBe(ErrorCodes.INVALID_CONFIG);
      expect((err as MeshError).message).toMatch(pattern);
    }
  });

  it('rejects bad CIDRs and names', () => {
    for (const cidr of ['10.0.0.0/16', '127.0.0.0/7', '126.0.0.0/7', '127.1.0.0/31', '127.1.0.0/32', '127.77.0.5/16', 'garbage', '0.0.0.0/0']) {
      expect(codeOf(() => new VipAllocator({ cidr })), cidr).toBe(ErrorCodes.INVALID_CONFIG);
    }
    expect(() => new VipAllocator({ cidr: '127.0.0.0/8' })).not.toThrow();
    expect(() => new VipAllocator({ cidr: '127.255.255.252/30' })).not.toThrow();
    const a = new VipAllocator();
    expect(codeOf(() => a.allocate(''))).toBe(ErrorCodes.INVALID_ARGUMENT);
    expect(codeOf(() => a.allocate('x'.repeat(254)))).toBe(ErrorCodes.INVALID_ARGUMENT);
  });

  it('fills a /24 completely with distinct, unreserved VIPs in bounded time', () => {
    const a = new VipAllocator({ cidr: '127.9.9.0/24' });
    const started = Date.now();
    const vips = new Set<string>();
    for (let i = 0; i < a.capacity; i++) vips.add(a.allocate(`svc-${i}`));
    expect(vips.size).toBe(252);
    expect(codeOf(() => a.allocate('one-more'))).toBe(ErrorCodes.VIP_EXHAUSTED);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(a.entries()).toHaveLength(252);
  });
});
