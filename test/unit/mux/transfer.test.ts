import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { MuxStream } from '../../../src/mux/index.js';
import { seededRandom } from '../../../src/util/random.js';
import type { Random } from '../../../src/util/random.js';
import { createPair, drain, waitFor } from './pair.js';

const MiB = 1024 * 1024;

/** `total` bytes from a seeded generator, cut into random chunk sizes in 1..maxChunk. */
function randomChunks(rnd: Random, total: number, maxChunk: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = total;
  const block = rnd.bytes(4096 + 7);
  let pos = 0;
  while (left > 0) {
    const n = Math.min(left, 1 + Math.floor(rnd.float() * maxChunk));
    const chunk = new Uint8Array(n);
    for (let off = 0; off < n; ) {
      const take = Math.min(n - off, block.length - pos);
      chunk.set(block.subarray(pos, pos + take), off);
      off += take;
      pos = (pos + take) % block.length;
    }
    // Vary content per chunk so a reordering or a lost chunk changes the hash.
    chunk[0] = out.length & 0xff;
    chunk[n - 1] = Math.floor(rnd.float() * 256);
    pos = (pos + Math.floor(rnd.float() * block.length)) % block.length;
    out.push(chunk);
    left -= n;
  }
  return out;
}

function sha256(chunks: Iterable<Uint8Array>): string {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
}


/** Writes chunks with backpressure (waits for 'drain'), then end(). */
async function writeAll(stream: MuxStream, chunks: Uint8Array[]): Promise<void> {
  for (const c of chunks) {
    if (!stream.write(c)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => {
          stream.off('error', onError);
          resolve();
        };
        const onError = (err: Error): void => {
          stream.off('drain', onDrain);
          reject(err);
        };
        stream.once('drain', onDrain);
        stream.once('error', onError);
      });
    }
  }
  await new Promise<void>((resolve) => stream.end(resolve));
}

