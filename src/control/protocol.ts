/**
 * The control API contract (HTTP/1.1 + JSON on a Unix socket, versioned under /v1). Every answer
 * carries `schema: 1`; errors are `{ schema, code, message }` with an HTTP status >= 400. Scripts
 * rely on these shapes: add fields, never rename or remove them.
 */

export const CONTROL_SCHEMA = 1;
export const DEFAULT_CONTROL_SOCKET = '/run/osmoda-mesh/control.sock';
export const CONTROL_SOCKET_ENV = 'OSMODA_MESH_CONTROL';

export type PeerState = 'up' | 'down' | 'connecting';

export interface NodeView {
  name: string | null;
  nodeId: string | null;
  mesh: string | null;
  meshId: string | null;
  isAdmin: boolean;
  isJoined: boolean;
  endpoints: string[];
  listen: string;
  dns: string | null;
  certExpiresAt: string | null;
  /** Set when the certificate expires within 30 days and cannot be renewed (SPEC §3). */
  certWarning: string | null;
  /** Names of the nodes on the mesh's revocation list. */
  revoked: string[];
  version: string;
}

export interface PeerView {
  name: string;
  nodeId: string;
  state: PeerState;
  /** e.g. "direct ws://10.0.0.2:18800/osmoda-mesh/v1 (dialled)" or null when not connected. */
  path: string | null;
  lastHeartbeatAgeMs: number | null;
  rttMs: number | null;
  rxBytes: number;
  txBytes: number;
  streams: number;
  /** Sum of this peer's stream windows and queued bytes (bounded buffering, STYLE). */
  bufferedBytes: number;
  /** Key rotations on the current tunnel, both directions. */
  rekeys: number;
  services: string[];
  lastError: string | null;
}

export interface ProviderView {
  node: string;
  state: PeerState | 'local';
}

export interface ServiceView {
  name: string;
  vip: string;
  ports: number[];
  providers: ProviderView[];
  /** Set on the node that exposes it: the ports and, in the same order, the targets it dials ("127.0.0.1:5432"). */
  local: { ports: number[]; target: string; allowFrom: string[] | null } | null;
  /** Problems on this node, e.g. "port 8080 on 127.77.3.4 in use by another process". */
  problems: string[];
}

export interface StatusResponse {
  schema: 1;
  node: NodeView;
  peers: PeerView[];
  services: ServiceView[];
}

export interface PeersResponse {
  schema: 1;
  peers: PeerView[];
}

export interface ServicesResponse {
  schema: 1;
  services: ServiceView[];
}

export interface InitRequest {
  mesh: string;
}

export interface InitResponse {
  schema: 1;
  mesh: string;
  meshId: string;
  node: string;
}

export interface TokenCreateRequest {
  ttlMs?: number;
  uses?: number;
}

export interface TokenCreateResponse {
  schema: 1;
  token: string;
  tokenId: string;
  expiresAt: string;
  uses: number;
}

export interface TokenView {
  tokenId: string;
  expiresAt: string;
  usesLeft: number;
  isExpired: boolean;
}

export interface TokenListResponse {
  schema: 1;
  tokens: TokenView[];
}

export interface TokenRevokeRequest {
  tokenId: string;
}

export interface TokenRevokeResponse {
  schema: 1;
  tokenId: string;
  wasKnown: boolean;
}

export interface PingRequest {
  node: string;
  count?: number;
}

export interface RevokeRequest {
  /** Name of the member to revoke. */
  node: string;
}

export interface RevokeResponse {
  schema: 1;
  node: string;
  nodeId: string;
  /** Nodes on the revocation list now, this one included. */
  revokedCount: number;
}

export interface PingResponse {
  schema: 1;
  node: string;
  /** Round trips through the encrypted tunnel, in milliseconds, one per ping. */
  rttMs: number[];
}

export interface JoinRequestBody {
  token: string;
  name?: string;
}

export interface JoinResponseBody {
  schema: 1;
  mesh: string;
  node: string;
  /** True when this node was already a member: joining again is a no-op (SPEC §3). */
  wasAlreadyJoined: boolean;
}

export interface ExposeRequest {
  name: string;
  port: number;
  /** "host:port" the provider dials; default 127.0.0.1:<port>. */
  target?: string;
  /** Node names and `tag:<tag>` entries allowed to reach it; absent: every member. */
  allowFrom?: string[];
}

export interface ExposeResponse {
  schema: 1;
  service: ServiceView;
}

export interface UnexposeRequest {
  name: string;
}

export interface UnexposeResponse {
  schema: 1;
  name: string;
  wasExposed: boolean;
}

export interface ResolveResponse {
  schema: 1;
  name: string;
  /** What the mesh DNS answers for this name on this node. */
  addresses: string[];
  service: ServiceView;
}

export interface ErrorResponse {
  schema: 1;
  code: string;
  message: string;
}

/** Route table: method + path → request and response body types. */
export interface ControlRoutes {
  'GET /v1/status': { request: undefined; response: StatusResponse };
  'GET /v1/peers': { request: undefined; response: PeersResponse };
  'GET /v1/services': { request: undefined; response: ServicesResponse };
  'GET /v1/resolve': { request: { name: string }; response: ResolveResponse };
  'POST /v1/init': { request: InitRequest; response: InitResponse };
  'POST /v1/tokens': { request: TokenCreateRequest; response: TokenCreateResponse };
  'GET /v1/tokens': { request: undefined; response: TokenListResponse };
  'POST /v1/tokens/revoke': { request: TokenRevokeRequest; response: TokenRevokeResponse };
  'POST /v1/ping': { request: PingRequest; response: PingResponse };
  'POST /v1/revoke': { request: RevokeRequest; response: RevokeResponse };
  'POST /v1/join': { request: JoinRequestBody; response: JoinResponseBody };
  'POST /v1/expose': { request: ExposeRequest; response: ExposeResponse };
  'POST /v1/unexpose': { request: UnexposeRequest; response: UnexposeResponse };
}

export type ControlRoute = keyof ControlRoutes;

/**
 * What the daemon implements; the control server only parses, validates bodies, dispatches and
 * maps MeshError codes to HTTP statuses. Handlers throw MeshError for failures.
 */
export interface ControlHandlers {
  status(): Promise<StatusResponse>;
  peers(): Promise<PeersResponse>;
  services(): Promise<ServicesResponse>;
  resolve(name: string): Promise<ResolveResponse>;
  init(request: InitRequest): Promise<InitResponse>;
  createToken(request: TokenCreateRequest): Promise<TokenCreateResponse>;
  listTokens(): Promise<TokenListResponse>;
  revokeToken(request: TokenRevokeRequest): Promise<TokenRevokeResponse>;
  ping(request: PingRequest): Promise<PingResponse>;
  revoke(request: RevokeRequest): Promise<RevokeResponse>;
  join(request: JoinRequestBody): Promise<JoinResponseBody>;
  expose(request: ExposeRequest): Promise<ExposeResponse>;
  unexpose(request: UnexposeRequest): Promise<UnexposeResponse>;
}
