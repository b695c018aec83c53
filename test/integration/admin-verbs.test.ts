import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/index.js';
import type { Agent } from '../../src/daemon/index.js';
import { ErrorCodes, MeshError } from '../../src/errors.js';
import { freePort, makeAgent, peerState, waitFor } from './helpers.js';

/** `ping` through a real tunnel, and `token list` / `token revoke` against a real issuer. */
describe('ping and token administration', () => {
  let root: string;
  let a: Agent;
  let b: Agent;
  let c: Agent;
  let adminClient: ControlClient;
  let metricsPort: number;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'osm-admin-'));
    // an address of its own, so no other test file can take the port before the agent binds it
    metricsPort = await freePort('127.0.0.86');
    writeFileSync(join(root, 'hosts'), '127.0.0.1\tlocalhost\n');
    a = await makeAgent(root, 'a', 86, { metricsListen: `127.0.0.86:${metricsPort}`, hostsFile: join(root, 'hosts') });
    b = await makeAgent(root, 'b', 87);
    c = await makeAgent(root, 'c', 88);
    a.node.initMesh('admin');
    await b.node.join(a.node.createToken(600_000, 1).token, undefined);
    await waitFor(() => peerState(a, 'b') === 'up' && peerState(b, 'a') === 'up', 20_000, 'a and b up');
    adminClient = new ControlClient({ socketPath: a.config.control });
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([a, b, c].filter((x) => x !== undefined).map((agent) => agent.close()));
    if (root) rmSync(root, { recursive: true, force: true });
  }, 30_000);

  it('serves Prometheus metrics and a health check on metricsListen', async () => {
    const text = await (await fetch(`http://127.0.0.86:${metricsPort}/metrics`)).text();
    expect(text).toContain('osmoda_mesh_peers{state="up"} 1');
    expect(text).toMatch(/osmoda_mesh_tunnel_up_total [1-9]/);
    expect(text).toContain('osmoda_mesh_join_accepted_total 1');
    // the process itself: an agent in this test process holds tens of MB, and has used some CPU
    const gauge = (name: string): number => Number(new RegExp(`^osmoda_mesh_${name} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(gauge('process_resident_memory_bytes')).toBeGreaterThan(10 * 2 ** 20);
    expect(gauge('process_heap_used_bytes')).toBeGreaterThan(2 ** 20);
    expect(gauge('process_heap_total_bytes')).toBeGreaterThanOrEqual(gauge('process_heap_used_bytes'));
    expect(gauge('process_external_memory_bytes')).toBeGreaterThan(0);
    expect(gauge('process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(text).toContain('# TYPE osmoda_mesh_process_cpu_seconds_total counter');
    const health = await fetch(`http://127.0.0.86:${metricsPort}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('ok: member of admin, 1 peer(s) up\n');
  });

  it('hosts-file mode writes the mesh names into a marked block, beside the lines it found', async () => {
    await new ControlClient({ socketPath: b.config.control }).expose({ name: 'hostsvc', port: 7001 });
    await waitFor(() => readFileSync(join(root, 'hosts'), 'utf8').includes('hostsvc'), 10_000, "a's hosts file to list hostsvc");
    const vip = a.status().services.find((s) => s.name === 'hostsvc')!.vip;
    const text = readFileSync(join(root, 'hosts'), 'utf8');
    expect(text.startsWith('127.0.0.1\tlocalhost\n# BEGIN osmoda-mesh')).toBe(true);
    expect(text).toContain(`${vip}\thostsvc hostsvc.mesh\n`);
  });

  it('ping measures round trips through the tunnel, one per request', async () => {
    const answer = await adminClient.ping({ node: 'b', count: 2 });
    expect(answer.rttMs).toHaveLength(2);
    for (const rtt of answer.rttMs) {
      expect(rtt).toBeGreaterThan(0);
      expect(rtt).toBeLessThan(1000);
    }
  });

  it('ping of an unknown node is NOT_FOUND; of a member without a tunnel PEER_DOWN', async () => {
    await expect(adminClient.ping({ node: 'nobody' })).rejects.toMatchObject({ code: ErrorCodes.NOT_FOUND });
    await b.close();
    await waitFor(() => peerState(a, 'b') === 'down', 10_000, 'b down on a');
    const err = await adminClient.ping({ node: 'b' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MeshError);
    expect((err as MeshError).code).toBe(ErrorCodes.PEER_DOWN);
  });

  it('token list shows what was issued; a revoked token is refused as unknown', async () => {
    const { token, tokenIdHex } = a.node.createToken(600_000, 3);
    const listed = (await adminClient.listTokens()).tokens.find((t) => t.tokenId === tokenIdHex);
    expect(listed).toMatchObject({ usesLeft: 3, isExpired: false });
    expect((await adminClient.revokeToken({ tokenId: tokenIdHex })).wasKnown).toBe(true);
    expect((await adminClient.listTokens()).tokens.some((t) => t.tokenId === tokenIdHex)).toBe(false);
    expect((await adminClient.revokeToken({ tokenId: tokenIdHex })).wasKnown).toBe(false);
    const err = await c.node.join(token, undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MeshError);
    expect((err as MeshError).code).toBe(ErrorCodes.TOKEN_UNKNOWN);
    expect((err as MeshError).message).toContain('not known to this issuer');
    expect(c.node.isJoined).toBe(false);
  });

  it('token commands on a node that is not an admin say so', async () => {
    const cClient = new ControlClient({ socketPath: c.config.control });
    await expect(cClient.listTokens()).rejects.toMatchObject({ code: ErrorCodes.NOT_JOINED });
  });
});
