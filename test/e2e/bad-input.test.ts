/**
 * Bad input from users and from the network, against real agents (separate processes of the built
 * CLI) on loopback: every bad input gets a clear error, and after every one the admin agent A
 * still shows member B `up` and still carries a request through B's exposed service.
 *
 * No namespaces or root needed: each agent listens on its own 127.N.0.x address, has its own VIP
 * range, and DNS off. N is derived from the pid so two runs on one machine do not collide.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusResponse } from '../../src/control/protocol.js';
import { Ed25519Private, X25519Private } from '../../src/crypto/keys/index.js';
import { MeshError } from '../../src/errors.js';
import { issueCert } from '../../src/mesh/index.js';
import { MessageSocket, performTunnelHandshake, dialWebSocket } from '../../src/tunnel/index.js';
import { fromHex } from '../../src/util/bytes.js';
import { systemClock } from '../../src/util/clock.js';
import { encodeHandshakePayload } from '../../src/wire/index.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN_JS = join(REPO_ROOT, 'dist/src/main.js');
const NET = `127.${100 + (process.pid % 100)}`;
const TUNNEL_PORT = 18800;
const CLI_TIMEOUT_MS = 15_000;
const START_TIMEOUT_MS = 15_000;
const POLL_MS = 100;

type NodeName = 'a' | 'b' | 'c' | 'f' | 'z';
const HOST_INDEX: Record<NodeName, number> = { a: 1, b: 2, c: 3, f: 6, z: 26 };

interface Agent {
  name: NodeName;
  ip: string;
  endpoint: string;
  control: string;
  logPath: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls until `probe` returns a value, bounded by time and by count; throws naming `what`. */
async function pollUntil<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, lastSeen?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const maxAttempts = Math.ceil(timeoutMs / POLL_MS) + 1;
  for (let i = 0; i < maxAttempts && Date.now() < deadline; i++) {
    const got = await probe();
    if (got !== undefined) return got;
    await sleep(POLL_MS);
  }
  throw new Error(`${what}: not reached within ${timeoutMs} ms${lastSeen ? `; last seen: ${lastSeen()}` : ''}`);
}

/** Settles within `ms` or rejects naming `what` (so no await in this file can hang the suite). */
function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]);
}

function cli(args: string[], timeoutMs = CLI_TIMEOUT_MS): Promise<CliResult> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, [MAIN_JS, ...args], { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null;
      resolvePromise({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function describeResult(r: CliResult): string {
  return `exit ${r.code}; stdout: ${r.stdout.trim().slice(0, 800)}; stderr: ${r.stderr.trim().slice(0, 800)}`;
}

function tail(path: string, bytes = 4000): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > bytes ? `…${text.slice(-bytes)}` : text;
  } catch (err) {
    return `(cannot read ${path}: ${(err as Error).message})`;
  }
}

function logLines(agent: Agent): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of readFileSync(agent.logPath, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line being written right now
    }
  }
  return out;
}

