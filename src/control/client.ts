import type { IncomingMessage } from 'node:http';
import { ErrorCodes, MeshError, type ErrorCode } from '../errors.js';
import { request as httpRequest } from '../util/http.js';
import {
  CONTROL_SCHEMA,
  type ControlRoute,
  type ControlRoutes,
  type ExposeRequest,
  type ExposeResponse,
  type InitRequest,
  type InitResponse,
  type JoinRequestBody,
  type JoinResponseBody,
  type PeersResponse,
  type PingRequest,
  type RevokeRequest,
  type RevokeResponse,
  type PingResponse,
  type TokenListResponse,
  type TokenRevokeRequest,
  type TokenRevokeResponse,
  type ResolveResponse,
  type ServicesResponse,
  type StatusResponse,
  type TokenCreateRequest,
  type TokenCreateResponse,
  type UnexposeRequest,
  type UnexposeResponse,
} from './protocol.js';

/** Typed client of the control API (the CLI is a thin layer over it). */

export const DEFAULT_CLIENT_TIMEOUT_MS = 10_000;
/** A join dials the issuer, runs a handshake and waits for a durable token use: allow longer. */
export const DEFAULT_JOIN_TIMEOUT_MS = 60_000;
/** status of a large mesh is the biggest answer; this is far above it and still bounded. */
export const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

export interface ControlClientInit {
  socketPath: string;
  timeoutMs?: number;
  joinTimeoutMs?: number;
  maxResponseBytes?: number;
}

const START_HINT =
  'is the agent running? start it with `osmoda-mesh agent` or `systemctl start osmoda-mesh`; ' +
  'if it listens elsewhere, set --control or OSMODA_MESH_CONTROL';

