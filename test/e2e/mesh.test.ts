/**
 * The end-to-end proof of the product: three agents as separate processes in three network
 * namespaces (a, b, c) joined by a bridge. b exposes a real redis-server as `cache` and a blob
 * server as `blob`, c a real PostgreSQL as `db`; a's resolver points at its agent's DNS with
 * `search mesh`, so stock clients in a reach them by bare name through the encrypted tunnels.
 * Then b's agent is SIGKILLed and restarted: a must see it down within 30 s and the tunnel must
 * come back with no manual step.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PeersResponse, ResolveResponse, StatusResponse } from '../../src/control/protocol.js';
import { AGENT_ARGV, MAIN_JS, agentEnv, REPO_ROOT, describeExec, pollUntil, tail } from './helpers/agents.js';
import { e2eGate } from './helpers/gate.js';
import { createTopology, isPidRunning, NAME_PREFIX, TMP_ROOT } from './helpers/netns.js';
import type { ExecResult, Topology } from './helpers/netns.js';
import { expectedSha256, fetchBlob, startBlobServer, startPostgres, startRedis } from './helpers/services.js';
import type { BlobServerHandle, DirServiceHandle } from './helpers/services.js';

const gate = e2eGate('mesh');

const HOSTS = ['a', 'b', 'c'] as const;
type Host = (typeof HOSTS)[number];
const TUNNEL_PORT = 18800;
const DNS_ADDR = '127.77.0.53';
const REDIS_PORT = 6379;
const PG_PORT = 5432;
const BLOB_PORT = 9000;
const BLOB_BYTES = 100 * 1024 * 1024;
const BLOB_SEED = 'mesh-e2e';
const DOWN_BOUND_MS = 30_000;
const RECONNECT_BOUND_MS = 40_000;
function mbPerSecond(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

describe.skipIf(!gate.ok)('mesh end to end: three agents in three namespaces', () => {
  let topo: Topology | undefined;
  let workDir: string | undefined;
  const agents = new Map<Host, ChildProcess>();
  const services: (DirServiceHandle | BlobServerHandle)[] = [];
  let hasFailed = false;

  const t = (): Topology => {
    if (topo === undefined) throw new Error('topology was not created');
    return topo;
  };
  const dir = (): string => {
    if (workDir === undefined) throw new Error('work dir was not created');
    return workDir;
  };
  const ipOf = (host: Host): string => {
    const ip = t().hosts[host]?.ip;
    if (ip === undefined) throw new Error(`no address for host ${host}`);
    return ip;
  };
  const sockOf = (host: Host): string => join(dir(), `${host}.sock`);
  const logOf = (host: Host): string => join(dir(), `${host}.log`);

  const printLogs = (why: string): void => {
    if (workDir === undefined) return;
    for (const host of HOSTS) {
      console.error(`----- ${why}: tail of agent ${host} log (${logOf(host)}) -----\n${tail(logOf(host))}`);
    }
  };

  /** Starts (or restarts, with the same state dir and flags) the agent of `host`, appending to its log. */
  const startAgent = (host: Host): ChildProcess => {
    const ip = ipOf(host);
    const logFd = openSync(logOf(host), 'a');
    try {
      const child = t().spawn(
        host,
        process.execPath,
        [
          ...AGENT_ARGV,
          '--state-dir', join(dir(), `${host}-state`),
          '--listen', `${ip}:${TUNNEL_PORT}`,
          '--public-endpoint', `ws://${ip}:${TUNNEL_PORT}`,
          '--control', sockOf(host),
          '--dns', `${DNS_ADDR}:53`,
        ],
        // Every namespace shares the machine's host name, so each node is named after its host.
        { env: agentEnv({ OSMODA_MESH_NODE_NAME: host, OSMODA_MESH_DNS_UPSTREAMS: 'none' }), stdio: ['ignore', logFd, logFd] },
      );
      agents.set(host, child);
      return child;
    } finally {
      closeSync(logFd);
    }
  };

  const cli = (host: Host, args: readonly string[], timeoutMs = 15_000): Promise<ExecResult> =>
    t().exec(host, process.execPath, [MAIN_JS, ...args, '--control', sockOf(host)], { timeoutMs });

  const cliOk = async (host: Host, args: readonly string[]): Promise<string> => {
    const r = await cli(host, args);
    if (r.code !== 0) throw new Error(`osmoda-mesh ${args.join(' ')} on ${host}: ${describeExec(r)}`);
    return r.stdout;
  };

  /** `status --json`, or undefined while the agent does not answer. Exit 3 with JSON means "no peer up", which is still an answer. */
  const status = async (host: Host): Promise<StatusResponse | undefined> => {
    const r = await cli(host, ['status', '--json'], 10_000);
    if ((r.code !== 0 && r.code !== 3) || r.stdout.trim() === '') return undefined;
    try {
      return JSON.parse(r.stdout) as StatusResponse;
    } catch {
      return undefined;
    }
  };

  const peerState = (s: StatusResponse | undefined, peer: Host): string =>
    s?.peers.find((p) => p.name === peer)?.state ?? 'absent';

  const waitAgentAnswers = async (host: Host): Promise<void> => {
    const child = agents.get(host);
    await pollUntil(`agent ${host} answers on its control socket`, { timeoutMs: 20_000 }, async () => {
      if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) {
        throw new Error(`agent ${host} exited (${child.exitCode ?? child.signalCode}) before answering`);
      }
      return (await status(host)) === undefined ? undefined : true;
    });
  };

  const waitAllPeersUp = async (timeoutMs: number): Promise<void> => {
    let last = '';
    await pollUntil(
      'every agent sees both peers up',
      { timeoutMs },
      async () => {
        const views = await Promise.all(HOSTS.map(async (h) => [h, await status(h)] as const));
        last = views.map(([h, s]) => `${h}: ${HOSTS.filter((p) => p !== h).map((p) => `${p}=${peerState(s, p)}`).join(' ')}`).join('; ');
        return views.every(([h, s]) => HOSTS.every((p) => p === h || peerState(s, p) === 'up')) ? true : undefined;
      },
      () => last,
    );
  };

  /** Waits until a's agent knows `name` with a VIP and an up provider, and returns that VIP. */
  const waitServiceOnA = async (name: string, provider: Host): Promise<string> => {
    let last = '';
    return pollUntil(
      `a learns service ${name} from ${provider}`,
      { timeoutMs: 30_000 },
      async () => {
        const r = await cli('a', ['resolve', name, '--json'], 10_000);
        last = describeExec(r);
        if (r.code !== 0) return undefined;
        const answer = JSON.parse(r.stdout) as ResolveResponse;
        const isUp = answer.service.providers.some((p) => p.node === provider && p.state === 'up');
        const vip = answer.addresses[0];
        return isUp && vip !== undefined ? vip : undefined;
      },
      () => last,
    );
  };

  const redisCli = (args: readonly string[]): Promise<ExecResult> =>
    t().exec('a', 'redis-cli', ['-h', 'cache', '-p', String(REDIS_PORT), ...args], { timeoutMs: 10_000 });

  beforeAll(async () => {
    try {
      if (!existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run \`npm run build\` first (\`npm test\` does)`);
      workDir = mkdtempSync(join(TMP_ROOT, `${NAME_PREFIX}${process.pid}-mesh-`));
      topo = await createTopology({ hosts: [...HOSTS] });

      for (const host of HOSTS) startAgent(host);
      await Promise.all(HOSTS.map((h) => waitAgentAnswers(h)));

      await cliOk('a', ['init', '--mesh', 'e2e']);
      const token = (await cliOk('a', ['token', 'create', '--uses', '2'])).trim();
      expect(token).toMatch(/^osmt1_/);
      const tokenFile = join(dir(), 'join.token');
      writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
      for (const host of ['b', 'c'] as const) await cliOk(host, ['join', '--token-file', tokenFile, '--name', host]);
      await waitAllPeersUp(60_000);

      services.push(await startRedis(t(), 'b', { port: REDIS_PORT }));
      services.push(await startPostgres(t(), 'c', { port: PG_PORT, readyTimeoutMs: 40_000 }));
      services.push(await startBlobServer(t(), 'b', { port: BLOB_PORT, sizeBytes: BLOB_BYTES, seed: BLOB_SEED }));
      await cliOk('b', ['expose', 'cache', String(REDIS_PORT)]);
      await cliOk('c', ['expose', 'db', String(PG_PORT)]);
      await cliOk('b', ['expose', 'blob', String(BLOB_PORT)]);
      await waitServiceOnA('cache', 'b');
      await waitServiceOnA('db', 'c');
      await waitServiceOnA('blob', 'b');

      t().setResolver('a', { nameserver: DNS_ADDR, search: ['mesh'] });
    } catch (err) {
      hasFailed = true;
      printLogs('beforeAll failed');
      throw err;
    }
  }, 240_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') {
      hasFailed = true;
      printLogs(`'${ctx.task.name}' failed`);
    }
  });

  afterAll(async () => {
    try {
      for (const s of services.splice(0)) await s.stop().catch(() => undefined);
      for (const child of agents.values()) await topo?.kill(child, 2_000);
    } finally {
      await topo?.destroy();
      if (workDir !== undefined) {
        if (hasFailed) console.error(`mesh e2e: agent logs and state kept in ${workDir}`);
        else rmSync(workDir, { recursive: true, force: true });
      }
    }
  }, 60_000);

  it('redis-cli in a SETs and GETs through `cache` by bare name', { timeout: 120_000 }, async () => {
    const set = await redisCli(['SET', 'k', 'v']);
    expect(set.code, describeExec(set)).toBe(0);
    expect(set.stdout.trim()).toBe('OK');
    const get = await redisCli(['GET', 'k']);
    expect(get.code, describeExec(get)).toBe(0);
    expect(get.stdout.trim()).toBe('v');
    // The value really lives in b's redis, not somewhere on a.
    const inB = await t().exec('b', 'redis-cli', ['-p', String(REDIS_PORT), 'GET', 'k']);
    expect(inB.stdout.trim()).toBe('v');
  });

  it('psql in a runs `select 1` against `db` by bare name', { timeout: 120_000 }, async () => {
    const r = await t().exec('a', 'psql', ['-h', 'db', '-p', String(PG_PORT), '-U', 'postgres', '-tA', '-c', 'select 1'], {
      timeoutMs: 20_000,
      env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
    });
    expect(r.code, describeExec(r)).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['1']);
  });

  it("a's resolver answers `cache` with a VIP and AAAA with NOERROR and no answer", { timeout: 120_000 }, async () => {
    const dig = await t().exec('a', 'dig', ['+short', '+time=2', '+tries=2', 'cache'], { timeoutMs: 15_000 });
    expect(dig.code, describeExec(dig)).toBe(0);
    expect(dig.stdout.trim()).toMatch(/^127\.77\.\d{1,3}\.\d{1,3}$/);

    const getent = await t().exec('a', 'getent', ['hosts', 'cache'], { timeoutMs: 15_000 });
    expect(getent.code, describeExec(getent)).toBe(0);
    const getentAddr = getent.stdout.trim().split(/\s+/)[0];
    expect(getentAddr).toBe(dig.stdout.trim());

    const resolved = JSON.parse(await cliOk('a', ['resolve', 'cache', '--json'])) as ResolveResponse;
    expect(resolved.addresses).toEqual([dig.stdout.trim()]);

    const aaaa = await t().exec('a', 'dig', ['+time=2', '+tries=2', '+noall', '+comments', 'AAAA', 'cache.mesh'], { timeoutMs: 15_000 });
    expect(aaaa.code, describeExec(aaaa)).toBe(0);
    expect(aaaa.stdout).toMatch(/status: NOERROR/);
    expect(aaaa.stdout).toMatch(/ANSWER: 0,/);
  });

  it('100 MiB from `blob` arrives through the mesh with the same sha256', { timeout: 240_000 }, async () => {
    const expected = expectedSha256(BLOB_BYTES, BLOB_SEED);
    const dig = await t().exec('a', 'dig', ['+short', '+time=2', '+tries=2', 'blob'], { timeoutMs: 15_000 });
    const vip = dig.stdout.trim();
    expect(vip, describeExec(dig)).toMatch(/^127\.77\.\d{1,3}\.\d{1,3}$/);

    const viaMesh = await fetchBlob(t(), 'a', vip, BLOB_PORT, { timeoutMs: 120_000 });
    expect(viaMesh.bytes).toBe(BLOB_BYTES);
    expect(viaMesh.sha256).toBe(expected);

    const direct = await fetchBlob(t(), 'a', ipOf('b'), BLOB_PORT, { timeoutMs: 120_000 });
    expect(direct.bytes).toBe(BLOB_BYTES);
    expect(direct.sha256).toBe(expected);

    const meshMBps = mbPerSecond(BLOB_BYTES, viaMesh.ms);
    const directMBps = mbPerSecond(BLOB_BYTES, direct.ms);
    console.log(
      `100 MiB through the mesh: ${viaMesh.ms.toFixed(0)} ms (${meshMBps.toFixed(1)} MB/s); direct: ${direct.ms.toFixed(0)} ms (${directMBps.toFixed(1)} MB/s)`,
    );
    const resultsDir = join(REPO_ROOT, 'test-results');
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(
      join(resultsDir, 'e2e-transfer.json'),
      `${JSON.stringify(
        {
          bytes: BLOB_BYTES,
          sha256: expected,
          mesh: { vip, ms: Math.round(viaMesh.ms), mbPerSecond: Number(meshMBps.toFixed(1)) },
          direct: { address: ipOf('b'), ms: Math.round(direct.ms), mbPerSecond: Number(directMBps.toFixed(1)) },
          measuredAt: new Date().toISOString(),
        },
        null,
        2,
      )}\n`,
    );
  });

  it("killing b's agent shows it down on a within 30 s; restarting it brings the tunnel back", { timeout: 180_000 }, async () => {
    const old = agents.get('b');
    const pid = old?.pid;
    if (old === undefined || pid === undefined) throw new Error('agent b is not running');
    expect(peerState(await status('a'), 'b')).toBe('up');

    const killedAt = Date.now();
    process.kill(-pid, 'SIGKILL');
    let lastA = '';
    await pollUntil(
      'a sees b down',
      { timeoutMs: DOWN_BOUND_MS + 5_000, intervalMs: 100 },
      async () => {
        const s = await status('a');
        lastA = peerState(s, 'b');
        return lastA === 'down' ? true : undefined;
      },
      () => `b=${lastA}`,
    );
    const downMs = Date.now() - killedAt;
    console.log(`a saw b down ${(downMs / 1000).toFixed(1)} s after kill -9 of b's agent`);
    expect(downMs).toBeLessThanOrEqual(DOWN_BOUND_MS);
    await pollUntil('old agent b has exited', { timeoutMs: 5_000, intervalMs: 50 }, async () =>
      isPidRunning(pid) ? undefined : true,
    );

    const restartedAt = Date.now();
    startAgent('b');
    await pollUntil(
      'a sees b up again',
      { timeoutMs: RECONNECT_BOUND_MS },
      async () => {
        const s = await status('a');
        lastA = peerState(s, 'b');
        return lastA === 'up' ? true : undefined;
      },
      () => `b=${lastA}`,
    );
    console.log(`a saw b up ${((Date.now() - restartedAt) / 1000).toFixed(1)} s after b's agent was restarted`);

    const get = await redisCli(['GET', 'k']);
    expect(get.code, describeExec(get)).toBe(0);
    expect(get.stdout.trim()).toBe('v');
  });

  it('b still lists a and c as peers after the restart (membership persisted)', { timeout: 120_000 }, async () => {
    const r = await cli('b', ['peers', '--json']);
    expect(r.code, describeExec(r)).toBe(0);
    const peers = (JSON.parse(r.stdout) as PeersResponse).peers.map((p) => p.name).sort();
    expect(peers).toEqual(['a', 'c']);
  });
});
