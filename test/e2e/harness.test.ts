import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMeshError } from '../../src/errors.js';
import { e2eGate } from './helpers/gate.js';
import { createTopology, isPidRunning, sweepStale } from './helpers/netns.js';
import type { Topology } from './helpers/netns.js';
import { expectedSha256, fetchBlob, startBlobServer, startPostgres, startRedis } from './helpers/services.js';

const gate = e2eGate('harness');

function ourNamespaces(prefix: string): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}


// These need neither root nor namespaces: they pin the pure parts of the harness.
describe('e2e harness (pure parts)', () => {
  it('expectedSha256 is the sha256 of a deterministic, seed-dependent stream', () => {
    expect(expectedSha256(0, 1)).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(expectedSha256(100_000, 7)).toBe(expectedSha256(100_000, 7));
    expect(expectedSha256(100_000, 7)).not.toBe(expectedSha256(100_000, 8));
    expect(expectedSha256(100_000, 7)).not.toBe(expectedSha256(100_001, 7));
  });

  it('createTopology rejects bad host lists before touching the system', async () => {
    for (const hosts of [[], ['A'], ['a', 'a'], ['a/b'], ['averyveryverylongname']]) {
      const err = await createTopology({ hosts }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isMeshError(err, 'MESH_ERR_INVALID_ARGUMENT'), `hosts ${JSON.stringify(hosts)}`).toBe(true);
    }
  });
});