/** Turns a connection failure into AGENT_UNREACHABLE with a message naming the socket and the fix. */
export function unreachableError(socketPath: string, err: NodeJS.ErrnoException): MeshError {
  let message: string;
  switch (err.code) {
    case 'ENOENT':
    case 'ENOTDIR':
      message = `cannot reach the agent: no control socket at ${socketPath} (${START_HINT})`;
      break;
    case 'ECONNREFUSED':
      message = `cannot reach the agent: nothing answers on ${socketPath} (${START_HINT})`;
      break;
    case 'EACCES':
    case 'EPERM':
      message =
        `cannot reach the agent: permission denied on ${socketPath} ` +
        '(add your user to the osmoda-mesh group and log in again, or run as root)';
      break;
    case 'ENOTSOCK':
      message = `cannot reach the agent: ${socketPath} is not a socket (set --control or OSMODA_MESH_CONTROL to the agent's control socket)`;
      break;
    default:
      message = `cannot reach the agent on ${socketPath}: ${err.message} (${START_HINT})`;
  }
  return new MeshError(ErrorCodes.AGENT_UNREACHABLE, message, { cause: err });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class ControlClient {
  readonly socketPath: string;
  private readonly timeoutMs: number;
  private readonly joinTimeoutMs: number;
  private readonly maxResponseBytes: number;

  constructor(init: ControlClientInit) {
    this.socketPath = init.socketPath;
    this.timeoutMs = init.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS;
    this.joinTimeoutMs = init.joinTimeoutMs ?? DEFAULT_JOIN_TIMEOUT_MS;
    this.maxResponseBytes = init.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  }

  status(): Promise<StatusResponse> {
    return this.call('GET /v1/status');
  }

  peers(): Promise<PeersResponse> {
    return this.call('GET /v1/peers');
  }

  services(): Promise<ServicesResponse> {
    return this.call('GET /v1/services');
  }

  resolve(name: string): Promise<ResolveResponse> {
    return this.call('GET /v1/resolve', undefined, { name });
  }

  init(request: InitRequest): Promise<InitResponse> {
    return this.call('POST /v1/init', request);
  }

  createToken(request: TokenCreateRequest = {}): Promise<TokenCreateResponse> {
    return this.call('POST /v1/tokens', request);
  }

  listTokens(): Promise<TokenListResponse> {
    return this.call('GET /v1/tokens');
  }

  revokeToken(request: TokenRevokeRequest): Promise<TokenRevokeResponse> {
    return this.call('POST /v1/tokens/revoke', request);
  }

  /** Pings go out one per second: allow for all of them plus the last one's timeout. */
  ping(request: PingRequest): Promise<PingResponse> {
    return this.call('POST /v1/ping', request, undefined, this.timeoutMs + (request.count ?? 1) * 1000);
  }

  revoke(request: RevokeRequest): Promise<RevokeResponse> {
    return this.call('POST /v1/revoke', request);
  }

  join(request: JoinRequestBody): Promise<JoinResponseBody> {
    return this.call('POST /v1/join', request, undefined, this.joinTimeoutMs);
  }

  expose(request: ExposeRequest): Promise<ExposeResponse> {
    return this.call('POST /v1/expose', request);
  }

  unexpose(request: UnexposeRequest): Promise<UnexposeResponse> {
    return this.call('POST /v1/unexpose', request);
  }

  private async call<K extends ControlRoute>(
    route: K,
    body?: ControlRoutes[K]['request'],
    query?: Record<string, string>,
    timeoutMs = this.timeoutMs,
  ): Promise<ControlRoutes[K]['response']> {
    const [method, pathname] = route.split(' ') as [string, string];
    const path = query === undefined ? pathname : `${pathname}?${new URLSearchParams(query).toString()}`;
    const { status, text } = await this.send(method, path, body === undefined ? undefined : JSON.stringify(body), timeoutMs);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!isRecord(parsed) || parsed['schema'] !== CONTROL_SCHEMA) {
      throw new MeshError(
        ErrorCodes.AGENT_UNREACHABLE,
        `${this.socketPath} answered ${method} ${pathname} with HTTP ${status} and no schema ${CONTROL_SCHEMA} JSON body: is --control pointing at an osmoda-mesh agent of a matching version?`,
      );
    }
    if (status >= 400) {
      const code = typeof parsed['code'] === 'string' ? (parsed['code'] as ErrorCode) : ErrorCodes.INTERNAL;
      const message = typeof parsed['message'] === 'string' ? parsed['message'] : `the agent answered HTTP ${status}`;
      throw new MeshError(code, message);
    }
    return parsed as unknown as ControlRoutes[K]['response'];
  }

  private send(method: string, path: string, payload: string | undefined, timeoutMs: number): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err: Error | null, value?: { status: number; text: string }): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(value!);
      };
      const headers: Record<string, string> = { accept: 'application/json' };
      if (payload !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(Buffer.byteLength(payload));
      }
      // agent: false: one connection per call, nothing pooled that would keep the CLI alive.
      const req = httpRequest({ socketPath: this.socketPath, method, path, headers, agent: false });
      const timer = setTimeout(() => {
        settle(
          new MeshError(
            ErrorCodes.AGENT_UNREACHABLE,
            `the agent on ${this.socketPath} did not answer ${method} ${path.split('?')[0]} within ${Math.round(timeoutMs / 1000)} s ` +
              '(it may be stuck or overloaded; check its log, e.g. `journalctl -u osmoda-mesh`)',
          ),
        );
        req.destroy();
      }, timeoutMs);
      timer.unref();
      req.on('error', (err: NodeJS.ErrnoException) => settle(unreachableError(this.socketPath, err)));
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > this.maxResponseBytes) {
            settle(new MeshError(ErrorCodes.AGENT_UNREACHABLE, `the agent on ${this.socketPath} sent an answer larger than ${this.maxResponseBytes} bytes`));
            req.destroy();
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => settle(null, { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err: NodeJS.ErrnoException) => settle(unreachableError(this.socketPath, err)));
      });
      req.end(payload);
    });
  }
}
