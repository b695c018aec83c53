import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, linkSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { join, resolve } from 'node:path';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { ControlClient } from '../../../src/control/index.js';
import { makeTempDir, type TempDir } from './fixtures.js';

async function rejection(promise: Promise<unknown>): Promise<MeshError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(MeshError);
    return err as MeshError;
  }
  throw new Error('expected a rejection');
}

function listen(server: Server | ReturnType<typeof createHttpServer>, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
}

function close(server: Server | ReturnType<typeof createHttpServer>): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('ControlClient connection errors', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = makeTempDir();
  });
  afterEach(() => tmp.cleanup());

  it('maps ENOENT to AGENT_UNREACHABLE naming the socket and the fix', async () => {
    const socketPath = join(tmp.dir, 'missing.sock');
    const err = await rejection(new ControlClient({ socketPath }).status());
    expect(err.code).toBe(ErrorCodes.AGENT_UNREACHABLE);
    expect(err.message).toContain(socketPath);
    expect(err.message).toContain('osmoda-mesh agent');
    expect(err.message).toContain('OSMODA_MESH_CONTROL');
    expect((err.cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('maps ECONNREFUSED (a stale socket) to AGENT_UNREACHABLE', async () => {
    const helper = join(tmp.dir, 'helper.sock');
    const socketPath = join(tmp.dir, 'stale.sock');
    const server = createServer();
    await listen(server, helper);
    linkSync(helper, socketPath);
    await close(server);
    const err = await rejection(new ControlClient({ socketPath }).peers());
    expect(err.code).toBe(ErrorCodes.AGENT_UNREACHABLE);
    expect(err.message).toContain('nothing answers');
  });

  it('maps EACCES to AGENT_UNREACHABLE with the group hint', async () => {
    const socketPath = join(tmp.dir, 'locked.sock');
    const server = createServer((s) => s.destroy());
    await listen(server, socketPath);
    chmodSync(socketPath, 0o000);
    try {
      if (process.getuid?.() === 0) {
        // root ignores file modes, so ask as an unprivileged user through the built CLI
        const main = resolve('dist/src/main.js');
        expect(existsSync(main), 'dist/src/main.js (npm test builds it first)').toBe(true);
        const result = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, main, 'status', '--control', socketPath], { encoding: 'utf8', timeout: 20_000 });
        expect(result.status).toBe(3);
        expect(result.stderr).toContain('permission denied');
        expect(result.stderr).toContain('osmoda-mesh group');
      } else {
        const err = await rejection(new ControlClient({ socketPath }).status());
        expect(err.code).toBe(ErrorCodes.AGENT_UNREACHABLE);
        expect(err.message).toContain('osmoda-mesh group');
      }
    } finally {
      await close(server);
    }
  });

  it('times out on an agent that never answers', async () => {
    const socketPath = join(tmp.dir, 'mute.sock');
    const server = createServer(() => {
      /* accept and say nothing */
    });
    await listen(server, socketPath);
    try {
      const started = Date.now();
      const err = await rejection(new ControlClient({ socketPath, timeoutMs: 200 }).status());
      expect(err.code).toBe(ErrorCodes.AGENT_UNREACHABLE);
      expect(err.message).toContain('did not answer');
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      server.close();
    }
  });

  it('refuses an answer that is not the control API', async () => {
    const socketPath = join(tmp.dir, 'other.sock');
    const server = createHttpServer((_req, res) => res.end('<html>hello</html>'));
    await listen(server, socketPath);
    try {
      const err = await rejection(new ControlClient({ socketPath }).services());
      expect(err.code).toBe(ErrorCodes.AGENT_UNREACHABLE);
      expect(err.message).toContain('schema 1');
    } finally {
      await close(server);
    }
  });

  it('turns an error answer into a MeshError with its code and message, and sends no Origin', async () => {
    const socketPath = join(tmp.dir, 'err.sock');
    const seen: Array<Record<string, unknown>> = [];
    const server = createHttpServer((req, res) => {
      seen.push({ ...req.headers, url: req.url, method: req.method });
      res.writeHead(409, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ schema: 1, code: 'MESH_ERR_NOT_JOINED', message: 'this node has not joined a mesh' }));
    });
    await listen(server, socketPath);
    try {
      const err = await rejection(new ControlClient({ socketPath }).resolve('db mesh'));
      expect(err.code).toBe(ErrorCodes.NOT_JOINED);
      expect(err.message).toBe('this node has not joined a mesh');
      expect(seen[0]?.['url']).toBe('/v1/resolve?name=db+mesh');
      expect(seen[0]?.['origin']).toBeUndefined();
      expect(seen[0]?.['referer']).toBeUndefined();
    } finally {
      await close(server);
    }
  });
});
