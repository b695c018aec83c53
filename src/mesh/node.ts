import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type WebSocket from 'ws';
import { Ed25519Private } from '../crypto/keys/index.js';
import { ErrorCodes, MeshError, toMeshError } from '../errors.js';
import type { MuxConfig, MuxStream, StreamOpenInfo } from '../mux/index.js';
import { CloseCodes, closeWs, type TunnelConfig } from '../tunnel/index.js';
import { fromBase64Url, fromHex, toBase64Url, toHex } from '../util/bytes.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import type { Random } from '../util/random.js';
import type { NodeRecordWire, ServiceDecl } from '../wire/index.js';
import { issueCert, meshIdOf, verifyCert, type VerifiedCert } from './certs.js';
import { loadOrCreateIdentity, type NodeIdentity } from './identity.js';
import { joinMesh, serveJoin } from './join.js';
import { Membership, signRecord, type Member } from './membership.js';
import { MeshMetrics } from './metrics.js';
import { PeerManager, type PeerIdentity, type PeerState } from './peers.js';
import { ensureStateDir, readJsonFile, writeJsonFile } from './state-files.js';
import { TokenStore, createToken, parseToken } from './tokens.js';
import { signRevocations, verifyRevocations, type VerifiedRevocations } from './revocations.js';

/**
 * This node's membership in a mesh: identity, certificate, authority (on admins), tokens,
 * membership and the peer tunnels. The daemon wires it to names, forward and control.
 */

export const MESH_FILE = 'mesh.json';
export const AUTHORITY_FILE = 'authority.key';
export const MEMBERS_FILE = 'members.json';
export const REVOCATIONS_FILE = 'revocations.json';

/** Renew a certificate when less than this is left (a third of the default one-year lifetime). */
export const DEFAULT_CERT_RENEW_BEFORE_MS = 120 * 24 * 3600 * 1000;
/** `status` warns when this little is left: renewal has been failing for months by then. */
export const CERT_WARN_BEFORE_MS = 30 * 24 * 3600 * 1000;
const DEFAULT_CERT_RENEW_CHECK_MS = 3600 * 1000;

interface MeshFile {
  version: 1;
  meshName: string;
  authorityPublic: string;
  cert: string;
}

export interface MeshNodeInit {
  stateDir: string;
  nodeName: string;
  publicEndpoints: string[];
  tags: string[];
  clock: Clock;
  random: Random;
  logger: Logger;
  tunnelConfig: TunnelConfig;
  muxConfig?: Partial<MuxConfig>;
  onStream(stream: MuxStream, open: StreamOpenInfo, peer: PeerIdentity): void;
  /** Certificate lifetime, renewal window and check period; tests shorten them. */
  certLifetimeMs?: number;
  certRenewBeforeMs?: number;
  certRenewCheckMs?: number;
  /** Membership, a service list or a peer's state changed: names and forward recompute. */
  onChange(): void;
}

interface Joined {
  meshName: string;
  meshId: Uint8Array;
  authorityPublic: Uint8Array;
  certBytes: Uint8Array;
  cert: VerifiedCert;
  authority: Ed25519Private | undefined;
  membership: Membership;
  peers: PeerManager;
  tokens: TokenStore | undefined;
  revocations: VerifiedRevocations | undefined;
}

export interface Provider {
  nodeIdHex: string;
  name: string;
  ports: number[];
  isLocal: boolean;
  state: PeerState | 'local';
}

export class MeshNode {
  readonly #init: MeshNodeInit;
  readonly identity: NodeIdentity;
  readonly metrics = new MeshMetrics();
  #joined: Joined | undefined;
  #services: ServiceDecl[] = [];
  #seq = 0;
  #ownRecord: NodeRecordWire | undefined;
  #pendingJoinHandshakes = 0;
  #isClosed = false;
  #renewTimer: TimerHandle | undefined;

  constructor(init: MeshNodeInit) {
    this.#init = init;
    ensureStateDir(init.stateDir);
    this.identity = loadOrCreateIdentity(init.stateDir);
    const stored = readJsonFile<MeshFile>(join(init.stateDir, MESH_FILE), true);
    if (stored !== undefined) this.#restore(stored);
  }

