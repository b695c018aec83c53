import { describe, expect, it } from 'vitest';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { defaultConfig, parseDurationMs, parseHostPort, validateConfig, validateEndpoint, type AgentConfig } from '../../../src/config/index.js';
import { expectMeshError } from '../../helpers/mesh-error.js';

function invalid(fn: () => unknown): MeshError {
  return expectMeshError(fn, ErrorCodes.INVALID_CONFIG);
}

const FULL = {
  nodeName: 'server1',
  stateDir: '/var/lib/osmoda-mesh-test',
  listen: '10.0.0.1:18801',
  publicEndpoints: ['ws://203.0.113.5:18801', 'wss://mesh.example.com/osmoda-mesh/v1'],
  control: '/run/osmoda-mesh/test.sock',
  dns: { enable: false, listen: '127.77.0.54:5353', upstreams: ['1.1.1.1', '9.9.9.9:5353', '[2606:4700::1111]:53'], domain: 'internal' },
  vipRange: '127.88.0.0/16',
  forwardMode: 'nat',
  logLevel: 'debug',
  tags: ['db', 'eu-west'],
  services: {
    cache: { port: 6379 },
    web: { port: 80, targetHost: '10.0.0.9', targetPort: 8080, allowFrom: ['proxy1', 'tag:net-front'] },
  },
  joinTokenFile: '/run/secrets/mesh-token',
  bootstrap: { meshName: 'prod' },
  metricsListen: '127.0.0.1:9877',
  hostsFile: '/etc/hosts',
};

describe('validateConfig accepts', () => {
  it('a full valid config, keeping every value', () => {
    const config = validateConfig(FULL, 'ignored-host');
    const expected: AgentConfig = {
      ...FULL,
      forwardMode: 'nat',
      logLevel: 'debug',
      services: {
        cache: { port: 6379, targetHost: '127.0.0.1', targetPort: 6379, allowFrom: null },
        web: { port: 80, targetHost: '10.0.0.9', targetPort: 8080, allowFrom: ['proxy1', 'tag:net-front'] },
      },
    };
    expect(config).toEqual(expected);
  });

  it('an empty object, filling every default (node name from the host name)', () => {
    const config = validateConfig({}, 'myhost');
    expect(config).toEqual(defaultConfig('myhost'));
    expect(config).toMatchObject({
      nodeName: 'myhost',
      stateDir: '/var/lib/osmoda-mesh',
      listen: '0.0.0.0:18800',
      publicEndpoints: [],
      control: '/run/osmoda-mesh/control.sock',
      // null: use the nameservers of /etc/resolv.conf (decided by the daemon, not here)
      dns: { enable: true, listen: '127.77.0.53:53', upstreams: null, domain: 'mesh' },
      vipRange: '127.77.0.0/16',
      forwardMode: 'bind',
      logLevel: 'info',
      tags: [],
      services: {},
      joinTokenFile: null,
      bootstrap: { meshName: null },
      metricsListen: null,
      hostsFile: null,
    });
  });

  it('a partial dns block, keeping the other dns defaults', () => {
    const config = validateConfig({ dns: { listen: '127.0.0.53:5353' } }, 'h');
    expect(config.dns).toEqual({ enable: true, listen: '127.0.0.53:5353', upstreams: null, domain: 'mesh' });
  });

  it('dns upstreams: null (resolv.conf) and [] (forward nothing) are kept apart', () => {
    expect(validateConfig({ dns: { upstreams: null } }, 'h').dns.upstreams).toBeNull();
    expect(validateConfig({ dns: { upstreams: [] } }, 'h').dns.upstreams).toEqual([]);
  });

  it('allowFrom: an empty list (no one) stays empty, duplicates go', () => {
    const config = validateConfig({ services: { a: { port: 1, allowFrom: [] }, b: { port: 2, allowFrom: ['web', 'tag:x', 'web'] } } }, 'h');
    expect(config.services['a']?.allowFrom).toEqual([]);
    expect(config.services['b']?.allowFrom).toEqual(['web', 'tag:x']);
  });

  it('a port given as a digit string and null optionals', () => {
    const config = validateConfig({ services: { db: { port: '5432', targetPort: null, allowFrom: null } }, nodeName: null, joinTokenFile: null, bootstrap: null }, 'h');
    expect(config.services['db']).toEqual({ port: 5432, targetHost: '127.0.0.1', targetPort: 5432, allowFrom: null });
    expect(config.nodeName).toBe('h');
  });

  it('does not share default objects between calls', () => {
    const a = validateConfig({}, 'h');
    a.dns.listen = '127.0.0.1:1';
    a.tags.push('mutated');
    a.services['x'] = { port: 1, targetHost: 'h', targetPort: 1, allowFrom: null };
    const b = validateConfig({}, 'h');
    expect(b.dns.listen).toBe('127.77.0.53:53');
    expect(b.tags).toEqual([]);
    expect(b.services).toEqual({});
  });
});

