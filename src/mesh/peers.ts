import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type WebSocket from 'ws';
import { TUNNEL_PATH } from '../config/index.js';
import { ErrorCodes, MeshError, toMeshError, type ErrorCode } from '../errors.js';
import { MuxSession, type MuxConfig, type MuxStream, type StreamOpenInfo } from '../mux/index.js';
import {
  CloseCodes,
  MessageSocket,
  Tunnel,
  dialWebSocket,
  endpointUrl,
  performTunnelHandshake,
  type TunnelConfig,
} from '../tunnel/index.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import type { Random } from '../util/random.js';
import { decodeHandshakePayload, encodeHandshakePayload, gossipFrame, isStreamFrame, renewalFrame, type Frame, type NodeRecordWire } from '../wire/index.js';
import { verifyCert, type VerifiedCert } from './certs.js';
import type { NodeIdentity } from './identity.js';
import type { Membership } from './membership.js';
import type { MeshMetrics } from './metrics.js';

/**
 * Keeps one tunnel to every other member (a full mesh, SPEC §2): dials members with endpoints,
 * accepts their dials, runs a mux session and gossip over each tunnel, reconnects with backoff and
 * jitter, and resolves two simultaneous dials by keeping the one dialled by the lower node id.
 */

export type PeerState = 'up' | 'down' | 'connecting';

interface Connection {
  tunnel: Tunnel;
  session: MuxSession;
  dialerId: string;
  isDialer: boolean;
}

interface PeerEntry {
  nodeIdHex: string;
  connection: Connection | undefined;
  isDialing: boolean;
  /** Incoming handshakes from this peer past certificate check: do not dial it meanwhile. */
  acceptingCount: number;
  dialTimer: TimerHandle | undefined;
  backoffMs: number;
  lastError: string | null;
  everConnected: boolean;
}

/** A tunnel peer as its certificate (checked in the handshake) names it. */
export interface PeerIdentity {
  readonly nodeIdHex: string;
  readonly name: string;
  readonly tags: readonly string[];
}

export interface PeerManagerInit {
  identity: NodeIdentity;
  meshId: Uint8Array;
  authorityPublic: Uint8Array;
  ownCert(): Uint8Array;
  ownRecord(): NodeRecordWire;
  membership: Membership;
  clock: Clock;
  random: Random;
  logger: Logger;
  tunnelConfig: TunnelConfig;
  muxConfig?: Partial<MuxConfig>;
  metrics: MeshMetrics;
  /** A peer opened a stream to a service here (forward decides: dial the target or reject). */
  onStream(stream: MuxStream, open: StreamOpenInfo, peer: PeerIdentity): void;
  /** Membership changed (a new or updated record arrived). */
  onMembershipChange(): void;
  /**
   * Someone sent us a copy of our own record. One with a sequence at or above ours (our clock went
   * back, or the state dir came from a backup) would make peers ignore our updates: outrank it.
   */
  onOwnRecordEcho(seq: number): void;
  /** A tunnel came up or went down. */
  onPeerStateChange(nodeIdHex: string, state: PeerState): void;
  /** True for a node on the mesh's revocation list: its handshakes are refused. */
  isRevoked(nodeIdHex: string): boolean;
  /** The current encoded revocation list, sent to every peer when a tunnel comes up. */
  revocations(): Uint8Array | undefined;
  /** A peer sent a revocation list (maybe one we have): the node verifies and applies it. */
  onRevocations(bytes: Uint8Array, fromPeer: string): void;
  /** A peer (an admin) sent this node a renewed certificate. */
  onRenewal(cert: Uint8Array, fromPeer: string): void;
}

export interface PeerSnapshot {
  nodeIdHex: string;
  state: PeerState;
  path: string | null;
  lastHeardAgoMs: number | null;
  rttMs: number | null;
  rxBytes: number;
  txBytes: number;
  streams: number;
  bufferedBytes: number;
  /** Key rotations on the current tunnel, both directions (SPEC §4: every hour or 2^30 bytes). */
  rekeys: number;
  lastError: string | null;
}

const INITIAL_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;
const GOSSIP_CHUNK = 64;
/**
 * A message from the peer that did not decrypt or decode closes its tunnel (Tunnel) and is counted
 * as a protocol error; mux violations are counted where the session reports them.
 */
const UNDECODABLE: ReadonlySet<ErrorCode> = new Set([ErrorCodes.MALFORMED_FRAME, ErrorCodes.FRAME_TOO_LARGE, ErrorCodes.NOISE_DECRYPT]);

export class PeerManager {
  readonly #init: PeerManagerInit;
  readonly #peers = new Map<string, PeerEntry>();
  #pendingHandshakes = 0;
  #isClosed = false;

