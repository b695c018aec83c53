import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/index.js';
import type { Agent } from '../../src/daemon/index.js';
import { makeAgent, peerState, waitFor } from './helpers.js';

/**
 * Per-service access rules (issue 4 §3): the providing agent checks every incoming stream against
 * the service's allowFrom, matching node names and the tags in the opener's certificate. Three
 * in-process agents on loopback: a provides the services, b carries tag `back`, c tag `front`.
 */

interface Outcome {
  echoed: string;
  error: string | null;
}

/** Connects, sends one line, and reports what came back before the connection ended. */
function tryEcho(host: string, port: number, timeoutMs = 10_000): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let echoed = '';
    let error: string | null = null;
    const timer = setTimeout(() => socket.destroy(new Error('timeout')), timeoutMs);
    socket.on('connect', () => socket.write('ping\n'));
    socket.on('data', (chunk: Buffer) => {
      echoed += chunk.toString();
      if (echoed.includes('\n')) socket.end();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ echoed, error });
    });
  });
}

/** Like tryEcho, but waits (bounded) for the VIP listener, which binds just after the name appears. */
async function echoWhenListening(host: string, port: number): Promise<Outcome> {
  const deadline = Date.now() + 10_000;
  for (let attempt = 0; attempt < 100; attempt++) {
    const outcome = await tryEcho(host, port);
    if (outcome.error !== 'ECONNREFUSED' || Date.now() > deadline) return outcome;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${host}:${port} never listened`);
}

describe('allowFrom, enforced by the providing agent', () => {
  let root: string;
  let echo: Server;
  let echoPort: number;
  let a: Agent;
  let b: Agent;
  let c: Agent;

  const vipOf = (agent: Agent, service: string): string => {
    const view = agent.status().services.find((s) => s.name === service);
    if (view === undefined) throw new Error(`${agent.config.nodeName} does not know ${service}`);
    return view.vip;
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'osm-access-'));
    echo = createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as { port: number }).port;
    a = await makeAgent(root, 'a', 91, {
      services: {
        db: { port: echoPort, allowFrom: ['tag:back'] },
        pub: { port: echoPort },
        sealed: { port: echoPort, allowFrom: [] },
      },
    });
    b = await makeAgent(root, 'b', 92, { tags: ['back'] });
    c = await makeAgent(root, 'c', 93, { tags: ['front'] });
    a.node.initMesh('access');
    await b.node.join(a.node.createToken(600_000, 1).token, undefined);
    await c.node.join(a.node.createToken(600_000, 1).token, undefined);
    await waitFor(
      () => peerState(b, 'a') === 'up' && peerState(c, 'a') === 'up' && ['db', 'pub', 'sealed'].every((s) => c.status().services.some((v) => v.name === s)),
      20_000,
      'b and c up with a, and seeing its services',
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([a, b, c].filter((x) => x !== undefined).map((agent) => agent.close()));
    echo?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 30_000);

  it('lets a node whose certificate carries the tag through', async () => {
    expect(await echoWhenListening(vipOf(b, 'db'), echoPort)).toEqual({ echoed: 'ping\n', error: null });
  });

  it('refuses a node without the tag: the client sees a reset, the provider counts it', async () => {
    const before = a.node.metrics.get('access_denied_total', 'db');
    const outcome = await echoWhenListening(vipOf(c, 'db'), echoPort);
    expect(outcome.echoed).toBe('');
    expect(outcome.error).toBe('ECONNRESET');
    expect(a.node.metrics.get('access_denied_total', 'db')).toBe(before + 1);
    expect(a.node.metrics.get('stream_refused_total', 'MESH_ERR_ACCESS_DENIED')).toBeGreaterThanOrEqual(1);
  });

  it('a service without allowFrom is open to every member; an empty list to none', async () => {
    expect((await echoWhenListening(vipOf(c, 'pub'), echoPort)).echoed).toBe('ping\n');
    expect((await echoWhenListening(vipOf(b, 'sealed'), echoPort)).error).toBe('ECONNRESET');
  });

  it('rules set at run time with expose --allow-from match node names, and show in the views', async () => {
    const client = new ControlClient({ socketPath: a.config.control });
    const { service } = await client.expose({ name: 'runtime', port: echoPort, allowFrom: ['c'] });
    expect(service.local?.allowFrom).toEqual(['c']);
    await waitFor(() => b.status().services.some((s) => s.name === 'runtime') && c.status().services.some((s) => s.name === 'runtime'), 10_000, 'runtime service to spread');
    expect((await echoWhenListening(vipOf(c, 'runtime'), echoPort)).echoed).toBe('ping\n');
    expect((await echoWhenListening(vipOf(b, 'runtime'), echoPort)).error).toBe('ECONNRESET');
    expect(a.status().services.find((s) => s.name === 'db')?.local?.allowFrom).toEqual(['tag:back']);
    expect(a.status().services.find((s) => s.name === 'pub')?.local?.allowFrom).toBeNull();
  });
});