describe.skipIf(!gate.ok)('e2e harness (namespaces, real servers)', () => {
  let topo: Topology | undefined;
  const t = (): Topology => {
    if (topo === undefined) throw new Error('topology was not created');
    return topo;
  };

  beforeAll(async () => {
    topo = await createTopology({ hosts: ['a', 'b', 'c'] });
  });
  afterAll(async () => {
    await topo?.destroy();
  });

  it('names namespaces osmt-<pid>- and gives each host a 10.77.x.n address', () => {
    const { hosts, prefix } = t();
    expect(prefix.startsWith(`osmt-${process.pid}-`)).toBe(true);
    expect(ourNamespaces(prefix).sort()).toEqual([hosts.a?.ns, hosts.b?.ns, hosts.c?.ns, t().switchNs].sort());
    for (const h of Object.values(hosts)) expect(h.ip).toMatch(/^10\.77\.\d{1,3}\.\d{1,3}$/);
    expect(new Set(Object.values(hosts).map((h) => h.ip)).size).toBe(3);
  });

  it('every host reaches every other host by its 10.x address', async () => {
    const { hosts } = t();
    for (const from of ['a', 'b', 'c']) {
      for (const to of ['a', 'b', 'c']) {
        if (from === to) continue;
        const r = await t().exec(from, 'ping', ['-c1', '-W1', hosts[to]?.ip ?? ''], { timeoutMs: 5_000 });
        expect(r.code, `${from} → ${to}: ${r.stdout}${r.stderr}`).toBe(0);
      }
    }
  });

  it('linkDown cuts a host off and linkUp brings it back', async () => {
    const ipB = t().hosts.b?.ip ?? '';
    await t().linkDown('b');
    const down = await t().exec('a', 'ping', ['-c1', '-W1', ipB], { timeoutMs: 5_000 });
    expect(down.code).not.toBe(0);
    await t().linkUp('b');
    // The veth carrier comes back asynchronously; allow a few tries.
    let code: number | null = null;
    for (let i = 0; i < 10 && code !== 0; i++) code = (await t().exec('a', 'ping', ['-c1', '-W1', ipB], { timeoutMs: 5_000 })).code;
    expect(code).toBe(0);
  });

  it('exec reports exit codes, output, stdin and timeouts', async () => {
    const ok = await t().exec('a', 'sh', ['-c', 'cat; echo err >&2; exit 3'], { input: 'hello' });
    expect(ok).toMatchObject({ code: 3, stdout: 'hello', stderr: 'err\n', timedOut: false });
    const started = Date.now();
    const slow = await t().exec('a', 'sleep', ['30'], { timeoutMs: 300 });
    expect(slow.timedOut).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('redis in b answers PING inside b and is not on a loopback of a', async () => {
    const redis = await startRedis(t(), 'b', { port: 6390 });
    try {
      const inB = await t().exec('b', 'redis-cli', ['-p', '6390', 'ping']);
      expect(inB.stdout.trim()).toBe('PONG');
      const inA = await t().exec('a', 'redis-cli', ['-p', '6390', 'ping']);
      expect(inA.stdout.trim()).not.toBe('PONG');
    } finally {
      await redis.stop();
    }
    expect(existsSync(redis.dir)).toBe(false);
    expect((await t().exec('b', 'redis-cli', ['-p', '6390', 'ping'])).stdout.trim()).not.toBe('PONG');
  });

  it('postgres in c answers select 1 inside c, and stop() removes it', { timeout: 90_000 }, async () => {
    const pg = await startPostgres(t(), 'c', { port: 5440 });
    try {
      const r = await t().exec('c', 'psql', ['-h', '127.0.0.1', '-p', '5440', '-U', 'postgres', '-Atc', 'select 1']);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('1');
    } finally {
      await pg.stop();
    }
    expect(existsSync(pg.dir)).toBe(false);
    const after = await t().exec('c', 'pg_isready', ['-h', '127.0.0.1', '-p', '5440']);
    expect(after.code).not.toBe(0);
  });

  it('10 MiB blob from b fetched in a by 10.x address has the expected sha256', { timeout: 60_000 }, async () => {
    const sizeBytes = 10 * 1024 * 1024;
    const blob = await startBlobServer(t(), 'b', { port: 7001, sizeBytes, seed: 42 });
    try {
      const got = await fetchBlob(t(), 'a', t().hosts.b?.ip ?? '', 7001);
      expect(got.bytes).toBe(sizeBytes);
      expect(got.sha256).toBe(expectedSha256(sizeBytes, 42));
      expect(got.ms).toBeGreaterThan(0);
      // Not reachable by loopback from a: the server lives in b only.
      await expect(fetchBlob(t(), 'a', '127.0.0.1', 7001, { timeoutMs: 2_000 })).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await blob.stop();
    }
  });

  it('setResolver writes /etc/netns/<ns>/resolv.conf, which programs in the ns see', async () => {
    t().setResolver('a', { nameserver: '10.77.0.53', search: ['mesh.internal', 'svc'] });
    const ns = t().hosts.a?.ns ?? '';
    expect(readFileSync(`/etc/netns/${ns}/resolv.conf`, 'utf8')).toBe('nameserver 10.77.0.53\nsearch mesh.internal svc\n');
    const seen = await t().exec('a', 'cat', ['/etc/resolv.conf']);
    expect(seen.stdout).toBe('nameserver 10.77.0.53\nsearch mesh.internal svc\n');
    const other = await t().exec('b', 'cat', ['/etc/resolv.conf']);
    expect(other.stdout).not.toContain('10.77.0.53');
  });

  it('destroy() kills spawned processes, removes namespaces and /etc/netns dirs, and is idempotent', async () => {
    const extra = await createTopology({ hosts: ['x', 'y'] });
    const child = extra.spawn('x', 'sleep', ['300']);
    // A daemon that escaped our process group must die with its namespace too.
    await extra.execOk('y', 'sh', ['-c', 'setsid sleep 301 >/dev/null 2>&1 < /dev/null &']);
    extra.setResolver('x', { nameserver: '10.77.0.1' });
    const pid = child.pid ?? -1;
    expect(isPidRunning(pid)).toBe(true);
    expect(ourNamespaces(extra.prefix)).toHaveLength(3);
    const nsY = extra.hosts.y?.ns ?? '';
    const escaped = execFileSync('ip', ['netns', 'pids', nsY], { encoding: 'utf8' }).trim().split('\n').map(Number);
    expect(escaped.length).toBeGreaterThan(0);

    await Promise.all([extra.destroy(), extra.destroy()]);
    await extra.destroy();
    expect(ourNamespaces(extra.prefix)).toEqual([]);
    expect(existsSync(`/etc/netns/${extra.hosts.x?.ns}`)).toBe(false);
    expect(isPidRunning(pid)).toBe(false);
    for (const p of escaped) expect(isPidRunning(p), `escaped pid ${p}`).toBe(false);
    expect(() => extra.spawn('x', 'true')).toThrow(/after destroy/);
  });

  it('sweepStale removes namespaces left by a dead process and keeps live ones', async () => {
    const dead = spawn('true');
    await new Promise((r) => dead.once('exit', r));
    const deadPid = dead.pid ?? 0;
    expect(isPidRunning(deadPid)).toBe(false);
    const staleNs = `osmt-${deadPid}-dead-sw`;
    execFileSync('ip', ['netns', 'add', staleNs]);
    const removed = sweepStale();
    expect(removed).toContain(staleNs);
    expect(ourNamespaces(`osmt-${deadPid}-`)).toEqual([]);
    expect(ourNamespaces(t().prefix)).toHaveLength(4);
  });

  it('after destroy() no namespace of this process is left', async () => {
    await t().destroy();
    expect(ourNamespaces(`osmt-${process.pid}-`)).toEqual([]);
  });
});
