import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { lstatSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { ErrorCodes, MeshError, type ErrorCode } from '../errors.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { createServer } from '../util/http.js';
import { isDnsLabel, parseHostPort, validateAccessRule } from '../config/index.js';
import {
  CONTROL_SCHEMA,
  type ControlHandlers,
  type ControlRoute,
  type ControlRoutes,
  type ErrorResponse,
  type ExposeRequest,
  type InitRequest,
  type JoinRequestBody,
  type PingRequest,
  type RevokeRequest,
  type TokenCreateRequest,
  type TokenRevokeRequest,
  type UnexposeRequest,
} from './protocol.js';

/**
 * The agent's control API server: HTTP/1.1 + JSON on a Unix socket (SPEC §2 control). It parses,
 * validates bodies, dispatches to `ControlHandlers` and maps MeshError codes to HTTP statuses; the
 * daemon owns all behaviour. Access control is the socket file's mode and group (there is no
 * SO_PEERCRED in Node), so the socket is chmod'ed right after listen.
 */

export const DEFAULT_SOCKET_MODE = 0o660;
/** Bodies are small JSON objects; anything larger is a mistake or an attack. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
/** How long close() waits for in-flight requests (a join can take a while) before cutting them. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;
/** sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;
const STALE_PROBE_TIMEOUT_MS = 1_000;

export interface ControlServerInit {
  socketPath: string;
  handlers: ControlHandlers;
  logger: Logger;
  /** File mode of the socket; default 0660 (owner and the osmoda-mesh group). */
  socketMode?: number;
  maxBodyBytes?: number;
  closeTimeoutMs?: number;
  clock?: Clock;
}

/** Maps a handler's MeshError code to the HTTP status of the answer. */
export function httpStatusForCode(code: string): number {
  switch (code) {
    case ErrorCodes.INVALID_ARGUMENT:
    case ErrorCodes.INVALID_CONFIG:
    case ErrorCodes.TOKEN_MALFORMED:
    case ErrorCodes.TOKEN_EXPIRED:
    case ErrorCodes.TOKEN_USED_UP:
    case ErrorCodes.TOKEN_UNKNOWN:
    case ErrorCodes.TOKEN_WRONG_MESH:
    case ErrorCodes.NAME_TAKEN:
      return 400;
    case ErrorCodes.NOT_ADMIN:
      return 403;
    case ErrorCodes.NOT_FOUND:
    case ErrorCodes.UNKNOWN_SERVICE:
      return 404;
    case ErrorCodes.ALREADY_JOINED:
    case ErrorCodes.NOT_JOINED:
      return 409;
    case ErrorCodes.AGENT_UNREACHABLE:
    case ErrorCodes.JOIN_FAILED:
      return 502;
    case ErrorCodes.NO_PROVIDER:
    case ErrorCodes.PEER_DOWN:
    case ErrorCodes.PING_TIMEOUT:
      return 503;
    default:
      return 500;
  }
}

/** A failure decided by the server itself (routing, limits), with an explicit status. */
class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Body validation: every message names the field, what it got and what it expected.

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return value.length > 40 ? `'${value.slice(0, 40)}…'` : `'${value}'`;
  const text = JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