describe('mux transfer', () => {
  it('carries 8 MiB each way with random chunk sizes, byte-exact (sha256)', async () => {
    const seed = 20240601;
    const rnd = seededRandom(seed);
    const up = randomChunks(rnd, 8 * MiB, 200_000);
    const down = randomChunks(rnd, 8 * MiB, 70_000);
    const pair = createPair();
    const client = pair.a.session.open('db', 5432);
    client.on('error', () => {});
    await waitFor(() => pair.b.inbound.length === 1, 'inbound stream');
    const server = pair.b.inbound[0]!;
    expect(server.service).toBe('db');
    expect(server.port).toBe(5432);
    expect(server.id).toBe(client.id);
    expect(client.id % 2).toBe(1);

    const [atServer, atClient] = await Promise.all([drain(server), drain(client), writeAll(client, up), writeAll(server, down)]);
    expect(atServer, `seed ${seed}`).toEqual({ hash: sha256(up), length: 8 * MiB });
    expect(atClient, `seed ${seed}`).toEqual({ hash: sha256(down), length: 8 * MiB });
    expect(client.stats().sentBytes).toBe(8 * MiB);
    expect(server.stats().receivedBytes).toBe(8 * MiB);
    // No frame exceeded the configured maximum (MAX_DATA_FRAME), and the whole thing is accounted.
    expect(pair.a.dataBytesSent).toBe(8 * MiB);
    expect(pair.b.dataBytesSent).toBe(8 * MiB);
    await waitFor(() => pair.a.session.streamCount === 0 && pair.b.session.streamCount === 0, 'streams removed');
    expect(pair.a.protocolErrors).toEqual([]);
    expect(pair.b.protocolErrors).toEqual([]);
    expect(pair.b.streamErrors).toEqual([]);
  });

  it('splits writes into frames of at most maxFrameDataBytes', async () => {
    const sizes: number[] = [];
    const pair = createPair({
      configA: { maxFrameDataBytes: 1000 },
      tap: (from, f) => {
        if (from === 'a' && f.kind === 'data') sizes.push(f.data.length);
      },
    });
    const s = pair.a.session.open('x', 1);
    s.end(new Uint8Array(4500));
    await waitFor(() => pair.b.inbound.length === 1, 'inbound');
    const got = await drain(pair.b.inbound[0]!);
    expect(got.length).toBe(4500);
    expect(sizes).toEqual([1000, 1000, 1000, 1000, 500]);
  });

  it('half-closes from the opener: the acceptor reads to the end and can still answer', async () => {
    const pair = createPair();
    const client = pair.a.session.open('echo', 7);
    client.end(Buffer.from('request'));
    await waitFor(() => pair.b.inbound.length === 1, 'inbound');
    const server = pair.b.inbound[0]!;
    const req = await drain(server);
    expect(req.length).toBe(7);
    expect(server.readableEnded).toBe(true);
    expect(server.writable).toBe(true);
    const replyDone = drain(client);
    server.end(Buffer.from('a long reply after the request side closed'));
    expect((await replyDone).length).toBe(42);
    await waitFor(() => pair.a.session.streamCount === 0 && pair.b.session.streamCount === 0, 'both removed');
    // Clean close: fin both ways, no reset.
    expect(pair.a.controlFrames.filter((f) => f.kind === 'reset')).toEqual([]);
    expect(pair.b.controlFrames.filter((f) => f.kind === 'reset')).toEqual([]);
  });

  it('half-closes from the acceptor: the opener reads to the end and can still send', async () => {
    const pair = createPair({
      onStreamB: (stream) => {
        stream.accept();
        stream.end(Buffer.from('banner'));
      },
    });
    const client = pair.a.session.open('smtp', 25);
    const banner = await drain(client);
    expect(banner.length).toBe(6);
    const server = pair.b.inbound[0]!;
    const got = drain(server);
    client.end(Buffer.from('QUIT'));
    expect((await got).length).toBe(4);
    await waitFor(() => pair.a.session.streamCount === 0 && pair.b.session.streamCount === 0, 'both removed');
  });

  it('carries 200 concurrent streams correctly', async () => {
    const rnd = seededRandom(7);
    const n = 200;
    const payloads = Array.from({ length: n }, (_, i) => randomChunks(rnd, 1000 + Math.floor(rnd.float() * 150_000) + i, 30_000));
    const results = new Map<string, Promise<{ hash: string; length: number }>>();
    const pair = createPair({
      configA: { initialWindowBytes: 16 * 1024 },
      configB: { initialWindowBytes: 16 * 1024 },
      onStreamB: (stream, open) => {
        stream.accept();
        results.set(open.service, drain(stream));
      },
    });
    const streams = payloads.map((_, i) => pair.a.session.open(`svc-${i}`, 1000 + i));
    expect(new Set(streams.map((s) => s.id)).size).toBe(n);
    for (const s of streams) s.on('error', () => {});
    await Promise.all(streams.map((s, i) => writeAll(s, payloads[i]!)));
    await waitFor(() => results.size === n, 'all inbound');
    for (let i = 0; i < n; i++) {
      const got = await results.get(`svc-${i}`)!;
      const want = payloads[i]!;
      expect(got).toEqual({ hash: sha256(want), length: want.reduce((a, c) => a + c.length, 0) });
    }
    expect(pair.b.session.streamCount).toBe(n); // our side still open on b; a has ended its side
    // The opener's readable must be consumed to its end before a stream counts as finished.
    for (const s of streams) s.resume();
    for (const s of pair.b.inbound) s.end();
    await waitFor(() => pair.a.session.streamCount === 0 && pair.b.session.streamCount === 0, 'all removed');
    expect(pair.a.streamErrors.concat(pair.b.streamErrors)).toEqual([]);
  });

  it('works through pipe() from a Readable source', async () => {
    const rnd = seededRandom(99);
    const chunks = randomChunks(rnd, 3 * MiB, 64 * 1024);
    const pair = createPair();
    const client = pair.a.session.open('pipe', 80);
    Readable.from(chunks).pipe(client);
    await waitFor(() => pair.b.inbound.length === 1, 'inbound');
    const got = await drain(pair.b.inbound[0]!);
    expect(got).toEqual({ hash: sha256(chunks), length: 3 * MiB });
  });
});
