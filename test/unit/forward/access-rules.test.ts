import { describe, expect, it } from 'vitest';
import { isAllowed } from '../../../src/forward/index.js';
import type { PeerIdentity } from '../../../src/mesh/index.js';

const web1: PeerIdentity = { nodeIdHex: 'aa', name: 'web1', tags: ['net-front', 'net-back'] };
const proxy1: PeerIdentity = { nodeIdHex: 'bb', name: 'proxy1', tags: ['net-front'] };

describe('isAllowed (allowFrom against the certificate)', () => {
  it('null allows every member', () => {
    expect(isAllowed(null, proxy1)).toBe(true);
  });

  it('an empty list allows nobody', () => {
    expect(isAllowed([], web1)).toBe(false);
  });

  it('matches node names exactly', () => {
    expect(isAllowed(['web1'], web1)).toBe(true);
    expect(isAllowed(['web1'], proxy1)).toBe(false);
    expect(isAllowed(['web'], web1)).toBe(false);
  });

  it('matches tag:<tag> against the certificate tags, not against names', () => {
    expect(isAllowed(['tag:net-back'], web1)).toBe(true);
    expect(isAllowed(['tag:net-back'], proxy1)).toBe(false);
    expect(isAllowed(['tag:web1'], web1)).toBe(false);
    expect(isAllowed(['net-back'], web1)).toBe(false);
  });

  it('any matching entry is enough', () => {
    expect(isAllowed(['db1', 'tag:net-front'], proxy1)).toBe(true);
  });
});
