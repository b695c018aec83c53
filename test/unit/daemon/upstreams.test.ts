import { describe, expect, it } from 'vitest';
import { systemUpstreams } from '../../../src/daemon/resolve-config.js';

function files(map: Record<string, string>): (path: string) => string {
  return (path) => {
    const text = map[path];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return text;
  };
}

describe('systemUpstreams (names outside the mesh, when dns.upstreams is not set)', () => {
  it('takes the nameservers of /etc/resolv.conf, leaving out the mesh DNS itself', () => {
    const read = files({ '/etc/resolv.conf': 'search mesh\nnameserver 127.77.0.53\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n' });
    expect(systemUpstreams('127.77.0.53', read)).toEqual(['192.0.2.1', '192.0.2.2']);
  });

  it("behind systemd-resolved's stub, uses the servers resolved itself uses (forwarding to the stub would loop)", () => {
    const read = files({
      '/etc/resolv.conf': 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch mesh\n',
      '/run/systemd/resolve/resolv.conf': 'nameserver 127.77.0.53\nnameserver 198.51.100.7\n',
    });
    expect(systemUpstreams('127.77.0.53', read)).toEqual(['198.51.100.7']);
  });

  it('keeps the stub when resolved lists no other server (better than nothing)', () => {
    const read = files({ '/etc/resolv.conf': 'nameserver 127.0.0.53\n' });
    expect(systemUpstreams('127.77.0.53', read)).toEqual(['127.0.0.53']);
  });

  it('no resolv.conf: no upstreams', () => {
    expect(systemUpstreams('127.77.0.53', files({}))).toEqual([]);
  });
});
