import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, linkSync, lstatSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { ErrorCodes, MeshError, type ErrorCode } from '../../../src/errors.js';
import { ControlClient, ControlServer, httpStatusForCode } from '../../../src/control/index.js';
import { makeStub, makeTempDir, memoryLogger, rawRequest, type Stub, type TempDir } from './fixtures.js';

const silent = pino({ level: 'silent' });

function listenNet(path: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => socket.destroy());
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

function closeNet(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

async function rejection(promise: Promise<unknown>): Promise<MeshError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(MeshError);
    return err as MeshError;
  }
  throw new Error('expected a rejection');
}

describe('ControlServer routes', () => {
  let tmp: TempDir;
  let stub: Stub;
  let server: ControlServer;
  let client: ControlClient;
  let socketPath: string;
  let logLines: string[];

  beforeEach(async () => {
    tmp = makeTempDir();
    stub = makeStub();
    socketPath = join(tmp.dir, 'control.sock');
    const mem = memoryLogger();
    logLines = mem.lines;
    server = new ControlServer({ socketPath, handlers: stub.handlers, logger: mem.logger });
    await server.start();
    client = new ControlClient({ socketPath, timeoutMs: 5_000 });
  });

  afterEach(async () => {
    await server.close();
    tmp.cleanup();
  });

  it('round-trips every route through the typed client', async () => {
    expect((await client.status()).node.name).toBe('server1');
    expect((await client.peers()).peers[0]?.name).toBe('server2');
    expect((await client.services()).services[0]?.vip).toBe('127.77.0.2');
    expect((await client.resolve('db.mesh')).addresses).toEqual(['127.77.0.2']);
    expect((await client.init({ mesh: 'prod' })).mesh).toBe('prod');
    expect((await client.createToken({ ttlMs: 86_400_000, uses: 5 })).uses).toBe(5);
    expect((await client.join({ token: 'osmt1_abc', name: 'server9' })).node).toBe('server9');
    expect((await client.expose({ name: 'db', port: 5432, target: '127.0.0.1:15432' })).service.local?.target).toBe('127.0.0.1:15432');
    expect((await client.unexpose({ name: 'db' })).wasExposed).toBe(true);
    expect((await client.listTokens()).tokens[0]?.usesLeft).toBe(2);
    expect((await client.revokeToken({ tokenId: 'a'.repeat(32) })).wasKnown).toBe(true);
    expect((await client.ping({ node: 'server2', count: 3 })).rttMs).toHaveLength(3);
    expect(stub.calls).toEqual([
      { method: 'status', arg: undefined },
      { method: 'peers', arg: undefined },
      { method: 'services', arg: undefined },
      { method: 'resolve', arg: 'db.mesh' },
      { method: 'init', arg: { mesh: 'prod' } },
      { method: 'createToken', arg: { ttlMs: 86_400_000, uses: 5 } },
      { method: 'join', arg: { token: 'osmt1_abc', name: 'server9' } },
      { method: 'expose', arg: { name: 'db', port: 5432, target: '127.0.0.1:15432' } },
      { method: 'unexpose', arg: { name: 'db' } },
      { method: 'listTokens', arg: undefined },
      { method: 'revokeToken', arg: { tokenId: 'a'.repeat(32) } },
      { method: 'ping', arg: { node: 'server2', count: 3 } },
    ]);
  });

  it('validates token revoke and ping bodies, naming the field', async () => {
    await expect(client.revokeToken({ tokenId: 'not-hex' })).rejects.toThrow(/tokenId: expected a token id: 32 hex digits/);
    await expect(client.ping({ node: 'Bad Name' })).rejects.toThrow(/node: expected a DNS label/);
    await expect(client.ping({ node: 'server2', count: 101 })).rejects.toThrow(/count: expected at most 100/);
    expect(stub.calls).toEqual([]);
  });

  it('answers with schema 1 and JSON content type', async () => {
    const answer = await rawRequest(socketPath, { method: 'GET', path: '/v1/status' });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toMatch(/^application\/json/);
    expect((answer.json as { schema: number }).schema).toBe(1);
  });

  it('treats an empty POST body as no fields', async () => {
    const answer = await rawRequest(socketPath, { method: 'POST', path: '/v1/tokens' });
    expect(answer.status).toBe(200);
    expect(stub.calls).toEqual([{ method: 'createToken', arg: {} }]);
  });

  it.each([
    ['/v1/expose', { name: 'db', port: 'abc' }, 'port'],
    ['/v1/expose', { name: 'db', port: 70000 }, 'port'],
    ['/v1/expose', { port: 5432 }, 'name'],
    ['/v1/expose', { name: 'db', port: 5432, target: 'no port' }, 'target'],
    ['/v1/expose', { name: 'db', port: 5432, allowFrom: 'web' }, 'allowFrom'],
    ['/v1/expose', { name: 'db', port: 5432, allowFrom: ['web', 'tag:'] }, 'allowFrom[1]'],
    ['/v1/init', {}, 'mesh'],
    ['/v1/init', { mesh: 'Bad_Name' }, 'mesh'],
    ['/v1/tokens', { ttlMs: -5 }, 'ttlMs'],
    ['/v1/tokens', { uses: 1.5 }, 'uses'],
    ['/v1/join', { token: 42 }, 'token'],
    ['/v1/join', { token: 'osmt1_x', name: '-bad' }, 'name'],
    ['/v1/unexpose', { name: 7 }, 'name'],
    ['/v1/unexpose', { name: 'db', force: true }, 'force'],
    ['/v1/init', ['prod'], 'request body'],
  ])('POST %s %j → 400 naming %s', async (path, body, field) => {
    const answer = await rawRequest(socketPath, { method: 'POST', path, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    expect(answer.status).toBe(400);
    const json = answer.json as { schema: number; code: string; message: string };
    expect(json.schema).toBe(1);
    expect(json.code).toBe('MESH_ERR_INVALID_ARGUMENT');
    expect(json.message.startsWith(`${field}:`)).toBe(true);
    expect(stub.calls).toEqual([]);
  });

  it('never echoes a join token in a validation error', async () => {
    const answer = await rawRequest(socketPath, { method: 'POST', path: '/v1/join', body: JSON.stringify({ token: 'osmt1_SECRET', name: 'X!' }) });
    expect(answer.status).toBe(400);
    expect(answer.text).not.toContain('SECRET');
  });

  it('answers 400 on malformed JSON', async () => {
    const answer = await rawRequest(socketPath, { method: 'POST', path: '/v1/init', body: '{"mesh": ' });
    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({ schema: 1, code: 'MESH_ERR_INVALID_ARGUMENT' });
    expect((answer.json as { message: string }).message).toMatch(/^request body: expected JSON/);
  });

  it('answers 400 when resolve has no name', async () => {
    const answer = await rawRequest(socketPath, { method: 'GET', path: '/v1/resolve' });
    expect(answer.status).toBe(400);
    expect((answer.json as { message: string }).message).toMatch(/^name:/);
  });

  it('answers 404 with MESH_ERR_NOT_FOUND on an unknown route', async () => {
    for (const path of ['/v1/nope', '/v2/status', '/']) {
      const answer = await rawRequest(socketPath, { method: 'GET', path });
      expect(answer.status).toBe(404);
      expect(answer.json).toMatchObject({ schema: 1, code: 'MESH_ERR_NOT_FOUND' });
    }
  });

  it('answers 405 on a wrong method and names the allowed one', async () => {
    const get = await rawRequest(socketPath, { method: 'GET', path: '/v1/init' });
    expect(get.status).toBe(405);
    expect(get.headers['allow']).toBe('POST');
    const post = await rawRequest(socketPath, { method: 'POST', path: '/v1/status', body: '{}' });
    expect(post.status).toBe(405);
    expect(post.headers['allow']).toBe('GET');
    expect((post.json as { schema: number }).schema).toBe(1);
    expect(stub.calls).toEqual([]);
  });

  it('answers 413 on a body over 64 KiB, declared or chunked', async () => {
    const big = JSON.stringify({ mesh: 'x'.repeat(70 * 1024) });
    const declared = await rawRequest(socketPath, { method: 'POST', path: '/v1/init', body: big });
    expect(declared.status).toBe(413);
    expect(declared.json).toMatchObject({ schema: 1, code: 'MESH_ERR_INVALID_ARGUMENT' });
    const chunked = await rawRequest(socketPath, { method: 'POST', path: '/v1/init', body: big, chunked: true });
    expect(chunked.status).toBe(413);
    expect(stub.calls).toEqual([]);
    // A body just under the limit still reaches validation.
    const under = await rawRequest(socketPath, { method: 'POST', path: '/v1/init', body: JSON.stringify({ mesh: 'x'.repeat(60 * 1024) }) });
    expect(under.status).toBe(400);
  });

  it('refuses requests with an Origin or Referer header with 403', async () => {
    const origin = await rawRequest(socketPath, { method: 'GET', path: '/v1/status', headers: { origin: 'http://evil.example' } });
    expect(origin.status).toBe(403);
    expect((origin.json as { schema: number }).schema).toBe(1);
    const referer = await rawRequest(socketPath, {
      method: 'POST',
      path: '/v1/tokens',
      headers: { referer: 'http://evil.example/page' },
      body: '{}',
    });
    expect(referer.status).toBe(403);
    expect(stub.calls).toEqual([]);
  });

  it.each<[ErrorCode, number]>([
    [ErrorCodes.INVALID_ARGUMENT, 400],
    [ErrorCodes.TOKEN_EXPIRED, 400],
    [ErrorCodes.NAME_TAKEN, 400],
    [ErrorCodes.NOT_ADMIN, 403],
    [ErrorCodes.UNKNOWN_SERVICE, 404],
    [ErrorCodes.NOT_FOUND, 404],
    [ErrorCodes.ALREADY_JOINED, 409],
    [ErrorCodes.NOT_JOINED, 409],
    [ErrorCodes.JOIN_FAILED, 502],
    [ErrorCodes.NO_PROVIDER, 503],
    [ErrorCodes.PORT_IN_USE, 500],
  ])('maps a handler MeshError %s to HTTP %i and back to the same code', async (code, status) => {
    stub.failWith = new MeshError(code, `handler says ${code}`);
    const answer = await rawRequest(socketPath, { method: 'POST', path: '/v1/tokens', body: '{}' });
    expect(answer.status).toBe(status);
    expect(answer.json).toEqual({ schema: 1, code, message: `handler says ${code}` });
    expect(httpStatusForCode(code)).toBe(status);
    const err = await rejection(client.createToken({}));
    expect(err.code).toBe(code);
    expect(err.message).toBe(`handler says ${code}`);
  });

  it('hides non-MeshErrors behind MESH_ERR_INTERNAL and logs them', async () => {
    stub.failWith = new Error('database exploded at /secret/path');
    const answer = await rawRequest(socketPath, { method: 'GET', path: '/v1/status' });
    expect(answer.status).toBe(500);
    expect((answer.json as { code: string }).code).toBe('MESH_ERR_INTERNAL');
    expect(answer.text).not.toContain('exploded');
    expect(logLines.join('')).toContain('database exploded');
  });

  it('never logs request bodies', async () => {
    await client.join({ token: 'osmt1_TOPSECRETVALUE', name: 'n2' });
    stub.failWith = new Error('boom');
    await rawRequest(socketPath, { method: 'POST', path: '/v1/join', body: JSON.stringify({ token: 'osmt1_TOPSECRETVALUE' }) });
    const log = logLines.join('');
    expect(log).toContain('control request'); // the request log is on at debug level
    expect(log).not.toContain('TOPSECRETVALUE');
  });
});

describe('ControlServer socket lifecycle', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = makeTempDir();
  });
  afterEach(() => tmp.cleanup());

  it('creates the parent directory (0755) and chmods the socket to 0660', async () => {
    const socketPath = join(tmp.dir, 'run', 'osmoda-mesh', 'control.sock');
    const server = new ControlServer({ socketPath, handlers: makeStub().handlers, logger: silent });
    await server.start();
    try {
      expect(lstatSync(socketPath).isSocket()).toBe(true);
      expect(lstatSync(socketPath).mode & 0o777).toBe(0o660);
      expect(statSync(join(tmp.dir, 'run', 'osmoda-mesh')).mode & 0o777).toBe(0o755 & ~process.umask());
    } finally {
      await server.close();
    }
  });

  it('applies a custom socket mode', async () => {
    const socketPath = join(tmp.dir, 'control.sock');
    const server = new ControlServer({ socketPath, handlers: makeStub().handlers, logger: silent, socketMode: 0o600 });
    await server.start();
    expect(lstatSync(socketPath).mode & 0o777).toBe(0o600);
    await server.close();
  });

  it('removes the socket file on close; close and destroy are idempotent', async () => {
    const socketPath = join(tmp.dir, 'control.sock');
    const server = new ControlServer({ socketPath, handlers: makeStub().handlers, logger: silent });
    await server.start();
    expect(existsSync(socketPath)).toBe(true);
    const first = server.close();
    const second = server.close();
    await Promise.all([first, second]);
    expect(existsSync(socketPath)).toBe(false);
    server.destroy();
    server.destroy();
    await server.close();
    expect(server.isListening).toBe(false);
  });

  it('destroy removes the socket file at once', async () => {
    const socketPath = join(tmp.dir, 'control.sock');
    const server = new ControlServer({ socketPath, handlers: makeStub().handlers, logger: silent });
    await server.start();
    server.destroy();
    expect(existsSync(socketPath)).toBe(false);
    await server.close();
  });

  it('close waits for an in-flight request, then removes the socket', async () => {
    const socketPath = join(tmp.dir, 'control.sock');
    const stub = makeStub();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    stub.handlers.status = async () => {
      await gate;
      return (await makeStub().handlers.status());
    };
    const server = new ControlServer({ socketPath, handlers: stub.handlers, logger: silent });
    await server.start();
    const client = new ControlClient({ socketPath, timeoutMs: 5_000 });
    const inFlight = client.status();
    await new Promise((r) => setTimeout(r, 50));
    const closing = server.close();
    release();
    expect((await inFlight).schema).toBe(1);
    await closing;
    expect(existsSync(socketPath)).toBe(false);
  });

  it('removes a stale socket (nothing answers) and starts', async () => {
    const socketPath = join(tmp.dir, 'control.sock');
    // A hard link keeps a second name for the socket inode; once the listener is gone (and libuv
    // has unlinked its own name), the link is a stale socket file, as after a SIGKILL.
    const helperPath = join(tmp.dir, 'helper.sock');
    const net = await listenNet(helperPath);
    linkSync(helperPath, socketPath);
    await closeNet(net);
    expect(lstatSync(socketPath).isSocket()).toBe(true);
    const stub = makeStub();
    const server = new ControlServer({ socketPath, handlers: stub.handlers, logger: silent });
    await server.start();
    try {
      const answer = await new ControlClient({ socketPath }).peers();
      expect(answer.schema).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('refuses to start on a socket where an agent answers', async () => {
    const socketPath = join(tmp.dir, 'control.sock');
    const first = new ControlServer({ socketPath, handlers: makeStub().handlers, logger: silent });
    await first.start();
    try {
      const second = new ControlServer({ socketPath, handlers: makeStub().handlers, logger: silent });
      const err = await rejection(second.start());
      expect(err.code).toBe(ErrorCodes.PORT_IN_USE);
      expect(err.message).toBe(`another agent is already running on ${socketPath}`);
      await second.close();
      // The first server is untouched.
      expect((await new ControlClient({ socketPath }).status()).schema).toBe(1);
    } finally {
      await first.close();
    }
  });

  it('refuses to replace a file that is not a socket', async () => {
    const socketPath = join(tmp.dir, 'control.sock');
    writeFileSync(socketPath, 'precious');
    const server = new ControlServer({ socketPath, handlers: makeStub().handlers, logger: silent });
    const err = await rejection(server.start());
    expect(err.code).toBe(ErrorCodes.INVALID_CONFIG);
    expect(err.message).toContain('is not a socket');
    expect(lstatSync(socketPath).isFile()).toBe(true);
  });

  it('rejects a socket path too long for sockaddr_un', () => {
    mkdirSync(join(tmp.dir, 'x'), { recursive: true });
    const socketPath = join(tmp.dir, 'x'.repeat(120), 'control.sock');
    expect(() => new ControlServer({ socketPath, handlers: makeStub().handlers, logger: silent })).toThrow(/at most 107 bytes/);
  });
});
