import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/index.js';
import type { Agent } from '../../src/daemon/index.js';
import { makeAgent, peerState, sleep, waitFor } from './helpers.js';

/**
 * A provider that vanishes mid-stream: the application on the other side must see its connection
 * reset, never a clean end of a stream that was cut short (a truncated dump taken for a whole one).
 * The consumer's agent keeps serving and shows the peer down.
 */

describe('a provider vanishing mid-stream', () => {
  let root: string;
  let a: Agent;
  let b: Agent;
  let source: Server;
  let port: number;
  let vip: string;
  const sourceSockets = new Set<Socket>();

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'osm-vanish-'));
    a = await makeAgent(root, 'a', 84);
    b = await makeAgent(root, 'b', 85);
    a.node.initMesh('vanish');
    await b.node.join(a.node.createToken(600_000, 1).token, undefined);
    await waitFor(() => peerState(a, 'b') === 'up' && peerState(b, 'a') === 'up', 20_000, 'a and b up');
    // an endless source: 16 KiB every 5 ms until the connection goes away
    source = createServer((socket) => {
      sourceSockets.add(socket);
      socket.on('error', () => undefined);
      const chunk = Buffer.alloc(16 * 1024, 0x5a);
      const timer = setInterval(() => socket.write(chunk), 5);
      socket.on('close', () => {
        clearInterval(timer);
        sourceSockets.delete(socket);
      });
    });
    await new Promise<void>((resolve) => source.listen(0, '127.0.0.1', () => resolve()));
    port = (source.address() as { port: number }).port;
    await new ControlClient({ socketPath: b.config.control }).expose({ name: 'feed', port });
    await waitFor(() => a.status().services.some((s) => s.name === 'feed' && s.providers.some((p) => p.state === 'up')), 10_000, 'a to see feed');
    vip = a.status().services.find((s) => s.name === 'feed')!.vip;
    // the VIP listener binds in the background after the catalog changes: probe until data flows
    let isFlowing = false;
    await waitFor(
      () => {
        if (!isFlowing) {
          const probe = connect(port, vip);
          probe.on('error', () => undefined);
          probe.once('data', () => {
            isFlowing = true;
            probe.destroy();
          });
          setTimeout(() => probe.destroy(), 500).unref();
        }
        return isFlowing;
      },
      10_000,
      `${vip}:${port} to carry data`,
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([a, b].filter((x) => x !== undefined).map((agent) => agent.close()));
    for (const s of sourceSockets) s.destroy();
    source?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 30_000);

  it('resets the client connection when the provider goes away, and a keeps serving', async () => {
    // The client is a plain blocking reader (python3's socket module): it tells an RST
    // (ConnectionResetError) from a FIN (recv returns b''). Node's own client cannot be used for
    // this: libuv reports an RST that arrives while it is not polling for input as a clean end.
    const reader = spawn(
      'python3',
      [
        '-c',
        [
          'import socket, sys',
          's = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)',
          'n = 0',
          'announced = False',
          'while True:',
          '    try:',
          '        d = s.recv(65536)',
          '    except ConnectionResetError:',
          '        print("RESET", n, flush=True); break',
          '    except socket.timeout:',
          '        print("TIMEOUT", n, flush=True); break',
          '    if not d:',
          '        print("EOF", n, flush=True); break',
          '    n += len(d)',
          '    if n > 262144 and not announced:',
          '        print("FLOWING", flush=True); announced = True',
        ].join('\n'),
        vip,
        String(port),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let output = '';
    reader.stdout.on('data', (d: Buffer) => (output += d.toString('utf8')));
    const exited = new Promise<void>((resolve) => reader.once('exit', () => resolve()));
    try {
      await waitFor(() => output.includes('FLOWING'), 10_000, 'data to flow through the mesh');
      await b.close();
      await Promise.race([exited, sleep(10_000)]);
      expect(output).toMatch(/RESET \d+/);
      expect(output).not.toMatch(/EOF/);
    } finally {
      reader.kill('SIGKILL');
    }
    await waitFor(() => peerState(a, 'b') === 'down', 10_000, 'a to show b down');
    // a is still serving: its control API answers and the service now has no provider up
    const view = a.status().services.find((s) => s.name === 'feed');
    expect(view?.providers.every((p) => p.state !== 'up')).toBe(true);
  }, 40_000);
});