  #restore(stored: MeshFile): void {
    const path = join(this.#init.stateDir, MESH_FILE);
    const certBytes = fromBase64Url(stored.cert);
    if (certBytes === undefined) throw new MeshError(ErrorCodes.STATE_DIR, `${path}: certificate is not base64url`);
    const authorityPublic = fromHex(stored.authorityPublic);
    let cert: VerifiedCert;
    try {
      // expiry is checked against "now" so an expired node says so instead of silently failing to connect
      cert = verifyCert(certBytes, { authorityPublic, nowMs: this.#init.clock.now(), expectedX25519: this.identity.noise.publicKey });
    } catch (err) {
      throw new MeshError(ErrorCodes.STATE_DIR, `${path}: ${(err as Error).message}`, { cause: err });
    }
    const authorityFile = readJsonFile<{ ed25519Private: string }>(join(this.#init.stateDir, AUTHORITY_FILE), true);
    const authority = authorityFile ? Ed25519Private.fromPrivate(fromHex(authorityFile.ed25519Private)) : undefined;
    this.#setJoined(stored.meshName, authorityPublic, certBytes, cert, authority);
    this.#loadRevocations();
    const membership = this.#joined!.membership;
    const fresh = this.#record();
    const skipped = membership.load(readJsonFile(join(this.#init.stateDir, MEMBERS_FILE), false), this.#init.clock.now());
    if (skipped > 0) this.#init.logger.warn({ skipped }, 'stored member records no longer verify; skipped');
    // the stored copy of our own record may carry a higher sequence than the clock gives now
    const storedOwn = membership.get(this.identity.nodeIdHex);
    if (storedOwn !== undefined && storedOwn.wire !== fresh) this.#outrank(storedOwn.seq);
  }

  #setJoined(meshName: string, authorityPublic: Uint8Array, certBytes: Uint8Array, cert: VerifiedCert, authority: Ed25519Private | undefined): void {
    const membership = new Membership(authorityPublic, this.identity.nodeIdHex);
    const meshId = meshIdOf(authorityPublic);
    const peers = new PeerManager({
      identity: this.identity,
      meshId,
      authorityPublic,
      ownCert: () => this.#joined!.certBytes,
      ownRecord: () => this.#record(),
      membership,
      clock: this.#init.clock,
      random: this.#init.random,
      logger: this.#init.logger,
      tunnelConfig: this.#init.tunnelConfig,
      ...(this.#init.muxConfig ? { muxConfig: this.#init.muxConfig } : {}),
      metrics: this.metrics,
      onStream: this.#init.onStream,
      onMembershipChange: () => {
        this.#saveMembers();
        this.#init.onChange();
      },
      onPeerStateChange: () => this.#init.onChange(),
      onOwnRecordEcho: (seq) => this.#outrank(seq),
      isRevoked: (nodeIdHex) => this.#joined?.revocations?.ids.has(nodeIdHex) ?? false,
      revocations: () => this.#joined?.revocations?.bytes,
      onRevocations: (bytes, fromPeer) => this.#applyRevocations(bytes, fromPeer),
      onRenewal: (cert, fromPeer) => this.#adoptRenewal(cert, fromPeer),
    });
    this.#joined = {
      meshName,
      meshId,
      authorityPublic,
      certBytes,
      cert,
      authority,
      membership,
      peers,
      tokens: authority ? new TokenStore(this.#init.stateDir) : undefined,
      revocations: undefined,
    };
    this.#ownRecord = undefined;
    membership.apply(this.#record(), this.#init.clock.now(), true);
  }

  /** Signs our record afresh (higher sequence), stores it and sends it to every connected peer. */
  #republishRecord(joined: Joined): void {
    this.#ownRecord = undefined;
    const record = this.#record();
    joined.membership.apply(record, this.#init.clock.now(), true);
    this.#saveMembers();
    joined.peers.broadcast(record);
  }

  /** Re-signs our record above `seq` and tells every peer, if `seq` is not already below ours. */
  #outrank(seq: number): void {
    const joined = this.#joined;
    if (joined === undefined || seq < this.#seq) return;
    this.#seq = seq;
    this.#republishRecord(joined);
    this.#init.logger.info({ seq: this.#seq }, 'a peer held a newer copy of our record: re-signed ours above it');
  }

  /** Starts dialling members and the certificate renewal checks; call once the tunnel server listens. */
  start(): void {
    this.#joined?.peers.sync();
    this.#scheduleRenewCheck();
  }

  // ---- revocation ---------------------------------------------------------------------------

  #loadRevocations(): void {
    const joined = this.#joined!;
    const path = join(this.#init.stateDir, REVOCATIONS_FILE);
    const stored = readJsonFile<{ list?: string }>(path, false);
    if (stored?.list === undefined) return;
    const bytes = fromBase64Url(stored.list);
    try {
      if (bytes === undefined) throw new MeshError(ErrorCodes.STATE_DIR, 'not base64url');
      this.#useRevocations(verifyRevocations(bytes, joined.authorityPublic));
    } catch (err) {
      // refusing to start would lock the node out; a peer sends the list again at the next tunnel
      this.#init.logger.error({ file: path, err: toMeshError(err).message }, 'stored revocation list unusable; waiting for a peer to send it');
    }
  }

  #useRevocations(list: VerifiedRevocations): Member[] {
    const joined = this.#joined!;
    joined.revocations = list;
    const removed = joined.membership.setRevoked(list.ids);
    for (const id of list.ids) joined.peers.cut(id, 'node revoked');
    if (list.ids.has(this.identity.nodeIdHex)) {
      this.#init.logger.error('this node was revoked from the mesh: peers refuse its tunnels (a new identity needs a new token)');
    }
    return removed;
  }

  /** A list from a peer (or our own revoke): applied when newer, then flooded on. */
  #applyRevocations(bytes: Uint8Array, fromPeer: string | undefined): void {
    const joined = this.#joined;
    if (joined === undefined) return;
    let list: VerifiedRevocations;
    try {
      list = verifyRevocations(bytes, joined.authorityPublic);
    } catch (err) {
      const error = toMeshError(err);
      this.metrics.count('record_rejected_total', error.code);
      this.#init.logger.warn({ code: error.code, err: error.message }, 'revocation list rejected');
      return;
    }
    if (joined.revocations !== undefined && list.seq <= joined.revocations.seq) return; // known: the flood stops here
    writeJsonFile(join(this.#init.stateDir, REVOCATIONS_FILE), { version: 1, list: toBase64Url(list.bytes) });
    const removed = this.#useRevocations(list);
    for (const member of removed) this.#init.logger.warn({ peer: member.name, nodeId: member.nodeIdHex }, 'member revoked: tunnel cut, services dropped');
    this.metrics.count('revocations_applied_total', 'ok');
    joined.peers.floodRevocations(list.bytes, fromPeer);
    this.#saveMembers();
    this.#init.onChange();
  }

  /** `revoke NODE` (admin only): adds the node to the signed list and spreads it. */
  revoke(name: string): { name: string; nodeIdHex: string; revokedCount: number } {
    const joined = this.#requireJoined();
    if (joined.authority === undefined) {
      throw new MeshError(ErrorCodes.NOT_ADMIN, 'only an admin node (one that holds the mesh authority key, i.e. ran `osmoda-mesh init`) can revoke nodes');
    }
    const member = joined.membership.byName(name);
    if (member === undefined) throw new MeshError(ErrorCodes.NOT_FOUND, `no member named '${name}' (see \`osmoda-mesh peers\`)`);
    if (member.nodeIdHex === this.identity.nodeIdHex) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `'${name}' is this node; revoke it from another admin node`);
    const previous = joined.revocations?.nodes ?? [];
    const nodes = [...previous, { nodeId: member.cert.nodeId, name: member.name, revokedAtMs: this.#init.clock.now() }];
    const seq = Math.max((joined.revocations?.seq ?? 0) + 1, this.#init.clock.now());
    this.#applyRevocations(signRevocations(joined.authority, seq, nodes), undefined);
    this.#init.logger.info({ peer: name, nodeId: member.nodeIdHex }, 'node revoked');
    return { name, nodeIdHex: member.nodeIdHex, revokedCount: nodes.length };
  }

  /** Names of the revoked nodes (for status). */
  revokedNames(): string[] {
    return (this.#joined?.revocations?.nodes ?? []).map((n) => n.name).sort();
  }

  // ---- certificate renewal ------------------------------------------------------------------

  #scheduleRenewCheck(): void {
    if (this.#isClosed || this.#renewTimer !== undefined) return;
    this.#renewTimer = this.#init.clock.setTimeout(() => {
      this.#renewTimer = undefined;
      try {
        this.renewDueCertificates();
      } catch (err) {
        this.#init.logger.error({ err: toMeshError(err).message }, 'certificate renewal check failed');
      }
      this.#scheduleRenewCheck();
    }, this.#init.certRenewCheckMs ?? DEFAULT_CERT_RENEW_CHECK_MS);
  }

  /**
   * On an admin node: re-issues every certificate (its own and its connected members') that
   * expires within the renewal window, same keys, name and tags, and sends each to its node.
   * Existing tunnels and streams are untouched; the new certificate is used from the next
   * handshake and in the node's re-signed record. Returns the names renewed.
   */
  renewDueCertificates(): string[] {
    const joined = this.#joined;
    if (joined?.authority === undefined || this.#isClosed) return [];
    const now = this.#init.clock.now();
    const renewBefore = this.#init.certRenewBeforeMs ?? DEFAULT_CERT_RENEW_BEFORE_MS;
    const renewed: string[] = [];
    for (const member of joined.membership.all()) {
      if (member.cert.expiresAtMs - now > renewBefore || joined.revocations?.ids.has(member.nodeIdHex)) continue;
      const isSelf = member.nodeIdHex === this.identity.nodeIdHex;
      const cert = isSelf ? joined.cert : member.cert;
      const certBytes = issueCert(joined.authority, {
        meshName: joined.meshName,
        name: cert.name,
        ed25519Public: cert.ed25519Public,
        x25519Public: cert.x25519Public,
        tags: cert.tags,
        isAdmin: cert.isAdmin,
        nowMs: now,
        ...(this.#init.certLifetimeMs === undefined ? {} : { lifetimeMs: this.#init.certLifetimeMs }),
      });
      if (isSelf) this.#adoptRenewal(certBytes, undefined);
      else if (!joined.peers.sendRenewal(member.nodeIdHex, certBytes)) continue;
      renewed.push(cert.name);
    }
    if (renewed.length > 0) this.#init.logger.info({ nodes: renewed }, 'certificates renewed');
    return renewed;
  }

  /** Takes a renewed certificate for this node if it is genuine and later than the current one. */
  #adoptRenewal(certBytes: Uint8Array, fromPeer: string | undefined): void {
    const joined = this.#joined;
    if (joined === undefined) return;
    let cert: VerifiedCert;
    try {
      cert = verifyCert(certBytes, { authorityPublic: joined.authorityPublic, nowMs: this.#init.clock.now(), expectedX25519: this.identity.noise.publicKey });
      if (cert.nodeIdHex !== this.identity.nodeIdHex || cert.name !== joined.cert.name) {
        throw new MeshError(ErrorCodes.CERT_INVALID, `renewal is for '${cert.name}' (${cert.nodeIdHex}), not this node`);
      }
      if (cert.expiresAtMs <= joined.cert.expiresAtMs) return; // an old or duplicate renewal
    } catch (err) {
      const error = toMeshError(err);
      this.metrics.count('record_rejected_total', error.code);
      this.#init.logger.warn({ from: fromPeer, code: error.code, err: error.message }, 'certificate renewal rejected');
      return;
    }
    joined.cert = cert;
    joined.certBytes = certBytes;
    this.#saveMesh();
    // peers learn the new expiry from our re-signed record; tunnels and streams stay as they are
    this.#republishRecord(joined);
    this.metrics.count('cert_renewed_total', 'ok');
    this.#init.logger.info({ expiresAt: new Date(cert.expiresAtMs).toISOString() }, 'certificate renewed');
    this.#init.onChange();
  }

  /** A warning for `status` when this node's certificate is close to expiry (renewal failing). */
  certWarning(): string | null {
    const cert = this.#joined?.cert;
    if (cert === undefined) return null;
    const leftMs = cert.expiresAtMs - this.#init.clock.now();
    if (leftMs > CERT_WARN_BEFORE_MS) return null;
    const at = new Date(cert.expiresAtMs).toISOString();
    if (leftMs <= 0) return `this node's certificate expired at ${at}; peers refuse it (join again with a new token)`;
    return `this node's certificate expires at ${at} (in ${Math.ceil(leftMs / 86_400_000)} days) and has not been renewed: keep an admin node reachable, or join again with a new token`;
  }

  get isJoined(): boolean {
    return this.#joined !== undefined;
  }

  get isAdmin(): boolean {
    return this.#joined?.authority !== undefined;
  }

  get meshName(): string | null {
    return this.#joined?.meshName ?? null;
  }

  get meshIdHex(): string | null {
    return this.#joined ? toHex(this.#joined.meshId) : null;
  }

  get cert(): VerifiedCert | undefined {
    return this.#joined?.cert;
  }

  get nodeName(): string {
    return this.#joined?.cert.name ?? this.#init.nodeName;
  }

  get publicEndpoints(): string[] {
    return this.#init.publicEndpoints;
  }

  /** Our own signed record, re-signed with a higher sequence whenever endpoints or services change. */
  #record(): NodeRecordWire {
    if (this.#ownRecord !== undefined) return this.#ownRecord;
    const joined = this.#joined;
    if (joined === undefined) throw new MeshError(ErrorCodes.NOT_JOINED, 'this node has not joined a mesh');
    // wall-clock based so a restarted node (which forgot its counter) still outranks its old record
    this.#seq = Math.max(this.#seq + 1, this.#init.clock.now());
    this.#ownRecord = signRecord(this.identity.signing, {
      cert: joined.certBytes,
      seq: this.#seq,
      endpoints: this.#init.publicEndpoints,
      services: this.#services,
      updatedAtMs: this.#init.clock.now(),
    });
    return this.#ownRecord;
  }

  /** Replaces the services this node provides and tells every peer. */
  setServices(services: ServiceDecl[]): void {
    this.#services = services.map((s) => ({ name: s.name, ports: [...s.ports].sort((a, b) => a - b) }));
    const joined = this.#joined;
    if (joined === undefined) return;
    this.#republishRecord(joined);
    this.#init.onChange();
  }

  #saveMembers(): void {
    if (this.#joined) writeJsonFile(join(this.#init.stateDir, MEMBERS_FILE), this.#joined.membership.toJSON());
  }

  #saveMesh(): void {
    const joined = this.#joined!;
    const file: MeshFile = {
      version: 1,
      meshName: joined.meshName,
      authorityPublic: toHex(joined.authorityPublic),
      cert: toBase64Url(joined.certBytes),
    };
    writeJsonFile(join(this.#init.stateDir, MESH_FILE), file);
  }

  /** `init --mesh NAME`: creates the authority and this node's admin certificate. */
  initMesh(meshName: string): { meshName: string; meshIdHex: string } {
    if (this.#joined !== undefined) {
      throw new MeshError(ErrorCodes.ALREADY_JOINED, `this node is already a member of mesh '${this.#joined.meshName}'`);
    }
    const authority = Ed25519Private.generate();
    // the authority key is written first: a crash after it leaves a node that can simply init again
    writeJsonFile(join(this.#init.stateDir, AUTHORITY_FILE), { version: 1, ed25519Private: toHex(authority.privateKey), meshName });
    const certBytes = issueCert(authority, {
      meshName,
      name: this.#init.nodeName,
      ed25519Public: this.identity.signing.publicKey,
      x25519Public: this.identity.noise.publicKey,
      tags: this.#init.tags,
      isAdmin: true,
      nowMs: this.#init.clock.now(),
      ...(this.#init.certLifetimeMs === undefined ? {} : { lifetimeMs: this.#init.certLifetimeMs }),
    });
    const cert = verifyCert(certBytes, { authorityPublic: authority.publicKey, nowMs: this.#init.clock.now() });
    this.#setJoined(meshName, authority.publicKey, certBytes, cert, authority);
    this.#saveMesh();
    this.#saveMembers();
    this.#init.logger.info({ mesh: meshName, meshId: this.meshIdHex }, 'mesh created; this node is its admin');
    this.#joined!.peers.sync();
    this.#init.onChange();
    return { meshName, meshIdHex: this.meshIdHex! };
  }

  createToken(ttlMs: number, uses: number): { token: string; tokenIdHex: string; expiresAtMs: number } {
    const joined = this.#requireJoined();
    if (joined.authority === undefined || joined.tokens === undefined) {
      throw new MeshError(ErrorCodes.NOT_ADMIN, 'only an admin node (one that ran `osmoda-mesh init`) can create tokens');
    }
    if (this.#init.publicEndpoints.length === 0) {
      throw new MeshError(
        ErrorCodes.INVALID_CONFIG,
        'this node advertises no endpoint, so a token could not say where to join; start the agent with --public-endpoint ws://HOST:PORT',
      );
    }
    const { id, secret, expiresAtMs } = joined.tokens.create(this.#init.random, { nowMs: this.#init.clock.now(), ttlMs, uses });
    const token = createToken(joined.authority, {
      meshName: joined.meshName,
      issuerEndpoints: this.#init.publicEndpoints,
      issuerX25519: this.identity.noise.publicKey,
      tokenId: id,
      secret,
      expiresAtMs,
    });
    this.#init.logger.info({ tokenId: toHex(id), uses, expiresAt: new Date(expiresAtMs).toISOString() }, 'join token created');
    return { token, tokenIdHex: toHex(id), expiresAtMs };
  }

  listTokens(): { id: string; expiresAtMs: number; usesLeft: number }[] {
    const joined = this.#requireJoined();
    if (joined.tokens === undefined) throw new MeshError(ErrorCodes.NOT_ADMIN, 'only an admin node (one that ran `osmoda-mesh init`) has tokens');
    return joined.tokens.list();
  }

  revokeToken(tokenIdHex: string): boolean {
    const joined = this.#requireJoined();
    if (joined.tokens === undefined) throw new MeshError(ErrorCodes.NOT_ADMIN, 'only an admin node (one that ran `osmoda-mesh init`) has tokens');
    const wasKnown = joined.tokens.revoke(tokenIdHex);
    if (wasKnown) this.#init.logger.info({ tokenId: tokenIdHex }, 'join token revoked');
    return wasKnown;
  }

  /** Pings a member by name through its tunnel. */
  ping(name: string, timeoutMs: number): Promise<number> {
    const joined = this.#requireJoined();
    const member = joined.membership.byName(name);
    if (member === undefined) throw new MeshError(ErrorCodes.NOT_FOUND, `no member named '${name}' (see \`osmoda-mesh peers\`)`);
    if (member.nodeIdHex === this.identity.nodeIdHex) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `'${name}' is this node`);
    return joined.peers.ping(member.nodeIdHex, timeoutMs);
  }

  async join(tokenText: string, name: string | undefined): Promise<{ meshName: string; nodeName: string; wasAlreadyJoined: boolean }> {
    const token = parseToken(tokenText, this.#init.clock.now());
    const joined = this.#joined;
    if (joined !== undefined) {
      if (toHex(joined.meshId) === toHex(token.meshId)) {
        return { meshName: joined.meshName, nodeName: joined.cert.name, wasAlreadyJoined: true };
      }
      throw new MeshError(
        ErrorCodes.TOKEN_WRONG_MESH,
        `this node is a member of mesh '${joined.meshName}'; the token is for mesh '${token.meshName}'`,
      );
    }
    const nodeName = name ?? this.#init.nodeName;
    const result = await joinMesh({
      token,
      name: nodeName,
      identity: this.identity,
      endpoints: this.#init.publicEndpoints,
      tags: this.#init.tags,
      clock: this.#init.clock,
      timeoutMs: this.#init.tunnelConfig.handshakeTimeoutMs,
      logger: this.#init.logger,
    });
    if (this.#joined !== undefined) throw new MeshError(ErrorCodes.ALREADY_JOINED, 'joined another mesh meanwhile');
    this.#setJoined(token.meshName, result.authorityPublic, result.certBytes, result.cert, undefined);
    this.#saveMesh();
    const members = this.#joined!.membership;
    for (const record of result.members) {
      try {
        members.apply(record, this.#init.clock.now());
      } catch (err) {
        this.#init.logger.warn({ err: toMeshError(err).message }, 'member record from the issuer rejected');
      }
    }
    this.#saveMembers();
    this.#init.logger.info({ mesh: token.meshName, node: nodeName }, 'joined the mesh');
    this.#joined!.peers.sync();
    this.#init.onChange();
    return { meshName: token.meshName, nodeName, wasAlreadyJoined: false };
  }

  #requireJoined(): Joined {
    if (this.#joined === undefined) {
      throw new MeshError(ErrorCodes.NOT_JOINED, 'this node has not joined a mesh yet (run `osmoda-mesh init --mesh NAME` or `osmoda-mesh join --token-file FILE`)');
    }
    return this.#joined;
  }

  /** Tunnel server route: a peer's tunnel. */
  handleTunnel(ws: WebSocket, request: IncomingMessage): void {
    if (this.#joined === undefined || this.#isClosed) {
      closeWs(ws, CloseCodes.HANDSHAKE_FAILED, 'not a member of any mesh');
      return;
    }
    this.#joined.peers.handleIncoming(ws, request);
  }

  /** Tunnel server route: a node joining with a token issued here. */
  handleJoin(ws: WebSocket): void {
    const joined = this.#joined;
    if (joined?.authority === undefined || joined.tokens === undefined || this.#isClosed) {
      closeWs(ws, CloseCodes.JOIN_REFUSED, 'this node does not issue tokens');
      return;
    }
    this.#pendingJoinHandshakes++;
    serveJoin(ws, {
      identity: this.identity,
      authority: joined.authority,
      meshId: joined.meshId,
      meshName: joined.meshName,
      tokens: joined.tokens,
      clock: this.#init.clock,
      timeoutMs: this.#init.tunnelConfig.handshakeTimeoutMs,
      logger: this.#init.logger.child({ stage: 'join' }),
      nameOwner: (name) => joined.membership.byName(name)?.nodeIdHex,
      isRevoked: (nodeIdHex) => joined.revocations?.ids.has(nodeIdHex) ?? false,
      ...(this.#init.certLifetimeMs === undefined ? {} : { certLifetimeMs: this.#init.certLifetimeMs }),
      members: () => joined.membership.records(),
      onRefused: (code) => this.metrics.count('join_refused_total', code),
      onJoined: () => this.metrics.count('join_accepted_total', 'ok'),
    }).finally(() => this.#pendingJoinHandshakes--);
  }

  get pendingHandshakes(): number {
    return this.#pendingJoinHandshakes + (this.#joined?.peers.pendingHandshakes ?? 0);
  }

  members(): Member[] {
    return this.#joined?.membership.all() ?? [];
  }

  peerState(nodeIdHex: string): PeerState | 'local' {
    if (nodeIdHex === this.identity.nodeIdHex) return 'local';
    return this.#joined?.peers.stateOf(nodeIdHex) ?? 'down';
  }

  peers(): PeerManager | undefined {
    return this.#joined?.peers;
  }

  /** Every node that declares `service`, this one included. */
  providersOf(service: string): Provider[] {
    const out: Provider[] = [];
    for (const member of this.members()) {
      const decl = member.services.find((s) => s.name === service);
      if (decl === undefined) continue;
      const isLocal = member.nodeIdHex === this.identity.nodeIdHex;
      out.push({ nodeIdHex: member.nodeIdHex, name: member.name, ports: decl.ports, isLocal, state: this.peerState(member.nodeIdHex) });
    }
    return out;
  }

  /** Service name → union of ports over all providers. */
  catalog(): Map<string, number[]> {
    const out = new Map<string, Set<number>>();
    for (const member of this.members()) {
      for (const s of member.services) {
        let ports = out.get(s.name);
        if (ports === undefined) out.set(s.name, (ports = new Set()));
        for (const p of s.ports) ports.add(p);
      }
    }
    return new Map([...out].map(([name, ports]) => [name, [...ports].sort((a, b) => a - b)]));
  }

  openStream(nodeIdHex: string, service: string, port: number): MuxStream {
    const joined = this.#requireJoined();
    return joined.peers.openStream(nodeIdHex, service, port);
  }

  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    if (this.#renewTimer !== undefined) this.#init.clock.clearTimeout(this.#renewTimer);
    this.#renewTimer = undefined;
    await this.#joined?.peers.close();
  }
}