  constructor(init: PeerManagerInit) {
    this.#init = init;
  }

  get pendingHandshakes(): number {
    return this.#pendingHandshakes;
  }

  /** Makes sure every member (but us) has an entry, and dials those not connected. */
  sync(): void {
    if (this.#isClosed) return;
    for (const member of this.#init.membership.others()) {
      const entry = this.#entry(member.nodeIdHex);
      // a peer that is dialling us right now (its record arrived in its handshake) is not dialled
      // back: that would only make a duplicate tunnel for the tie-break to close
      if (entry.connection === undefined && !entry.isDialing && entry.acceptingCount === 0 && entry.dialTimer === undefined) this.#startDial(entry);
    }
  }

  #entry(nodeIdHex: string): PeerEntry {
    let entry = this.#peers.get(nodeIdHex);
    if (entry === undefined) {
      entry = {
        nodeIdHex,
        connection: undefined,
        isDialing: false,
        acceptingCount: 0,
        dialTimer: undefined,
        backoffMs: INITIAL_BACKOFF_MS,
        lastError: null,
        everConnected: false,
      };
      this.#peers.set(nodeIdHex, entry);
    }
    return entry;
  }

  #scheduleDial(entry: PeerEntry): void {
    if (this.#isClosed || entry.dialTimer !== undefined || entry.connection !== undefined) return;
    // full jitter on top of half the backoff: peers restarted together do not dial in lockstep
    const delay = entry.backoffMs / 2 + this.#init.random.float() * (entry.backoffMs / 2);
    entry.backoffMs = Math.min(MAX_BACKOFF_MS, entry.backoffMs * 2);
    entry.dialTimer = this.#init.clock.setTimeout(() => {
      entry.dialTimer = undefined;
      this.#startDial(entry);
    }, delay);
  }

  #startDial(entry: PeerEntry): void {
    this.#dial(entry).catch((err: unknown) => {
      this.#init.logger.error({ err: toMeshError(err).message }, 'dial loop failed');
    });
  }

  async #dial(entry: PeerEntry): Promise<void> {
    const member = this.#init.membership.get(entry.nodeIdHex);
    if (this.#isClosed || member === undefined || entry.connection !== undefined || entry.isDialing) return;
    if (member.endpoints.length === 0) return; // it dials us
    entry.isDialing = true;
    const log = this.#init.logger.child({ peer: member.name });
    try {
      for (const endpoint of member.endpoints) {
        if (this.#isClosed || entry.connection !== undefined) return;
        const url = endpointUrl(endpoint, TUNNEL_PATH);
        try {
          const ws = await dialWebSocket(url, this.#init.tunnelConfig.handshakeTimeoutMs);
          if (this.#isClosed) {
            ws.terminate();
            return;
          }
          await this.#establish(ws, true, `direct ${url} (dialled)`, entry.nodeIdHex);
          return;
        } catch (err) {
          const error = toMeshError(err, ErrorCodes.DIAL_FAILED);
          entry.lastError = error.message;
          // a certificate we refused was counted in #verifyRemote; a 4002 from the peer means it
          // refused ours, which is not a peer rejected here (it was counted twice before)
          log.debug({ endpoint: url, code: error.code, err: error.message }, 'dial failed');
        }
      }
    } finally {
      entry.isDialing = false;
      if (entry.connection === undefined) this.#scheduleDial(entry);
    }
  }

  /** Route handler for the tunnel path of the tunnel server. */
  handleIncoming(ws: WebSocket, request: IncomingMessage): void {
    const from = `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? '?'}`;
    const raw = (ws as unknown as { _socket?: { setNoDelay?: (v: boolean) => void } })._socket;
    raw?.setNoDelay?.(true);
    this.#establish(ws, false, `direct from ${from} (accepted)`, undefined).catch((err) => {
      const error = toMeshError(err);
      this.#init.logger.warn({ from, code: error.code, err: error.message }, 'incoming tunnel refused');
    });
  }

  async #establish(ws: WebSocket, isDialer: boolean, path: string, expectedNodeId: string | undefined): Promise<void> {
    this.#pendingHandshakes++;
    let accepting: PeerEntry | undefined;
    let result;
    try {
      result = await performTunnelHandshake<VerifiedCert>(isDialer, {
        socket: new MessageSocket(ws),
        clock: this.#init.clock,
        timeoutMs: this.#init.tunnelConfig.handshakeTimeoutMs,
        staticKey: this.#init.identity.noise,
        meshId: this.#init.meshId,
        payload: encodeHandshakePayload({ cert: this.#init.ownCert(), record: this.#init.ownRecord() }),
        verifyRemote: (payload, remoteStatic) =>
          this.#verifyRemote(payload, remoteStatic, (cert) => {
            if (isDialer) return;
            accepting = this.#entry(cert.nodeIdHex);
            accepting.acceptingCount++;
          }),
      });
    } catch (err) {
      const error = toMeshError(err, ErrorCodes.HANDSHAKE_FAILED);
      this.#init.metrics.count('handshake_failed_total', error.code);
      throw error;
    } finally {
      this.#pendingHandshakes--;
      if (accepting !== undefined) accepting.acceptingCount--;
    }
    const cert = result.remote;
    if (expectedNodeId !== undefined && cert.nodeIdHex !== expectedNodeId) {
      this.#init.logger.info({ peer: cert.name }, 'endpoint now belongs to another member');
    }
    const dialerId = isDialer ? this.#init.identity.nodeIdHex : cert.nodeIdHex;
    // what the authority vouched for in the handshake: the basis of per-service access rules
    const peerIdentity: PeerIdentity = Object.freeze({ nodeIdHex: cert.nodeIdHex, name: cert.name, tags: Object.freeze([...cert.tags]) });
    const entry = this.#entry(cert.nodeIdHex);
    const log = this.#init.logger.child({ peer: cert.name });
    const existing = entry.connection;
    if (existing !== undefined && existing.tunnel.isOpen) {
      // Both sides dialled at once: both keep the tunnel dialled by the lower node id (SPEC §4).
      // The same dialer again means the old tunnel is stale (the peer restarted): keep the new one.
      const isNewPreferred = dialerId === existing.dialerId || dialerId < existing.dialerId;
      if (!isNewPreferred) {
        log.debug('duplicate tunnel: keeping the one dialled by the lower node id');
        ws.close(CloseCodes.DUPLICATE, 'duplicate tunnel');
        ws.terminate();
        return;
      }
      log.debug('duplicate tunnel: replacing the existing one');
      existing.tunnel.destroy(new MeshError(ErrorCodes.TUNNEL_CLOSED, 'replaced by a newer tunnel', { wireReason: 'duplicate tunnel' }), CloseCodes.DUPLICATE);
    }
    const tunnel = new Tunnel({
      ws,
      transport: result.transport,
      config: this.#init.tunnelConfig,
      clock: this.#init.clock,
      random: this.#init.random,
      logger: log,
      path,
      earlyMessages: result.earlyMessages,
    });
    const session = new MuxSession({
      send: (frame) => tunnel.send(frame),
      bufferedBytes: () => tunnel.bufferedBytes(),
      isInitiator: isDialer,
      // streams are written only with socket chunks (never reused): no copy before sealing (MuxConfig)
      config: { ...this.#init.muxConfig, tunnelHighWaterBytes: this.#init.tunnelConfig.highWaterBytes, isZeroCopySend: true },
      logger: log,
      clock: this.#init.clock,
      onStream: (stream, open) => this.#init.onStream(stream, open, peerIdentity),
      onProtocolError: (err) => {
        log.warn({ code: err.code, err: err.message }, 'peer broke the stream protocol: closing the tunnel');
        this.#init.metrics.count('protocol_error_total', err.code);
        tunnel.destroy(err);
      },
    });
    const connection: Connection = { tunnel, session, dialerId, isDialer };
    entry.connection = connection;
    entry.backoffMs = INITIAL_BACKOFF_MS;
    entry.lastError = null;
    entry.everConnected = true;
    if (entry.dialTimer !== undefined) {
      this.#init.clock.clearTimeout(entry.dialTimer);
      entry.dialTimer = undefined;
    }
    tunnel.onFrame((frame) => this.#onFrame(cert.nodeIdHex, connection, frame));
    tunnel.onDrain(() => session.onTunnelDrain());
    tunnel.onClose((err) => {
      if (err instanceof MeshError && UNDECODABLE.has(err.code)) this.#init.metrics.count('protocol_error_total', err.code);
      session.destroy(new MeshError(ErrorCodes.TUNNEL_CLOSED, `tunnel to ${cert.name} closed${err ? `: ${err.message}` : ''}`));
      if (entry.connection !== connection) return;
      entry.connection = undefined;
      entry.lastError = err?.message ?? 'closed';
      log.info({ reason: entry.lastError }, 'tunnel down');
      this.#init.onPeerStateChange(cert.nodeIdHex, 'down');
      if (!this.#isClosed) this.#scheduleDial(entry);
    });
    log.info({ path, rekeyAfterBytes: this.#init.tunnelConfig.rekeyAfterBytes }, 'tunnel up');
    this.#init.metrics.count('tunnel_up_total', 'ok');
    tunnel.pingNow();
    this.#sendGossip(tunnel, this.#init.membership.records());
    const revocations = this.#init.revocations();
    if (revocations !== undefined) tunnel.send(gossipFrame([], revocations));
    this.#init.onPeerStateChange(cert.nodeIdHex, 'up');
  }

  #verifyRemote(payloadBytes: Uint8Array, remoteStatic: Uint8Array, onCertVerified: (cert: VerifiedCert) => void): VerifiedCert {
    let payload: ReturnType<typeof decodeHandshakePayload>;
    let cert: VerifiedCert;
    try {
      payload = decodeHandshakePayload(payloadBytes);
      cert = verifyCert(payload.cert, { authorityPublic: this.#init.authorityPublic, nowMs: this.#init.clock.now(), expectedX25519: remoteStatic });
      if (this.#init.isRevoked(cert.nodeIdHex)) {
        throw new MeshError(ErrorCodes.CERT_REVOKED, `node '${cert.name}' was revoked`, { wireReason: 'revoked' });
      }
    } catch (err) {
      const error = toMeshError(err, ErrorCodes.CERT_INVALID);
      // SPEC §3: close, log the reason, count it. The label is the short wire reason
      // (untrusted-cert, wrong-mesh, expired-cert, key-mismatch, bad-cert, malformed).
      const wireReason = error.wireReason ?? error.code;
      this.#init.metrics.count('peer_rejected_total', error.code);
      this.#init.metrics.count('handshake_rejected_total', wireReason);
      this.#init.logger.warn({ code: error.code, reason: error.message, wireReason }, 'peer rejected: certificate');
      throw error;
    }
    if (cert.nodeIdHex === this.#init.identity.nodeIdHex) {
      throw new MeshError(ErrorCodes.HANDSHAKE_FAILED, 'connected to itself (an endpoint points back at this node)', { wireReason: 'self' });
    }
    onCertVerified(cert);
    if (payload.record !== undefined) this.#applyRecords([payload.record], undefined);
    return cert;
  }

  #onFrame(peerId: string, connection: Connection, frame: Frame): void {
    if (isStreamFrame(frame)) {
      connection.session.handleFrame(frame);
      return;
    }
    if (frame.kind === 'gossip') {
      if (frame.records.length > 0) this.#applyRecords(frame.records, peerId);
      if (frame.revocations !== undefined) this.#init.onRevocations(frame.revocations, peerId);
    } else if (frame.kind === 'renewal') {
      this.#init.onRenewal(frame.cert, peerId);
    }
  }

  /** Floods a (new) revocation list to every connected peer but the one it came from. */
  floodRevocations(bytes: Uint8Array, exceptPeer: string | undefined): void {
    for (const [id, entry] of this.#peers) {
      if (id === exceptPeer || !entry.connection?.tunnel.isOpen) continue;
      entry.connection.tunnel.send(gossipFrame([], bytes));
    }
  }

  /** Sends a renewed certificate to a connected peer; false when its tunnel is not up. */
  sendRenewal(nodeIdHex: string, cert: Uint8Array): boolean {
    const tunnel = this.#peers.get(nodeIdHex)?.connection?.tunnel;
    if (tunnel === undefined || !tunnel.isOpen) return false;
    tunnel.send(renewalFrame(cert));
    return true;
  }

  /** Cuts a revoked node off: its tunnel closes now, and it is never dialled again. */
  cut(nodeIdHex: string, reason: string): void {
    const entry = this.#peers.get(nodeIdHex);
    if (entry === undefined) return;
    this.#peers.delete(nodeIdHex);
    if (entry.dialTimer !== undefined) this.#init.clock.clearTimeout(entry.dialTimer);
    entry.dialTimer = undefined;
    const connection = entry.connection;
    entry.connection = undefined;
    if (connection !== undefined) {
      connection.session.destroy(new MeshError(ErrorCodes.CERT_REVOKED, reason));
      connection.tunnel.destroy(new MeshError(ErrorCodes.CERT_REVOKED, reason, { wireReason: 'revoked' }));
      this.#init.onPeerStateChange(nodeIdHex, 'down');
    }
  }

  #applyRecords(records: NodeRecordWire[], fromPeer: string | undefined): void {
    const fresh: NodeRecordWire[] = [];
    for (const record of records) {
      try {
        const { result, member } = this.#init.membership.apply(record, this.#init.clock.now());
        if (result === 'own') {
          this.#init.onOwnRecordEcho(member.seq);
          continue;
        }
        if (result !== 'stale') {
          fresh.push(record);
          this.#init.logger.debug({ peer: member.name, seq: member.seq }, `member record ${result}`);
        }
      } catch (err) {
        const error = toMeshError(err);
        this.#init.metrics.count('record_rejected_total', error.code);
        this.#init.logger.warn({ code: error.code, err: error.message }, 'gossip record rejected');
      }
    }
    if (fresh.length === 0) return;
    // flood what is new to everyone else; stale copies stop here, so the flood ends
    for (const [id, entry] of this.#peers) {
      if (id === fromPeer || entry.connection === undefined) continue;
      this.#sendGossip(entry.connection.tunnel, fresh);
    }
    this.#init.onMembershipChange();
    this.sync();
  }

  #sendGossip(tunnel: Tunnel, records: NodeRecordWire[]): void {
    if (!tunnel.isOpen) return;
    for (let i = 0; i < records.length; i += GOSSIP_CHUNK) {
      tunnel.send(gossipFrame(records.slice(i, i + GOSSIP_CHUNK)));
    }
  }

  /** Sends our own (re-signed) record to every connected peer. */
  broadcast(record: NodeRecordWire): void {
    for (const entry of this.#peers.values()) if (entry.connection) this.#sendGossip(entry.connection.tunnel, [record]);
  }

  stateOf(nodeIdHex: string): PeerState {
    const entry = this.#peers.get(nodeIdHex);
    const tunnel = entry?.connection?.tunnel;
    if (tunnel?.isOpen) return tunnel.isConfirmed ? 'up' : 'connecting';
    if (entry === undefined || (!entry.everConnected && (entry.isDialing || entry.dialTimer !== undefined))) return 'connecting';
    return entry.isDialing ? 'connecting' : 'down';
  }

  /** One ping through the tunnel to a peer; PEER_DOWN when there is no tunnel. */
  ping(nodeIdHex: string, timeoutMs: number): Promise<number> {
    const tunnel = this.#peers.get(nodeIdHex)?.connection?.tunnel;
    if (tunnel === undefined || !tunnel.isOpen) {
      return Promise.reject(new MeshError(ErrorCodes.PEER_DOWN, 'no tunnel to that peer is up (see `osmoda-mesh status`)'));
    }
    return tunnel.ping(timeoutMs);
  }

  /** Opens a stream to a service on a connected peer; NO_PROVIDER when the tunnel is not up. */
  openStream(nodeIdHex: string, service: string, port: number): MuxStream {
    const connection = this.#peers.get(nodeIdHex)?.connection;
    if (connection === undefined || !connection.tunnel.isOpen) {
      throw new MeshError(ErrorCodes.NO_PROVIDER, `no tunnel to the provider of ${service}`);
    }
    return connection.session.open(service, port);
  }

  snapshot(nodeIdHex: string): PeerSnapshot {
    const entry = this.#peers.get(nodeIdHex);
    const connection = entry?.connection;
    if (connection === undefined) {
      return {
        nodeIdHex,
        state: this.stateOf(nodeIdHex),
        path: null,
        lastHeardAgoMs: null,
        rttMs: null,
        rxBytes: 0,
        txBytes: 0,
        streams: 0,
        bufferedBytes: 0,
        rekeys: 0,
        lastError: entry?.lastError ?? null,
      };
    }
    const stats = connection.tunnel.stats();
    const mux = connection.session.stats();
    return {
      nodeIdHex,
      state: this.stateOf(nodeIdHex),
      path: connection.tunnel.path,
      lastHeardAgoMs: Math.max(0, Math.round(this.#init.clock.monotonicMs() - stats.lastHeardMs)),
      rttMs: stats.rttMs,
      rxBytes: stats.rxBytes,
      txBytes: stats.txBytes,
      streams: mux.streamCount,
      bufferedBytes: mux.recvWindowBytes + stats.bufferedBytes,
      rekeys: stats.rekeys,
      lastError: null,
    };
  }

  upCount(): number {
    let n = 0;
    for (const entry of this.#peers.values()) if (entry.connection?.tunnel.isOpen && entry.connection.tunnel.isConfirmed) n++;
    return n;
  }

  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    const closing: Promise<void>[] = [];
    for (const entry of this.#peers.values()) {
      if (entry.dialTimer !== undefined) this.#init.clock.clearTimeout(entry.dialTimer);
      entry.dialTimer = undefined;
      if (entry.connection) {
        entry.connection.session.destroy(new MeshError(ErrorCodes.TUNNEL_CLOSED, 'agent stopping'));
        closing.push(entry.connection.tunnel.close('shutdown', 'agent stopping'));
      }
    }
    await Promise.allSettled(closing);
  }
}