function invalid(field: string, got: string, expected: string): never {
  throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field}: expected ${expected}, got ${got}`);
}

function requireObject(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    invalid('request body', Array.isArray(body) ? 'an array' : describe(body), 'a JSON object');
  }
  const obj = body as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    // A misspelt field must not be silently ignored (same rule as the config file).
    if (!allowed.includes(key)) invalid(key, 'an unknown field', `only ${allowed.join(', ')}`);
  }
  return obj;
}

function isAbsent(value: unknown): value is undefined | null {
  return value === undefined || value === null;
}

function dnsLabelField(obj: Record<string, unknown>, field: string): string {
  const value = obj[field];
  if (typeof value !== 'string' || !isDnsLabel(value)) {
    invalid(field, describe(value), 'a DNS label: 1-63 of a-z, 0-9 and -, not starting or ending with -');
  }
  return value;
}

function positiveIntegerField(obj: Record<string, unknown>, field: string): number | undefined {
  const value = obj[field];
  if (isAbsent(value)) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) invalid(field, describe(value), 'a positive integer');
  return value;
}

export function parseInitRequest(body: unknown): InitRequest {
  const obj = requireObject(body, ['mesh']);
  return { mesh: dnsLabelField(obj, 'mesh') };
}

/**
 * Longest token lifetime accepted (10 years). Without a bound, a ttlMs near 2^53 put the expiry
 * past what a Date can hold: the token was stored, then the answer and every later `token list`
 * failed with an internal error (found by test/fuzz/control.test.ts).
 */
export const MAX_TOKEN_TTL_MS = 3650 * 86_400_000;

export function parseTokenCreateRequest(body: unknown): TokenCreateRequest {
  const obj = requireObject(body, ['ttlMs', 'uses']);
  const request: TokenCreateRequest = {};
  const ttlMs = positiveIntegerField(obj, 'ttlMs');
  if (ttlMs !== undefined && ttlMs > MAX_TOKEN_TTL_MS) invalid('ttlMs', describe(ttlMs), `at most ${MAX_TOKEN_TTL_MS} (10 years)`);
  if (ttlMs !== undefined) request.ttlMs = ttlMs;
  const uses = positiveIntegerField(obj, 'uses');
  if (uses !== undefined) request.uses = uses;
  return request;
}

export function parseJoinRequest(body: unknown): JoinRequestBody {
  const obj = requireObject(body, ['token', 'name']);
  const token = obj['token'];
  // The token is a bearer secret: name its type, never echo its value.
  if (typeof token !== 'string') invalid('token', token === undefined ? 'nothing' : typeof token, 'a join token string');
  if (token.trim().length === 0) invalid('token', 'an empty string', 'a join token string');
  if (token.length > 8192) invalid('token', `${token.length} characters`, 'a join token of at most 8192 characters');
  const request: JoinRequestBody = { token };
  if (!isAbsent(obj['name'])) request.name = dnsLabelField(obj, 'name');
  return request;
}

export function parseExposeRequest(body: unknown): ExposeRequest {
  const obj = requireObject(body, ['name', 'port', 'target', 'allowFrom']);
  const name = dnsLabelField(obj, 'name');
  const port = obj['port'];
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) invalid('port', describe(port), 'an integer 1..65535');
  const request: ExposeRequest = { name, port };
  const target = obj['target'];
  if (!isAbsent(target)) {
    try {
      parseHostPort(target, 'target');
    } catch {
      invalid('target', describe(target), 'host:port, e.g. 127.0.0.1:5432');
    }
    request.target = target as string;
  }
  const allowFrom = obj['allowFrom'];
  if (!isAbsent(allowFrom)) {
    if (!Array.isArray(allowFrom) || allowFrom.length > 256) invalid('allowFrom', describe(allowFrom), 'a list of at most 256 node names or tag:<tag> entries');
    request.allowFrom = allowFrom.map((rule, i) => {
      try {
        return validateAccessRule(rule, `allowFrom[${i}]`);
      } catch {
        return invalid(`allowFrom[${i}]`, describe(rule), "a node name or 'tag:<tag>'");
      }
    });
  }
  return request;
}

export function parseUnexposeRequest(body: unknown): UnexposeRequest {
  const obj = requireObject(body, ['name']);
  return { name: dnsLabelField(obj, 'name') };
}

export function parseTokenRevokeRequest(body: unknown): TokenRevokeRequest {
  const obj = requireObject(body, ['tokenId']);
  const tokenId = obj['tokenId'];
  if (typeof tokenId !== 'string' || !/^[0-9a-f]{32}$/.test(tokenId)) invalid('tokenId', describe(tokenId), 'a token id: 32 hex digits (see `osmoda-mesh token list`)');
  return { tokenId };
}

export function parseRevokeRequest(body: unknown): RevokeRequest {
  const obj = requireObject(body, ['node']);
  return { node: dnsLabelField(obj, 'node') };
}

export function parsePingRequest(body: unknown): PingRequest {
  const obj = requireObject(body, ['node', 'count']);
  const request: PingRequest = { node: dnsLabelField(obj, 'node') };
  const count = positiveIntegerField(obj, 'count');
  if (count !== undefined) {
    if (count > 100) invalid('count', describe(count), 'at most 100');
    request.count = count;
  }
  return request;
}

export function parseResolveQuery(query: URLSearchParams): string {
  const name = query.get('name');
  if (name === null) invalid('name', 'nothing', 'a service name in the query (?name=db)');
  if (name.length === 0 || name.length > 253 || !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\.?$/.test(name)) {
    invalid('name', describe(name), 'a service name such as db or db.mesh');
  }
  return name;
}

// ---------------------------------------------------------------------------------------------

interface RouteInput {
  query: URLSearchParams;
  body: unknown;
}

type RouteTable = { [K in ControlRoute]: (input: RouteInput) => Promise<ControlRoutes[K]['response']> };

/** Typed against ControlRoutes, so a route added to the contract fails to compile until it is served. */
function buildRouteTable(h: ControlHandlers): RouteTable {
  return {
    'GET /v1/status': () => h.status(),
    'GET /v1/peers': () => h.peers(),
    'GET /v1/services': () => h.services(),
    'GET /v1/resolve': ({ query }) => h.resolve(parseResolveQuery(query)),
    'POST /v1/init': ({ body }) => h.init(parseInitRequest(body)),
    'POST /v1/tokens': ({ body }) => h.createToken(parseTokenCreateRequest(body)),
    'GET /v1/tokens': () => h.listTokens(),
    'POST /v1/tokens/revoke': ({ body }) => h.revokeToken(parseTokenRevokeRequest(body)),
    'POST /v1/ping': ({ body }) => h.ping(parsePingRequest(body)),
    'POST /v1/revoke': ({ body }) => h.revoke(parseRevokeRequest(body)),
    'POST /v1/join': ({ body }) => h.join(parseJoinRequest(body)),
    'POST /v1/expose': ({ body }) => h.expose(parseExposeRequest(body)),
    'POST /v1/unexpose': ({ body }) => h.unexpose(parseUnexposeRequest(body)),
  };
}

type RouteImpl = (input: RouteInput) => Promise<unknown>;

function isErrnoException(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string';
}

/** 'live' when something accepts connections on the socket, 'stale' when nothing does. */
function probeSocket(path: string, timeoutMs: number): Promise<'live' | 'stale'> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    const timer = setTimeout(() => {
      // A listener whose backlog is full is still a listener: do not steal its path.
      socket.destroy();
      resolve('live');
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('live');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve('stale');
      else reject(err);
    });
  });
}

type ServerState = 'idle' | 'starting' | 'listening' | 'closed';

export class ControlServer {
  readonly socketPath: string;
  private readonly handlers: ControlHandlers;
  private readonly logger: Logger;
  private readonly socketMode: number;
  private readonly maxBodyBytes: number;
  private readonly closeTimeoutMs: number;
  private readonly clock: Clock;
  private readonly routes: Map<string, Map<string, RouteImpl>>;
  private server: Server | null = null;
  private state: ServerState = 'idle';
  private socketIno: number | null = null;
  private closing: Promise<void> | null = null;

  constructor(init: ControlServerInit) {
    this.socketPath = init.socketPath;
    this.handlers = init.handlers;
    this.logger = init.logger;
    this.socketMode = init.socketMode ?? DEFAULT_SOCKET_MODE;
    this.maxBodyBytes = init.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.closeTimeoutMs = init.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this.clock = init.clock ?? systemClock;
    if (typeof this.socketPath !== 'string' || this.socketPath.length === 0) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `control socket path: expected a file path, got ${describe(this.socketPath)}`);
    }
    if (Buffer.byteLength(this.socketPath) > MAX_SOCKET_PATH_BYTES) {
      throw new MeshError(
        ErrorCodes.INVALID_CONFIG,
        `control socket path: expected at most ${MAX_SOCKET_PATH_BYTES} bytes (a Unix socket limit), got ${Buffer.byteLength(this.socketPath)} bytes in '${this.socketPath}'`,
      );
    }
    this.routes = new Map();
    const table = buildRouteTable(this.handlers) as Record<string, RouteImpl>;
    for (const [key, impl] of Object.entries(table)) {
      const [method, path] = key.split(' ') as [string, string];
      let byMethod = this.routes.get(path);
      if (!byMethod) {
        byMethod = new Map();
        this.routes.set(path, byMethod);
      }
      byMethod.set(method, impl);
    }
  }

  get isListening(): boolean {
    return this.state === 'listening';
  }

  async start(): Promise<void> {
    if (this.state !== 'idle') throw new MeshError(ErrorCodes.INTERNAL, `control server on ${this.socketPath}: start() called twice or after close()`);
    this.state = 'starting';
    try {
      await this.prepareSocketPath();
      const server = createServer((req, res) => {
        void this.handle(req, res);
      });
      // The request must arrive promptly; the answer may take long (a join dials another node).
      server.headersTimeout = 10_000;
      server.requestTimeout = 30_000;
      this.server = server;
      await new Promise<void>((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException): void => {
          if (err.code === 'EADDRINUSE') {
            reject(new MeshError(ErrorCodes.PORT_IN_USE, `another agent is already running on ${this.socketPath}`, { cause: err }));
          } else {
            reject(new MeshError(ErrorCodes.STATE_DIR, `control socket ${this.socketPath}: cannot listen: ${err.message}`, { cause: err }));
          }
        };
        server.once('error', onError);
        server.listen(this.socketPath, () => {
          server.off('error', onError);
          resolve();
        });
      });
      server.on('error', (err) => this.logger.error({ err }, 'control server error'));
      await chmod(this.socketPath, this.socketMode);
      this.socketIno = (await lstat(this.socketPath)).ino;
      if (this.state !== 'starting') return; // destroyed while starting: close() below already ran
      this.state = 'listening';
      this.logger.info({ socket: this.socketPath, mode: this.socketMode.toString(8) }, 'control socket listening');
    } catch (err) {
      const server = this.server;
      this.server = null;
      this.state = 'closed';
      if (server?.listening) {
        server.close();
        this.removeSocketFile();
      }
      throw err;
    }
  }

  /** Stops accepting, lets in-flight requests finish (up to closeTimeoutMs), removes the socket file. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const server = this.server;
    this.state = 'closed';
    if (!server || !server.listening) {
      this.closing = Promise.resolve();
      return this.closing;
    }
    this.closing = new Promise<void>((resolve) => {
      let timer: TimerHandle | null = this.clock.setTimeout(() => {
        timer = null;
        server.closeAllConnections();
      }, this.closeTimeoutMs);
      server.close(() => {
        if (timer) this.clock.clearTimeout(timer);
        this.removeSocketFile();
        this.logger.info({ socket: this.socketPath }, 'control socket closed');
        resolve();
      });
      server.closeIdleConnections();
    });
    return this.closing;
  }

  /** Cuts every connection at once and removes the socket file before returning. */
  destroy(err?: Error): void {
    if (err) this.logger.warn({ err }, 'control server destroyed');
    const server = this.server;
    void this.close();
    server?.closeAllConnections();
    this.removeSocketFile();
  }

  private removeSocketFile(): void {
    if (this.socketIno === null) return;
    try {
      // Only our own socket: another agent may have taken the path since (after a failed start).
      const st = lstatSync(this.socketPath);
      if (st.isSocket() && st.ino === this.socketIno) unlinkSync(this.socketPath);
    } catch (err) {
      if (!isErrnoException(err) || err.code !== 'ENOENT') this.logger.warn({ err, socket: this.socketPath }, 'cannot remove control socket');
    }
    this.socketIno = null;
  }

  private async prepareSocketPath(): Promise<void> {
    const path = this.socketPath;
    // mkdir's mode is masked by the umask (0077 under the NixOS unit): set it outright on a
    // directory created here, so group members can reach the 0660 socket inside
    const created = await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    if (created !== undefined) await chmod(dirname(path), 0o755);
    let st;
    try {
      st = await lstat(path);
    } catch (err) {
      if (isErrnoException(err) && err.code === 'ENOENT') return;
      throw new MeshError(ErrorCodes.STATE_DIR, `control socket ${path}: cannot inspect: ${(err as Error).message}`, { cause: err });
    }
    if (!st.isSocket()) {
      throw new MeshError(ErrorCodes.INVALID_CONFIG, `control socket ${path}: exists and is not a socket (move it away or choose another path with --control)`);
    }
    let probe: 'live' | 'stale';
    try {
      probe = await probeSocket(path, STALE_PROBE_TIMEOUT_MS);
    } catch (err) {
      throw new MeshError(ErrorCodes.STATE_DIR, `control socket ${path}: cannot tell whether another agent uses it: ${(err as Error).message}`, { cause: err });
    }
    if (probe === 'live') throw new MeshError(ErrorCodes.PORT_IN_USE, `another agent is already running on ${path}`);
    this.logger.info({ socket: path }, 'removing stale control socket');
    try {
      await unlink(path);
    } catch (err) {
      if (!isErrnoException(err) || err.code !== 'ENOENT') throw new MeshError(ErrorCodes.STATE_DIR, `control socket ${path}: cannot remove stale socket: ${(err as Error).message}`, { cause: err });
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedMs = this.clock.monotonicMs();
    const method = req.method ?? 'GET';
    let path = '?';
    let status: number;
    let code: string | null = null;
    try {
      // A browser page must never drive the agent (DNS rebinding, local proxies): tailscale's
      // localapi refuses the same headers. The CLI never sends them.
      if (req.headers.origin !== undefined || req.headers.referer !== undefined) {
        throw new HttpFailure(403, ErrorCodes.INVALID_ARGUMENT, 'requests carrying an Origin or Referer header are refused: the control API is not for browsers');
      }
      const url = new URL(req.url ?? '/', 'http://localhost');
      path = url.pathname;
      const byMethod = this.routes.get(path);
      if (!byMethod) throw new HttpFailure(404, ErrorCodes.NOT_FOUND, `no such control route: ${method} ${path.slice(0, 100)}`);
      const impl = byMethod.get(method);
      if (!impl) {
        const allowed = [...byMethod.keys()].join(', ');
        throw new HttpFailure(405, ErrorCodes.INVALID_ARGUMENT, `${path}: method ${method.slice(0, 10)} not allowed (use ${allowed})`, { allow: allowed });
      }
      let body: unknown = undefined;
      if (method === 'POST') body = parseJsonBody(await this.readBody(req));
      const answer = await impl({ query: url.searchParams, body });
      status = 200;
      sendJson(res, status, answer);
    } catch (err) {
      const failure = this.toFailure(err, method, path);
      status = failure.status;
      code = failure.code;
      const body: ErrorResponse = { schema: CONTROL_SCHEMA, code: failure.code, message: failure.message };
      sendJson(res, failure.status, body, failure.headers);
    }
    // Never the body or the query values: they may hold a join token.
    this.logger.debug({ method, path, status, code, durationMs: Math.round(this.clock.monotonicMs() - startedMs) }, 'control request');
  }

  private toFailure(err: unknown, method: string, path: string): HttpFailure {
    if (err instanceof HttpFailure) return err;
    if (err instanceof MeshError) return new HttpFailure(httpStatusForCode(err.code), err.code, err.message);
    this.logger.error({ err, method, path }, 'control handler failed');
    return new HttpFailure(500, ErrorCodes.INTERNAL, 'internal error in the agent (details are in its log)');
  }

  private readBody(req: IncomingMessage): Promise<Buffer> {
    const limit = this.maxBodyBytes;
    const tooLarge = (): HttpFailure =>
      new HttpFailure(413, ErrorCodes.INVALID_ARGUMENT, `request body: expected at most ${limit} bytes`, { connection: 'close' });
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      req.resume();
      return Promise.reject(tooLarge());
    }
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let done = false;
      req.on('data', (chunk: Buffer) => {
        if (done) return;
        size += chunk.length;
        if (size > limit) {
          done = true;
          chunks.length = 0;
          reject(tooLarge());
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => {
        if (done) return;
        done = true;
        resolve(Buffer.concat(chunks));
      });
      req.on('error', (err) => {
        if (done) return;
        done = true;
        reject(err);
      });
    });
  }
}

/**
 * The raw bytes of a POST body as JSON; a body that is not JSON is INVALID_ARGUMENT (400). Pure, so
 * the fuzz tests can drive it with the route parsers below (test/fuzz/control.test.ts).
 */
export function parseJsonBody(raw: Uint8Array): unknown {
  // An empty POST body means "no fields" (e.g. `token create` with all defaults).
  if (raw.length === 0) return {};
  try {
    return JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8')) as unknown;
  } catch (err) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `request body: expected JSON, got a parse error: ${(err as Error).message.slice(0, 200)}`, { cause: err });
  }
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}
