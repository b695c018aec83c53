import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/daemon/index.js';
import { makeAgent, peerState, waitFor } from './helpers.js';

/**
 * SPEC §4 rekey, at volume: two agents whose tunnels rekey every 16 MiB carry 1 GiB of TCP data
 * through a mesh service; every byte arrives in order (sha256 over the whole stream), the sending
 * direction has rotated its key once per 16 MiB (both ends count it), and the tunnel never dropped.
 * Both directions at once are covered at 8 MiB in test/unit/tunnel/tunnel.test.ts.
 */

const TOTAL_MIB = 1024;
const REKEY_AFTER_BYTES = 16 * 1024 * 1024;

describe('rekey under a 1 GiB transfer', () => {
  let root: string;
  let a: Agent;
  let b: Agent;
  let server: Server;
  let port: number;
  let sentHash = '';

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'osm-rekey-'));
    // a 1 MiB random block, each copy stamped with its index: reordered or repeated MiBs change the hash
    const block = randomBytes(1024 * 1024);
    server = createServer((socket) => {
      const hash = createHash('sha256');
      let i = 0;
      const write = (): void => {
        while (i < TOTAL_MIB) {
          const chunk = Buffer.from(block);
          chunk.writeUInt32BE(i, 0);
          hash.update(chunk);
          i++;
          if (!socket.write(chunk)) {
            socket.once('drain', write);
            return;
          }
        }
        sentHash = hash.digest('hex');
        socket.end();
      };
      write();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
    const tunnelConfig = { rekeyAfterBytes: REKEY_AFTER_BYTES };
    a = await makeAgent(root, 'a', 101, {}, { tunnelConfig });
    b = await makeAgent(root, 'b', 102, { services: { bulk: { port } } }, { tunnelConfig });
    a.node.initMesh('rekey');
    await b.node.join(a.node.createToken(600_000, 1).token, undefined);
    await waitFor(() => peerState(a, 'b') === 'up' && a.status().services.some((s) => s.name === 'bulk'), 30_000, 'a sees bulk on b');
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([a, b].filter((x) => x !== undefined).map((agent) => agent.close()));
    server?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 30_000);

  it('moves 1 GiB byte-exact on one tunnel while its sending direction rekeys every 16 MiB', { timeout: 300_000 }, async () => {
    const vip = a.status().services.find((s) => s.name === 'bulk')!.vip;
    const tunnelBefore = a.status().peers.find((p) => p.name === 'b')!;
    const started = Date.now();
    const { bytes, hash } = await new Promise<{ bytes: number; hash: string }>((resolve, reject) => {
      const h = createHash('sha256');
      let n = 0;
      const socket = connect({ host: vip, port });
      socket.on('data', (chunk: Buffer) => {
        h.update(chunk);
        n += chunk.length;
      });
      socket.on('end', () => resolve({ bytes: n, hash: h.digest('hex') }));
      socket.on('error', reject);
    });
    const seconds = (Date.now() - started) / 1000;
    expect(bytes).toBe(TOTAL_MIB * 1024 * 1024);
    expect(hash).toBe(sentHash);
    const after = a.status().peers.find((p) => p.name === 'b')!;
    // the data went b → a: at least 1 GiB / 16 MiB = 64 rotations of b's send key (a's receive key),
    // plus a's own rotations for the credit updates it sent the other way (far fewer)
    expect(after.rekeys - tunnelBefore.rekeys).toBeGreaterThanOrEqual(TOTAL_MIB / 16 - 1);
    expect(b.status().peers.find((p) => p.name === 'a')!.rekeys).toBe(after.rekeys);
    expect(after.state).toBe('up');
    expect(after.path).toBe(tunnelBefore.path); // the same tunnel all along
    console.log(`REKEY: 1 GiB byte-exact in ${seconds.toFixed(1)} s, ${after.rekeys} key rotations on the tunnel`);
  });
});