async function startEchoServer(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  await new Promise<void>((r, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => r());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('echo server has no port');
  return { server, port: address.port, sockets };
}

/** Sends `payload` over TCP and resolves with what came back once as many bytes arrived. */
function echoOnce(host: string, port: number, payload: Buffer, timeoutMs: number): Promise<Buffer> {
  return within(
    `echo via ${host}:${port}`,
    timeoutMs,
    new Promise<Buffer>((resolvePromise, reject) => {
      const chunks: Buffer[] = [];
      let received = 0;
      const socket = connect({ host, port }, () => socket.write(payload));
      socket.on('data', (d: Buffer) => {
        chunks.push(d);
        received += d.length;
        if (received >= payload.length) {
          socket.destroy();
          resolvePromise(Buffer.concat(chunks));
        }
      });
      socket.on('error', reject);
      socket.on('close', () => {
        if (received < payload.length) reject(new Error(`echo via ${host}:${port}: closed after ${received} of ${payload.length} bytes`));
      });
      socket.setTimeout(timeoutMs, () => socket.destroy(new Error('timeout')));
    }),
  );
}

describe('bad input: agents on loopback keep serving', () => {
  let work = '';
  const agents = new Map<NodeName, Agent>();
  let echo: Awaited<ReturnType<typeof startEchoServer>> | undefined;
  let vip = '';
  let meshIdHex = '';

  const agent = (name: NodeName): Agent => {
    const a = agents.get(name);
    if (a === undefined) throw new Error(`agent ${name} was not started`);
    return a;
  };

  async function startAgent(name: NodeName): Promise<Agent> {
    const ip = `${NET}.0.${HOST_INDEX[name]}`;
    const dir = join(work, name);
    mkdirSync(dir, { recursive: true });
    const logPath = join(dir, 'agent.log');
    const logFd = openSync(logPath, 'a');
    const control = join(dir, 'control.sock');
    const endpoint = `ws://${ip}:${TUNNEL_PORT}`;
    const child = spawn(
      process.execPath,
      [
        MAIN_JS,
        'agent',
        '--state-dir',
        join(dir, 'state'),
        '--listen',
        `${ip}:${TUNNEL_PORT}`,
        '--public-endpoint',
        endpoint,
        '--control',
        control,
        '--vip-range',
        `${NET}.${10 + HOST_INDEX[name]}.0/24`,
      ],
      {
        // DNS off through the environment: `agent --dns off` is refused by the flag parser (it
        // accepts only HOST:PORT), while resolveConfig honours OSMODA_MESH_DNS=off
        env: { ...process.env, OSMODA_MESH_DNS: 'off', OSMODA_MESH_NODE_NAME: name },
        stdio: ['ignore', logFd, logFd],
      },
    );
    closeSync(logFd);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const a: Agent = { name, ip, endpoint, control, logPath, child, exited };
    agents.set(name, a);
    await pollUntil(
      `agent ${name} control socket`,
      START_TIMEOUT_MS,
      async () => {
        if (child.exitCode !== null) throw new Error(`agent ${name} exited with ${child.exitCode}: ${tail(logPath)}`);
        if (!existsSync(control)) return undefined;
        const r = await cli(['status', '--json', '--control', control], 5_000);
        return r.stdout.includes('"schema"') ? true : undefined;
      },
      () => tail(logPath, 1500),
    );
    return a;
  }

  async function stopAgent(name: NodeName): Promise<void> {
    const a = agents.get(name);
    if (a === undefined || a.child.exitCode !== null || a.child.signalCode !== null) return;
    a.child.kill('SIGTERM');
    const stopped = await Promise.race([a.exited.then(() => true), sleep(5_000).then(() => false)]);
    if (!stopped) {
      a.child.kill('SIGKILL');
      await Promise.race([a.exited, sleep(2_000)]);
    }
  }

  async function status(name: NodeName): Promise<StatusResponse> {
    const r = await cli(['status', '--json', '--control', agent(name).control]);
    try {
      return JSON.parse(r.stdout) as StatusResponse;
    } catch {
      throw new Error(`status of ${name}: ${describeResult(r)}`);
    }
  }

  async function tokenCreate(name: NodeName, extra: string[] = []): Promise<string> {
    const r = await cli(['token', 'create', ...extra, '--control', agent(name).control]);
    expect(r.code, describeResult(r)).toBe(0);
    const token = r.stdout.trim();
    expect(token.startsWith('osmt1_')).toBe(true);
    return token;
  }

  function tokenFile(label: string, token: string): string {
    const path = join(work, `${label}.token`);
    writeFileSync(path, token + '\n', { mode: 0o600 });
    return path;
  }

  function join_(name: NodeName, file: string, extra: string[] = []): Promise<CliResult> {
    return cli(['join', '--token-file', file, ...extra, '--control', agent(name).control]);
  }

  /** The invariant checked after every bad input: A sees B up, and the service through it works. */
  async function expectStillServing(afterWhat: string): Promise<void> {
    const a = agent('a');
    expect(a.child.exitCode, `A exited after ${afterWhat}: ${tail(a.logPath)}`).toBeNull();
    expect(agent('b').child.exitCode, `B exited after ${afterWhat}`).toBeNull();
    const st = await status('a');
    const b = st.peers.find((p) => p.name === 'b');
    expect(b?.state, `after ${afterWhat}: A's view of B: ${JSON.stringify(b)}`).toBe('up');
    const payload = randomBytes(4096);
    const back = await echoOnce(vip, echo!.port, payload, 10_000);
    expect(back.equals(payload), `after ${afterWhat}: echo through the mesh returned other bytes`).toBe(true);
  }

  beforeAll(async () => {
    if (!existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run \`npm run build\` before the e2e tests`);
    work = mkdtempSync(join(tmpdir(), 'osmt-bad-'));
    echo = await startEchoServer();
    await Promise.all([startAgent('a'), startAgent('b')]);
    const init = await cli(['init', '--mesh', 'alpha', '--control', agent('a').control]);
    expect(init.code, describeResult(init)).toBe(0);
    const joined = await join_('b', tokenFile('b', await tokenCreate('a')));
    expect(joined.code, describeResult(joined)).toBe(0);
    const exposed = await cli(['expose', 'echo', String(echo.port), '--control', agent('b').control]);
    expect(exposed.code, describeResult(exposed)).toBe(0);
    const st = await pollUntil(
      'A sees B up and providing echo',
      20_000,
      async () => {
        const s = await status('a');
        const svc = s.services.find((x) => x.name === 'echo');
        return s.peers.some((p) => p.name === 'b' && p.state === 'up') && svc?.providers.some((p) => p.node === 'b' && p.state === 'up') ? s : undefined;
      },
      () => tail(agent('a').logPath, 1500),
    );
    vip = st.services.find((x) => x.name === 'echo')!.vip;
    meshIdHex = st.node.meshId ?? '';
    expect(meshIdHex).toMatch(/^[0-9a-f]{32}$/);
    // the VIP listener may come up a moment after the catalog entry
    await pollUntil('echo through the VIP', 10_000, async () => {
      try {
        const p = randomBytes(64);
        return (await echoOnce(vip, echo!.port, p, 2_000)).equals(p) ? true : undefined;
      } catch {
        return undefined;
      }
    });
    await expectStillServing('setup');
  }, 90_000);

  afterAll(async () => {
    await Promise.all([...agents.keys()].map((n) => stopAgent(n)));
    for (const s of echo?.sockets ?? []) s.destroy();
    await new Promise<void>((r) => (echo ? echo.server.close(() => r()) : r()));
    if (work) rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it('expired token (--ttl 1s, 2 s later): join exits 1 naming the expiry', async () => {
    const f = agents.get('f') ?? (await startAgent('f'));
    const token = await tokenCreate('a', ['--ttl', '1s']);
    await sleep(2_000);
    const r = await join_(f.name, tokenFile('expired', token));
    expect(r.code, describeResult(r)).toBe(1);
    expect(r.stderr).toMatch(/error: token expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(create a new one with `osmoda-mesh token create`\)/);
    expect(r.stderr).not.toContain(token.slice(6, 30));
    expect((await status('f')).node.isJoined).toBe(false);
    await expectStillServing('an expired token');
  }, 40_000);

  it('used-up token (--uses 1): C joins, then F is told there are no uses left', async () => {
    const f = agents.get('f') ?? (await startAgent('f'));
    await startAgent('c');
    const file = tokenFile('once', await tokenCreate('a', ['--uses', '1']));
    const first = await join_('c', file);
    expect(first.code, describeResult(first)).toBe(0);
    expect(first.stdout).toMatch(/joined mesh alpha as c/);
    const second = await join_(f.name, file);
    expect(second.code, describeResult(second)).toBe(1);
    expect(second.stderr).toMatch(/no uses left/);
    expect(second.stderr).toMatch(/hint: create a new token .*--uses N/);
    // C repeating its own join is a no-op, not a second use
    const again = await join_('c', file);
    expect(again.code, describeResult(again)).toBe(0);
    expect(again.stdout).toMatch(/already a member of mesh alpha/);
    expect((await status('f')).node.isJoined).toBe(false);
    await expectStillServing('a used-up token');
  }, 60_000);

  it("a token of another mesh: B is refused (TOKEN_WRONG_MESH naming it); with its issuer down, a fresh node gets 'could not reach'", async () => {
    const f = agents.get('f') ?? (await startAgent('f'));
    await startAgent('z');
    const init = await cli(['init', '--mesh', 'zulu', '--control', agent('z').control]);
    expect(init.code, describeResult(init)).toBe(0);
    const zToken = await tokenCreate('z');
    const zToken2 = await tokenCreate('z');

    const wrong = await join_('b', tokenFile('zulu', zToken));
    expect(wrong.code, describeResult(wrong)).toBe(1);
    expect(wrong.stderr).toMatch(/this node is a member of mesh 'alpha'; the token is for mesh 'zulu'/);
    expect(wrong.stderr).toMatch(/hint: this token is for another mesh/);
    expect((await status('b')).node.mesh).toBe('alpha');
    await expectStillServing('a token of another mesh');

    await stopAgent('z');
    const started = Date.now();
    const down = await join_(f.name, tokenFile('zulu2', zToken2));
    expect(down.code, describeResult(down)).toBe(1);
    expect(down.stderr).toContain(`could not reach the issuer at ${agent('z').endpoint}`);
    expect(down.stderr).toMatch(/ECONNREFUSED|cannot reach/);
    expect(Date.now() - started).toBeLessThan(CLI_TIMEOUT_MS);
    expect((await status('f')).node.isJoined).toBe(false);
    await expectStillServing('a token whose issuer is down');
  }, 60_000);

  it('a tampered token (characters changed in the middle): join exits 1 with a clear error', async () => {
    const f = agents.get('f') ?? (await startAgent('f'));
    const token = await tokenCreate('a', ['--uses', '5']);
    const mid = Math.floor(token.length / 2);
    const middle = token.slice(mid, mid + 6);
    const replaced = [...middle].map((c) => (c === 'Q' ? 'R' : 'Q')).join('');
    const tampered = token.slice(0, mid) + replaced + token.slice(mid + 6);
    expect(tampered).not.toBe(token);
    const r = await join_(f.name, tokenFile('tampered', tampered));
    expect(r.code, describeResult(r)).toBe(1);
    expect(r.stderr).toMatch(/error: join token: (signature does not match its contents \(tampered with or corrupted\)|cannot be decoded)/);
    expect(r.stderr).toMatch(/hint: a join token starts with osmt1_/);
    expect(r.stderr).not.toContain(token.slice(6, 30));

    // and a file that is not a token at all is a usage error of the file, not of the mesh
    const notToken = await join_(f.name, tokenFile('garbage', 'hello world'));
    expect(notToken.code, describeResult(notToken)).toBe(1);
    expect(notToken.stderr).toMatch(/expected prefix osmt1_/);
    expect((await status('f')).node.isJoined).toBe(false);
    await expectStillServing('a tampered token');
  }, 40_000);

  it("64 KiB of random bytes and a plain GET on A's tunnel port: 400/close and 426", async () => {
    const a = agent('a');
    const garbage = randomBytes(64 * 1024);
    // the first byte is not a letter, so no HTTP method can ever match
    garbage[0] = 0x00;
    const answer = await within(
      'random bytes answer',
      10_000,
      new Promise<{ data: string; closed: boolean }>((resolvePromise) => {
        let data = '';
        const s = connect({ host: a.ip, port: TUNNEL_PORT }, () => s.write(garbage));
        s.on('data', (d: Buffer) => (data += d.toString('latin1')));
        s.on('error', () => undefined); // EPIPE/ECONNRESET: the server hung up mid-write, as it should
        s.on('close', () => resolvePromise({ data, closed: true }));
      }),
    );
    expect(answer.closed).toBe(true);
    if (answer.data.length > 0) expect(answer.data).toMatch(/^HTTP\/1\.1 400 Bad Request/);

    const http = await within(
      'plain GET answer',
      10_000,
      new Promise<string>((resolvePromise, reject) => {
        let data = '';
        const s = connect({ host: a.ip, port: TUNNEL_PORT }, () => s.write(`GET / HTTP/1.1\r\nHost: ${a.ip}\r\n\r\n`));
        s.on('data', (d: Buffer) => {
          data += d.toString('latin1');
          if (data.includes('\r\n\r\n') && data.includes('upgrade required')) s.destroy();
        });
        s.on('error', reject);
        s.on('close', () => resolvePromise(data));
      }),
    );
    expect(http).toMatch(/^HTTP\/1\.1 426 /);
    expect(http.toLowerCase()).toContain('upgrade: websocket');
    expect(http).toContain('WebSocket upgrade required');

    await expectStillServing('random bytes and a plain HTTP request');
  }, 40_000);

  it("a 70,000-byte WebSocket message on A's tunnel path is closed with 1009", async () => {
    const a = agent('a');
    const closed = await within(
      'close after an oversized message',
      10_000,
      new Promise<{ code: number; reason: string }>((resolvePromise, reject) => {
        const ws = new WebSocket(`${a.endpoint}/osmoda-mesh/v1`, { perMessageDeflate: false });
        ws.on('open', () => ws.send(randomBytes(70_000), { binary: true }));
        ws.on('error', () => undefined); // ws reports the peer's 1009 close as an error too on some versions
        ws.on('close', (code, reason) => resolvePromise({ code, reason: reason.toString('utf8') }));
        ws.on('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode} instead of an upgrade`)));
      }),
    );
    expect(closed.code).toBe(1009);
    await expectStillServing('an oversized WebSocket message');
  }, 30_000);

  it('a peer whose certificate another authority signed: handshake refused with 4002, A logs "peer rejected"', async () => {
    const a = agent('a');
    const rogueAuthority = Ed25519Private.generate();
    const rogue = { signing: Ed25519Private.generate(), noise: X25519Private.generate() };
    const cert = issueCert(rogueAuthority, {
      meshName: 'alpha',
      name: 'rogue',
      ed25519Public: rogue.signing.publicKey,
      x25519Public: rogue.noise.publicKey,
      tags: [],
      isAdmin: true,
      nowMs: Date.now(),
    });
    const ws = await within('rogue dial', 10_000, dialWebSocket(`${a.endpoint}/osmoda-mesh/v1`, 5_000));
    // attached before the handshake: the initiator finishes by sending message 3, so A's verdict
    // arrives as the close that follows
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString('utf8') })));
    ws.on('error', () => undefined);
    let seenResponderCert = false;
    let handshakeError: unknown;
    try {
      await within(
        'rogue handshake',
        10_000,
        performTunnelHandshake(true, {
          socket: new MessageSocket(ws),
          clock: systemClock,
          timeoutMs: 5_000,
          staticKey: rogue.noise,
          meshId: fromHex(meshIdHex),
          payload: encodeHandshakePayload({ cert, record: undefined }),
          verifyRemote: (payload) => {
            seenResponderCert = payload.length > 0;
            return payload;
          },
        }),
      );
    } catch (err) {
      handshakeError = err;
    }
    const verdict = await within('close from A after the rogue handshake', 10_000, closed);
    // the rogue got as far as A's message 2 (so prologue and mesh id were right) and was then refused
    expect(seenResponderCert).toBe(true);
    if (handshakeError !== undefined) expect(handshakeError).toBeInstanceOf(MeshError);
    expect(verdict.code).toBe(4002);
    expect(verdict.reason).toBe('untrusted-cert');

    const line = await pollUntil(
      'A logs the rejection',
      5_000,
      async () =>
        logLines(a).find((l) => typeof l['msg'] === 'string' && (l['msg'] as string).includes('peer rejected') && JSON.stringify(l).includes("'rogue'")),
      () => tail(a.logPath, 1500),
    );
    expect(line['code']).toBe('MESH_ERR_CERT_UNTRUSTED');
    expect(String(line['reason'])).toMatch(/certificate for 'rogue' is not signed by this mesh's authority/);
    expect((await status('a')).peers.map((p) => p.name)).not.toContain('rogue');
    await expectStillServing('a rogue peer');
  }, 40_000);
});
