import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalServices } from '../../../src/forward/index.js';
import { MeshMetrics, type PeerIdentity } from '../../../src/mesh/index.js';
import { createPair, silentLogger } from '../mux/pair.js';

const peer: PeerIdentity = { nodeIdHex: 'aa', name: 'web1', tags: [] };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let server: Server | undefined;
afterEach(() => {
  server?.close();
  server = undefined;
});

/** A target that counts the connections it got and how many are still open. */
async function target(): Promise<{ port: number; accepted: () => number; open: () => number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  let accepted = 0;
  server = createServer((s) => {
    accepted++;
    sockets.push(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.splice(sockets.indexOf(s), 1));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { port, accepted: () => accepted, open: () => sockets.length, sockets };
}

describe('LocalServices (provider side of forward)', () => {
  it('drops the dial when the opener resets the stream before the target answered', async () => {
    const t = await target();
    const local = new LocalServices({ logger: silentLogger(), metrics: new MeshMetrics(), connectTimeoutMs: 5_000 });
    local.set('db', new Map([[5432, { host: '127.0.0.1', port: t.port, allowFrom: null }]]));
    let handled = 0;
    const pair = createPair({
      onStreamB: (stream, open) => {
        handled++;
        local.handleStream(stream, open, peer);
      },
    });
    // each open is followed by a reset in the same delivery, before any connect can complete
    for (let i = 0; i < 20; i++) pair.a.session.open('db', 5432).destroy();
    for (let i = 0; i < 100 && handled < 20; i++) await sleep(10);
    expect(handled).toBe(20);
    await sleep(300);
    // none of them may be left connected at the target
    expect(t.open()).toBe(0);
    expect(pair.b.session.streamCount).toBe(0);
    local.destroy();
  });

  it('still splices a stream that stays, and carries its bytes', async () => {
    const t = await target();
    const local = new LocalServices({ logger: silentLogger(), metrics: new MeshMetrics(), connectTimeoutMs: 5_000 });
    local.set('db', new Map([[5432, { host: '127.0.0.1', port: t.port, allowFrom: null }]]));
    const pair = createPair({ onStreamB: (stream, open) => local.handleStream(stream, open, peer) });
    const stream = pair.a.session.open('db', 5432);
    stream.on('error', () => undefined);
    stream.write(Buffer.from('ping'));
    for (let i = 0; i < 100 && t.sockets.length === 0; i++) await sleep(10);
    const got = await new Promise<string>((resolve) => t.sockets[0]!.once('data', (d) => resolve(d.toString())));
    expect(got).toBe('ping');
    t.sockets[0]!.write('pong');
    const back = await new Promise<string>((resolve) => stream.once('data', (d: Buffer) => resolve(d.toString())));
    expect(back).toBe('pong');
    expect(t.open()).toBe(1);
    stream.destroy();
    local.destroy();
  });
});
