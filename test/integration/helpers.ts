import { mkdirSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { validateConfig } from '../../src/config/index.js';
import { Agent, type AgentInit } from '../../src/daemon/index.js';

/** Shared by the in-process agent tests: agents on loopback with their own VIP range, no DNS. */

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function makeAgent(root: string, name: string, vipOctet: number, extra: Record<string, unknown> = {}, init: Omit<AgentInit, 'config'> = {}): Promise<Agent> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // a free port can be taken by a test file running in parallel before the agent binds it
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort('127.0.0.1');
    const config = validateConfig(
      {
        nodeName: name,
        stateDir: join(dir, 'state'),
        listen: `127.0.0.1:${port}`,
        publicEndpoints: [`ws://127.0.0.1:${port}`],
        control: join(dir, 'control.sock'),
        dns: { enable: false },
        vipRange: `127.${vipOctet}.0.0/16`,
        logLevel: 'silent',
        ...extra,
      },
      name,
    );
    const agent = new Agent({ ...init, config });
    try {
      await agent.start();
      return agent;
    } catch (err) {
      lastError = err;
      await agent.close();
      if ((err as { code?: string }).code !== 'MESH_ERR_PORT_IN_USE') throw err;
    }
  }
  throw lastError;
}

export function peerState(agent: Agent, peer: string): string | undefined {
  return agent.status().peers.find((p) => p.name === peer)?.state;
}

