import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { samplePeer } from '../control/fixtures.js';
import { startHarness, type CliHarness } from './harness.js';

let h: CliHarness;

beforeEach(async () => {
  h = await startHarness();
});

afterEach(async () => {
  await h.close();
});

describe('token create', () => {
  it('prints only the token on stdout and sends ttl and uses', async () => {
    const { code, stdout, stderr } = await h.run(['token', 'create', '--ttl', '24h', '--uses', '5']);
    expect(code).toBe(0);
    expect(stdout).toBe('osmt1_SECRETTOKEN\n');
    expect(stderr).toContain('tok1');
    expect(stderr).not.toContain('SECRETTOKEN');
    expect(h.stub.calls).toEqual([{ method: 'createToken', arg: { ttlMs: 86_400_000, uses: 5 } }]);
  });

  it('prints the whole answer with --json', async () => {
    const { code, stdout } = await h.run(['token', 'create', '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ schema: 1, token: 'osmt1_SECRETTOKEN', tokenId: 'tok1' });
    expect(h.stub.calls).toEqual([{ method: 'createToken', arg: {} }]);
  });

  it.each([['--ttl', 'soon'], ['--ttl', '0s'], ['--uses', '0'], ['--uses', 'many']])('refuses %s %s with usage exit 2', async (flag, value) => {
    const { code, stderr } = await h.run(['token', 'create', flag, value]);
    expect(code).toBe(2);
    expect(stderr).toContain(flag);
    expect(h.stub.calls).toEqual([]);
  });
});

describe('join', () => {
  it('reads --token-file, trims it, sends it and never prints it', async () => {
    const file = join(h.tmp.dir, 'token');
    writeFileSync(file, '  osmt1_FROMFILE\n\n');
    const { code, stdout, stderr } = await h.run(['join', '--token-file', file, '--name', 'server7']);
    expect(code).toBe(0);
    expect(h.stub.calls).toEqual([{ method: 'join', arg: { token: 'osmt1_FROMFILE', name: 'server7' } }]);
    expect(stdout).toBe('joined mesh prod as server7\n');
    expect(stdout + stderr).not.toContain('FROMFILE');
  });

  it('takes the token from OSMODA_MESH_TOKEN when no other source is given', async () => {
    const { code } = await h.run(['join'], { OSMODA_MESH_TOKEN: 'osmt1_FROMENV\n' });
    expect(code).toBe(0);
    expect(h.stub.calls).toEqual([{ method: 'join', arg: { token: 'osmt1_FROMENV' } }]);
  });

  it('accepts the token as an argument with a warning', async () => {
    const { code, stderr } = await h.run(['join', 'osmt1_ARG']);
    expect(code).toBe(0);
    expect(stderr).toContain('process list');
    expect(stderr).not.toContain('osmt1_ARG');
    expect(h.stub.calls).toEqual([{ method: 'join', arg: { token: 'osmt1_ARG' } }]);
  });

  it('exits 2 with no token at all', async () => {
    const { code, stderr } = await h.run(['join']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^error: join: no token/);
    expect(h.stub.calls).toEqual([]);
  });

  it('exits 2 with both a token argument and --token-file', async () => {
    const file = join(h.tmp.dir, 'token');
    writeFileSync(file, 'osmt1_FROMFILE\n');
    const { code, stderr } = await h.run(['join', 'osmt1_ARG', '--token-file', file]);
    expect(code).toBe(2);
    expect(stderr).toContain('not both');
    expect(h.stub.calls).toEqual([]);
  });

  it('exits 2 on an empty token file and 1 on a missing one', async () => {
    const empty = join(h.tmp.dir, 'empty');
    writeFileSync(empty, '\n  \n');
    expect((await h.run(['join', '--token-file', empty])).code).toBe(2);
    const missing = await h.run(['join', '--token-file', join(h.tmp.dir, 'nope')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read it');
    expect(h.stub.calls).toEqual([]);
  });

  it('reports a handler error with its hint and exit 1', async () => {
    h.stub.failWith = new MeshError(ErrorCodes.TOKEN_EXPIRED, 'token expired at 2026-11-25T10:00:00Z');
    const { code, stderr } = await h.run(['join'], { OSMODA_MESH_TOKEN: 'osmt1_X' });
    expect(code).toBe(1);
    expect(stderr).toBe('error: token expired at 2026-11-25T10:00:00Z\nhint: create a new token on an admin node with `osmoda-mesh token create`\n');
  });
});

describe('token list and revoke, ping', () => {
  it('token list prints id, uses left and expiry; --json the answer', async () => {
    const { code, stdout } = await h.run(['token', 'list']);
    expect(code).toBe(0);
    expect(stdout).toContain('a'.repeat(32));
    expect(stdout).toMatch(/TOKEN ID\s+USES LEFT\s+EXPIRES/);
    const json = await h.run(['token', 'list', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ schema: 1, tokens: [{ usesLeft: 2 }] });
  });

  it('token revoke sends the id; a malformed id is a usage error', async () => {
    const ok = await h.run(['token', 'revoke', 'a'.repeat(32)]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe(`revoked token ${'a'.repeat(32)}\n`);
    const unknown = await h.run(['token', 'revoke', 'b'.repeat(32)]);
    expect(unknown.stdout).toContain('not known here');
    const bad = await h.run(['token', 'revoke', 'xyz']);
    expect(bad.code).toBe(2);
    expect(h.stub.calls.map((c) => c.method)).toEqual(['revokeToken', 'revokeToken']);
  });

  it('ping prints one line per pong; a peer that is down exits 3 with a hint', async () => {
    const { code, stdout } = await h.run(['ping', 'server2', '--count', '2']);
    expect(code).toBe(0);
    expect(stdout.trim().split('\n')).toHaveLength(2);
    expect(stdout).toContain('pong from server2 through the tunnel');
    h.stub.failWith = new MeshError(ErrorCodes.PEER_DOWN, 'no tunnel to that peer is up');
    const down = await h.run(['ping', 'server2']);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain('no tunnel to that peer is up');
    expect(down.stderr).toContain('hint:');
  });
});

describe('expose and unexpose', () => {
  it('sends name, port and target', async () => {
    const { code, stdout } = await h.run(['expose', 'db', '5432', '--target', '127.0.0.1:15432']);
    expect(code).toBe(0);
    expect(h.stub.calls).toEqual([{ method: 'expose', arg: { name: 'db', port: 5432, target: '127.0.0.1:15432' } }]);
    expect(stdout).toContain('exposed db on port 5432 -> 127.0.0.1:15432');
  });

  it('sends --allow-from rules (comma-separated and repeated) and prints them', async () => {
    const { code, stdout } = await h.run(['expose', 'db', '5432', '--allow-from', 'app1,tag:net-back', '--allow-from', 'ops']);
    expect(code).toBe(0);
    expect(h.stub.calls).toEqual([{ method: 'expose', arg: { name: 'db', port: 5432, allowFrom: ['app1', 'tag:net-back', 'ops'] } }]);
    expect(stdout).toContain('only from: app1, tag:net-back, ops');
  });

  it('exits 2 on a bad --allow-from rule, sending nothing', async () => {
    const { code, stderr } = await h.run(['expose', 'db', '5432', '--allow-from', 'app1,tag:Not Ok']);
    expect(code).toBe(2);
    expect(stderr).toContain("got 'tag:Not Ok'");
    expect(h.stub.calls).toEqual([]);
  });

  it.each([['db', '70000'], ['db', 'abc'], ['db', '0'], ['Bad_Name', '80']])('exits 2 on expose %s %s', async (name, port) => {
    const { code, stderr } = await h.run(['expose', name, port]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/error: .*(port|name)/);
    expect(h.stub.calls).toEqual([]);
  });

  it('exits 2 on a bad --target', async () => {
    expect((await h.run(['expose', 'db', '5432', '--target', 'nowhere'])).code).toBe(2);
    expect(h.stub.calls).toEqual([]);
  });

  it('unexposes', async () => {
    const { code, stdout } = await h.run(['unexpose', 'db']);
    expect(code).toBe(0);
    expect(stdout).toBe('unexposed db\n');
  });
});

describe('status and peers', () => {
  it('exits 0 with a peer up and prints node, peers and services', async () => {
    h.stub.peers = [samplePeer('server2', 'up'), samplePeer('server3', 'down')];
    const { code, stdout } = await h.run(['status']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^node: +server1 \(admin\)$/m);
    expect(stdout).toMatch(/^cert expires: +2030-01-01T00:00:00.000Z \(in 31d\)$/m);
    const peerLine = stdout.split('\n').find((l) => l.startsWith('server2'));
    expect(peerLine).toMatch(/server2 +up +direct ws:\/\/127\.0\.0\.2:18800\/osmoda-mesh\/v1 \(dialled\) +3s ago +1\.50 ms +1\.2 MiB +2\.0 KiB +2 +0 B +db$/);
    expect(stdout).toContain('server3: last error: dial timeout');
    expect(stdout).toMatch(/^db +127\.77\.0\.2 +5432 +server2\(up\)/m);
  });

  it('aligns the peer table columns', async () => {
    h.stub.peers = [samplePeer('a', 'up'), samplePeer('longer-name', 'connecting')];
    const { stdout } = await h.run(['peers']);
    const lines = stdout.split('\n').filter((l) => l.length > 0 && !l.startsWith(' '));
    const stateColumn = lines.map((l) => l.indexOf(l.includes('PEER') ? 'STATE' : l.includes(' up ') ? ' up ' : ' connecting') + (l.includes('PEER') ? 0 : 1));
    expect(new Set(stateColumn).size).toBe(1);
  });

  it('exits 3 when no peer is up', async () => {
    h.stub.peers = [samplePeer('server2', 'down')];
    const status = await h.run(['status']);
    expect(status.code).toBe(3);
    expect(status.stderr).toContain('no peer is up');
    const peers = await h.run(['peers']);
    expect(peers.code).toBe(3);
    h.stub.peers = [];
    expect((await h.run(['status'])).code).toBe(3);
  });

  it('peers exits 0 with a peer up', async () => {
    expect((await h.run(['peers'])).code).toBe(0);
  });
});

describe('--json on read commands', () => {
  it.each([['status'], ['peers'], ['services'], ['resolve', 'db']])('%s --json parses with schema 1', async (...args) => {
    const { code, stdout } = await h.run([...args, '--json']);
    expect(code).toBe(0);
    const parsed = JSON.parse(stdout) as { schema: number };
    expect(parsed.schema).toBe(1);
  });

  it('status --json still exits 3 when no peer is up', async () => {
    h.stub.peers = [];
    const { code, stdout } = await h.run(['status', '--json']);
    expect(code).toBe(3);
    expect((JSON.parse(stdout) as { peers: unknown[] }).peers).toEqual([]);
  });
});

describe('control socket selection and errors', () => {
  it('exits 3 with the socket named and a hint when the agent is unreachable', async () => {
    const missing = join(h.tmp.dir, 'nothing-here.sock');
    const { code, stdout, stderr } = await h.run(['status', '--control', missing]);
    expect(code).toBe(3);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^error: cannot reach the agent: no control socket at .*nothing-here\.sock/);
    expect(stderr).toMatch(/\nhint: .+\n$/);
  });

  it('--control beats OSMODA_MESH_CONTROL', async () => {
    const { code } = await h.run(['services', '--control', h.socketPath], { OSMODA_MESH_CONTROL: join(h.tmp.dir, 'wrong.sock') });
    expect(code).toBe(0);
    expect((await h.run(['services'], { OSMODA_MESH_CONTROL: join(h.tmp.dir, 'wrong.sock') })).code).toBe(3);
  });

  it('exits 1 with a hint on a server-side error', async () => {
    h.stub.failWith = new MeshError(ErrorCodes.NOT_ADMIN, 'this node is not an admin of mesh prod');
    const { code, stderr } = await h.run(['token', 'create']);
    expect(code).toBe(1);
    expect(stderr).toContain('error: this node is not an admin of mesh prod');
    expect(stderr).toContain('hint: run this on an admin node');
  });
});

describe('program', () => {
  it('--version prints the package version', async () => {
    const { code, stdout } = await h.run(['--version']);
    expect(code).toBe(0);
    expect(stdout).toBe('0.1.0\n');
  });

  it('--help exits 0 and lists the verbs; each verb has --help', async () => {
    const { code, stdout } = await h.run(['--help']);
    expect(code).toBe(0);
    for (const verb of ['agent', 'init', 'token', 'join', 'status', 'peers', 'services', 'expose', 'unexpose', 'resolve']) {
      expect(stdout).toContain(verb);
    }
    const sub = await h.run(['expose', '--help']);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain('--target');
  });

  it('exits 2 on an unknown verb, an unknown flag and a missing argument', async () => {
    expect((await h.run(['frobnicate'])).code).toBe(2);
    expect((await h.run(['status', '--bogus'])).code).toBe(2);
    expect((await h.run(['unexpose'])).code).toBe(2);
    expect((await h.run(['init'])).code).toBe(2);
    expect(h.stub.calls).toEqual([]);
  });

  it('init sends the mesh name', async () => {
    const { code, stdout } = await h.run(['init', '--mesh', 'prod']);
    expect(code).toBe(0);
    expect(h.stub.calls).toEqual([{ method: 'init', arg: { mesh: 'prod' } }]);
    expect(stdout).toContain('created mesh prod');
  });
});

describe('agent', () => {
  it('passes the flags to runAgent and exits with its code', async () => {
    h.agentExitCode = 0;
    const { code } = await h.run([
      'agent', '--config', '/etc/osmoda-mesh.json', '--state-dir', '/var/lib/osmoda-mesh', '--listen', '0.0.0.0:18800',
      '--public-endpoint', 'ws://203.0.113.7:18800/osmoda-mesh/v1', '--public-endpoint', 'wss://mesh.example/osmoda-mesh/v1',
      '--control', '/run/x.sock', '--dns', '127.77.0.53:53', '--vip-range', '127.77.0.0/16',
    ]);
    expect(code).toBe(0);
    expect(h.agentCalls).toEqual([
      {
        config: '/etc/osmoda-mesh.json',
        stateDir: '/var/lib/osmoda-mesh',
        listen: '0.0.0.0:18800',
        publicEndpoint: ['ws://203.0.113.7:18800/osmoda-mesh/v1', 'wss://mesh.example/osmoda-mesh/v1'],
        control: '/run/x.sock',
        dns: '127.77.0.53:53',
        vipRange: '127.77.0.0/16',
      },
    ]);
    h.agentExitCode = 1;
    expect((await h.run(['agent'])).code).toBe(1);
    // Without --control the agent uses the same env variable as the client verbs.
    expect(h.agentCalls[1]).toEqual({ control: h.socketPath });
  });

  it('exits 2 on a bad --listen or --public-endpoint without starting', async () => {
    expect((await h.run(['agent', '--listen', 'nowhere'])).code).toBe(2);
    expect((await h.run(['agent', '--public-endpoint', 'http://x'])).code).toBe(2);
    expect(h.agentCalls).toEqual([]);
  });
});
