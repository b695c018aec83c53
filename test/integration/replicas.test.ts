import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, get as httpGet, type Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/index.js';
import type { Agent } from '../../src/daemon/index.js';
import { freePort, makeAgent, peerState, waitFor } from './helpers.js';

/**
 * Three in-process agents on loopback (no root): a creates the mesh, b and c join; b and c both
 * provide `web` on the same port. From a, connections to web's VIP spread over b and c, and fail
 * over to b when c's target is down and when c's agent is gone.
 *
 * The cases run in order and build on each other (one mesh, changed step by step).
 */

const SERVICE = 'web';

function listenHttp(name: string, host: string, port: number): Promise<HttpServer> {
  return new Promise((resolve, reject) => {
    const server = createHttpServer((_req, res) => {
      res.setHeader('connection', 'close');
      res.end(name);
    });
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/** Two HTTP servers, one per address, on one port that is free on both. */
async function listenPair(): Promise<{ port: number; b: HttpServer; c: HttpServer }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await freePort('127.0.0.2');
    const b = await listenHttp('b', '127.0.0.2', port).catch((err: unknown) => {
      lastError = err;
      return undefined;
    });
    if (b === undefined) continue;
    const c = await listenHttp('c', '127.0.0.3', port).catch((err: unknown) => {
      lastError = err;
      return undefined;
    });
    if (c !== undefined) return { port, b, c };
    b.close();
  }
  throw new Error(`no port free on both 127.0.0.2 and 127.0.0.3: ${String(lastError)}`);
}

function stopHttp(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** One HTTP request on a fresh connection (no keep-alive, so each one is a new mesh stream). */
function fetchText(host: string, port: number, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpGet({ host, port, path: '/', agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${host}:${port} within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

describe('replicas: spread and failover between two providers of one service', () => {
  let root: string;
  let a: Agent;
  let b: Agent;
  let c: Agent;
  let http: { port: number; b: HttpServer; c: HttpServer };
  let vip: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'osm-replicas-'));
    a = await makeAgent(root, 'a', 81);
    b = await makeAgent(root, 'b', 82);
    c = await makeAgent(root, 'c', 83);
    a.node.initMesh('replicas');
    await b.node.join(a.node.createToken(600_000, 1).token, undefined);
    await c.node.join(a.node.createToken(600_000, 1).token, undefined);
    await waitFor(
      () => [a, b, c].every((agent) => agent.status().peers.length === 2 && agent.status().peers.every((p) => p.state === 'up')),
      20_000,
      'every agent to have both peers up',
    );

    http = await listenPair();
    for (const [agent, host] of [
      [b, '127.0.0.2'],
      [c, '127.0.0.3'],
    ] as const) {
      const client = new ControlClient({ socketPath: agent.config.control, timeoutMs: 5_000 });
      const answer = await client.expose({ name: SERVICE, port: http.port, target: `${host}:${http.port}` });
      expect(answer.service.local?.target).toBe(`${host}:${http.port}`);
    }
    await waitFor(
      () => {
        const view = a.status().services.find((s) => s.name === SERVICE);
        return view !== undefined && view.providers.length === 2 && view.providers.every((p) => p.state === 'up');
      },
      10_000,
      `a to see ${SERVICE} provided by b and c`,
    );
    vip = a.status().services.find((s) => s.name === SERVICE)!.vip;
    // the VIP listener binds in the background after the catalog changes
    let isReachable = false;
    await waitFor(
      () => {
        if (!isReachable) void fetchText(vip, http.port, 1_000).then(() => (isReachable = true), () => undefined);
        return isReachable;
      },
      10_000,
      `${vip}:${http.port} to answer`,
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([a, b, c].filter((x) => x !== undefined).map((agent) => agent.close()));
    if (http) await Promise.allSettled([stopHttp(http.b), stopHttp(http.c)]);
    if (root) rmSync(root, { recursive: true, force: true });
  }, 30_000);

  it('gives web one VIP inside a\'s own range, with b and c as its providers', () => {
    expect(vip).toMatch(/^127\.81\.\d+\.\d+$/);
    const view = a.status().services.find((s) => s.name === SERVICE)!;
    expect(view.ports).toEqual([http.port]);
    expect(view.providers.map((p) => p.node).sort()).toEqual(['b', 'c']);
    expect(view.local).toBeNull();
    expect(view.problems).toEqual([]);
  });

  it('spreads 20 connections over both providers', async () => {
    const answers: string[] = [];
    for (let i = 0; i < 20; i++) answers.push(await fetchText(vip, http.port));
    const fromB = answers.filter((x) => x === 'b').length;
    const fromC = answers.filter((x) => x === 'c').length;
    expect(fromB + fromC).toBe(20);
    expect(fromB).toBeGreaterThanOrEqual(5);
    expect(fromC).toBeGreaterThanOrEqual(5);
  }, 60_000);

  it('fails over to b when c\'s target stops answering (c refuses the stream)', async () => {
    await stopHttp(http.c);
    const refusedBefore = c.node.metrics.get('stream_refused_total', 'MESH_ERR_DIAL_FAILED');
    const answers: string[] = [];
    for (let i = 0; i < 10; i++) answers.push(await fetchText(vip, http.port));
    expect(answers).toEqual(Array(10).fill('b'));
    // c was still offered streams (it is a healthy peer, only its target is down) and refused them
    expect(peerState(a, 'c')).toBe('up');
    expect(c.node.metrics.get('stream_refused_total', 'MESH_ERR_DIAL_FAILED') - refusedBefore).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('keeps answering through b once c\'s agent is gone, and status on a shows c down', async () => {
    await c.close();
    const answers: string[] = [];
    for (let i = 0; i < 10; i++) answers.push(await fetchText(vip, http.port));
    expect(answers).toEqual(Array(10).fill('b'));
    // a redials c with backoff; between dials (each refused at once) c reads as down
    await waitFor(() => peerState(a, 'c') === 'down', 5_000, 'a to show c down');
    const status = a.status();
    expect(status.peers.find((p) => p.name === 'b')?.state).toBe('up');
    const view = status.services.find((s) => s.name === SERVICE)!;
    expect(view.providers.find((p) => p.node === 'c')?.state).toBe('down');
    expect(view.providers.find((p) => p.node === 'b')?.state).toBe('up');
  }, 60_000);
});