describe('validateConfig rejects with INVALID_CONFIG naming the field', () => {
  const cases: [string, unknown, RegExp][] = [
    ['port "abc"', { services: { web: { port: 'abc' } } }, /config services\.web\.port: expected a port 1\.\.65535, got 'abc'/],
    ['port 0', { services: { web: { port: 0 } } }, /services\.web\.port: expected a port 1\.\.65535, got 0/],
    ['port 70000', { services: { web: { port: 70000 } } }, /services\.web\.port: .*got 70000/],
    ['targetPort 1.5', { services: { web: { port: 80, targetPort: 1.5 } } }, /services\.web\.targetPort: .*got 1\.5/],
    ['service name with a space', { services: { 'my web': { port: 80 } } }, /config services\.my web: expected a DNS label/],
    ['service name in capitals', { services: { Web: { port: 80 } } }, /services\.Web: expected a DNS label/],
    ['unknown service key', { services: { web: { port: 80, protocol: 'tcp' } } }, /services\.web\.protocol: expected no such option/],
    ['unknown top-level key', { listenAddress: '0.0.0.0:1' }, /config listenAddress: expected no such option \(allowed: nodeName, stateDir/],
    ['unknown dns key', { dns: { upstream: ['1.1.1.1'] } }, /config dns\.upstream: expected no such option/],
    ['relative stateDir', { stateDir: 'var/lib/mesh' }, /config stateDir: expected an absolute path, got 'var\/lib\/mesh'/],
    ['stateDir not a string', { stateDir: 7 }, /config stateDir: expected an absolute path, got 7/],
    ['bad endpoint URL', { publicEndpoints: ['not a url'] }, /config publicEndpoints\[0\]: expected a ws:\/\/ or wss:\/\/ URL, got 'not a url'/],
    ['http endpoint', { publicEndpoints: ['ws://ok:1', 'http://10.0.0.1:18800'] }, /publicEndpoints\[1\]: expected a ws:\/\/ or wss:\/\/ URL/],
    ['endpoint with credentials', { publicEndpoints: ['ws://user:pw@10.0.0.1:1'] }, /publicEndpoints\[0\]: expected a URL without credentials/],
    ['publicEndpoints not a list', { publicEndpoints: 'ws://10.0.0.1:1' }, /config publicEndpoints: expected a list/],
    ['vipRange outside 127/8', { vipRange: '10.77.0.0/16' }, /config vipRange: expected a CIDR inside 127\.0\.0\.0\/8 .*got '10\.77\.0\.0\/16'/],
    ['vipRange prefix 31', { vipRange: '127.77.0.0/31' }, /config vipRange: .*got '127\.77\.0\.0\/31'/],
    ['vipRange without prefix', { vipRange: '127.77.0.0' }, /config vipRange/],
    ['bad logLevel', { logLevel: 'verbose' }, /config logLevel: expected one of fatal, error, warn, info, debug, trace, silent, got 'verbose'/],
    ['forwardMode tun', { forwardMode: 'tun' }, /config forwardMode: expected 'bind' or 'nat', got 'tun'/],
    ['allowFrom not a list', { services: { db: { port: 5432, allowFrom: 'web' } } }, /config services\.db\.allowFrom: expected a list, got 'web'/],
    ['allowFrom with a bad tag', { services: { db: { port: 5432, allowFrom: ['web', 'tag:Bad Tag'] } } }, /config services\.db\.allowFrom\[1\]: expected a node name or 'tag:<tag>' \(DNS labels\), got 'tag:Bad Tag'/],
    ['allowFrom with an empty tag', { services: { db: { port: 5432, allowFrom: ['tag:'] } } }, /services\.db\.allowFrom\[0\]: expected a node name or 'tag:<tag>'/],
    ['listen without a port', { listen: '0.0.0.0' }, /config listen: expected host:port/],
    ['listen port abc', { listen: '0.0.0.0:abc' }, /config listen: expected a port 1\.\.65535, got 'abc'/],
    ['dns.enable "yes"', { dns: { enable: 'yes' } }, /config dns\.enable: expected true or false, got 'yes'/],
    ['dns upstream with a bad port', { dns: { upstreams: ['1.1.1.1:99999'] } }, /config dns\.upstreams\[0\]: expected a port/],
    ['bad node name', { nodeName: '-bad' }, /config nodeName: expected a DNS label/],
    ['bad tag', { tags: ['ok', 'Not OK'] }, /config tags\[1\]: expected a DNS label/],
    ['control path too long', { control: '/' + 'x'.repeat(100) }, /config control: expected a socket path of at most 100 characters/],
    ['relative joinTokenFile', { joinTokenFile: 'token' }, /config joinTokenFile: expected an absolute path/],
    ['bootstrap meshName with an underscore', { bootstrap: { meshName: 'my_mesh' } }, /config bootstrap\.meshName: expected a DNS label/],
    ['config not an object', ['a'], /config : expected a JSON object/],
  ];
  for (const [label, input, pattern] of cases) {
    it(label, () => {
      expect(invalid(() => validateConfig(input, 'host')).message).toMatch(pattern);
    });
  }
});

describe('parseDurationMs', () => {
  it('reads every unit and plain milliseconds', () => {
    expect(parseDurationMs('250ms', 'ttl')).toBe(250);
    expect(parseDurationMs('1s', 'ttl')).toBe(1000);
    expect(parseDurationMs('90s', 'ttl')).toBe(90_000);
    expect(parseDurationMs('30m', 'ttl')).toBe(1_800_000);
    expect(parseDurationMs('24h', 'ttl')).toBe(86_400_000);
    expect(parseDurationMs('7d', 'ttl')).toBe(604_800_000);
    expect(parseDurationMs(' 2h ', 'ttl')).toBe(7_200_000);
    expect(parseDurationMs(5000, 'ttl')).toBe(5000);
  });

  for (const bad of ['', '10', '1.5h', '-1s', '0s', '1w', '1 h', 'h', 0, -5, 1.5, null, '99999999999999999d']) {
    it(`rejects ${JSON.stringify(bad)} naming the field`, () => {
      expect(invalid(() => parseDurationMs(bad, 'token ttl')).message).toMatch(/^config token ttl: expected a (duration such as 90s|positive duration)/);
    });
  }
});

describe('parseHostPort', () => {
  it('parses IPv4, host names and bracketed IPv6', () => {
    expect(parseHostPort('127.0.0.1:5432', 'f')).toEqual({ host: '127.0.0.1', port: 5432 });
    expect(parseHostPort('db.example.com:1', 'f')).toEqual({ host: 'db.example.com', port: 1 });
    expect(parseHostPort('[::1]:53', 'f')).toEqual({ host: '::1', port: 53 });
    expect(parseHostPort('localhost:65535', 'f')).toEqual({ host: 'localhost', port: 65535 });
  });

  it('uses the default port when none is given', () => {
    expect(parseHostPort('1.1.1.1', 'f', 53)).toEqual({ host: '1.1.1.1', port: 53 });
    expect(parseHostPort('[2606:4700::1111]', 'f', 53)).toEqual({ host: '2606:4700::1111', port: 53 });
  });

  const bad: [unknown, RegExp][] = [
    ['', /expected host:port/],
    ['1.2.3.4', /expected host:port/],
    ['[::1]', /expected host:port/],
    ['host:0', /expected a port 1\.\.65535, got '0'/],
    ['host:65536', /expected a port 1\.\.65535, got '65536'/],
    ['host:abc', /got 'abc'/],
    ['host:', /expected a port/],
    [':80', /with an IPv4 address or host name/],
    ['bad host!:80', /with an IPv4 address or host name, got 'bad host!:80'/],
    ['-host:80', /with an IPv4 address or host name/],
    [42, /expected host:port, got 42/],
  ];
  for (const [value, pattern] of bad) {
    it(`rejects ${JSON.stringify(value)}`, () => {
      const err = invalid(() => parseHostPort(value, 'dns.listen'));
      expect(err.message).toMatch(/^config dns\.listen: /);
      expect(err.message).toMatch(pattern);
    });
  }
});

describe('validateEndpoint', () => {
  it('accepts ws and wss URLs and returns them unchanged', () => {
    expect(validateEndpoint('ws://127.0.0.1:18800', 'e')).toBe('ws://127.0.0.1:18800');
    expect(validateEndpoint('wss://mesh.example.com/osmoda-mesh/v1', 'e')).toBe('wss://mesh.example.com/osmoda-mesh/v1');
  });
  it('rejects other schemes and non-strings', () => {
    for (const value of ['https://x', 'ws:/', 'tcp://1.2.3.4:5', 5, undefined]) invalid(() => validateEndpoint(value, 'e'));
  });
});
