import { connect, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { ErrorCodes } from '../errors.js';
import type { MeshMetrics, PeerIdentity } from '../mesh/index.js';
import type { MuxStream, StreamOpenInfo } from '../mux/index.js';
import { lazyChild } from './lazy-log.js';
import { splice } from './splice.js';
import { compareText } from '../util/compare.js';

/** One exposed port: the provider dials this target, never an address a peer asks for. */
export interface LocalTarget {
  host: string;
  port: number;
  /** Node names and `tag:<tag>` entries that may open streams to it; null: every member. */
  allowFrom: readonly string[] | null;
}

/** True when the peer's certificate matches an allowFrom entry (null allows every member). */
export function isAllowed(allowFrom: readonly string[] | null, peer: PeerIdentity): boolean {
  if (allowFrom === null) return true;
  return allowFrom.some((rule) => (rule.startsWith('tag:') ? peer.tags.includes(rule.slice(4)) : rule === peer.name));
}

export interface LocalService {
  name: string;
  /** service port → target */
  ports: Map<number, LocalTarget>;
}

export interface LocalServicesInit {
  logger: Logger;
  metrics: MeshMetrics;
  connectTimeoutMs: number;
}

/**
 * The provider side of forward (SPEC §2): a stream opened by a peer names a service and port; if
 * this node exposes that port, it dials the declared target and splices the two together.
 */
export class LocalServices {
  readonly #init: LocalServicesInit;
  readonly #services = new Map<string, LocalService>();
  readonly #sockets = new Set<Socket>();

  constructor(init: LocalServicesInit) {
    this.#init = init;
  }

  set(name: string, ports: Map<number, LocalTarget>): void {
    if (ports.size === 0) this.#services.delete(name);
    else this.#services.set(name, { name, ports: new Map(ports) });
  }

  delete(name: string): boolean {
    return this.#services.delete(name);
  }

  get(name: string): LocalService | undefined {
    return this.#services.get(name);
  }

  all(): LocalService[] {
    return [...this.#services.values()].sort((a, b) => compareText(a.name, b.name));
  }

  target(name: string, port: number): LocalTarget | undefined {
    return this.#services.get(name)?.ports.get(port);
  }

  /** Dials the target for a local connection (a service provided here, reached through its VIP). */
  dial(target: LocalTarget): Socket {
    // half-open, like the client side (Forwarder): each direction ends on its own FIN
    const socket = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    socket.setNoDelay(true);
    return socket;
  }

  /** MuxSession onStream handler. */
  handleStream(stream: MuxStream, open: StreamOpenInfo, peer: PeerIdentity): void {
    const log = lazyChild(this.#init.logger, () => ({ service: open.service, port: open.port, peer: peer.name, streamId: stream.id }));
    stream.on('error', () => undefined); // errors are handled through splice / reject below
    const target = this.target(open.service, open.port);
    if (target === undefined) {
      this.#init.metrics.count('stream_refused_total', ErrorCodes.UNKNOWN_SERVICE);
      log().info('stream refused: service/port not exposed here');
      stream.reject(ErrorCodes.UNKNOWN_SERVICE, `${open.service}:${open.port} is not exposed on this node`);
      return;
    }
    if (!isAllowed(target.allowFrom, peer)) {
      // Compose networks as an access boundary (issue 4): refused before any dial, and said loudly
      this.#init.metrics.count('stream_refused_total', ErrorCodes.ACCESS_DENIED);
      this.#init.metrics.count('access_denied_total', open.service);
      log().warn({ peerTags: peer.tags, allowFrom: target.allowFrom }, 'stream refused: peer not in the service\'s allowFrom');
      stream.reject(ErrorCodes.ACCESS_DENIED, `${open.service}:${open.port} does not allow node ${peer.name} (allowFrom: ${target.allowFrom!.join(', ') || 'nobody'})`);
      return;
    }
    // allowHalfOpen: when the target closes first, node would otherwise end our side too and close
    // the socket, unpiping the stream before the peer's fin arrives: that stream was never
    // consumed to its end, never destroyed, and stayed in the session until maxStreams was reached
    const socket = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    const timer = setTimeout(() => socket.destroy(new Error(`connect timeout after ${this.#init.connectTimeoutMs} ms`)), this.#init.connectTimeoutMs);
    timer.unref();
    const onConnectError = (err: Error): void => {
      clearTimeout(timer);
      this.#init.metrics.count('stream_refused_total', ErrorCodes.DIAL_FAILED);
      log().warn({ target: `${target.host}:${target.port}`, err: err.message }, 'target refused: stream rejected');
      stream.reject(ErrorCodes.DIAL_FAILED, `${open.service}: cannot reach its target (${err.message})`);
    };
    socket.once('error', onConnectError);
    // The opener may give up (its client went away: a reset) while we are still dialling: then the
    // dial is dropped. Before this, the connection was made anyway and spliced to the dead stream,
    // and sat open at the target until the target closed it.
    const onGivenUp = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    stream.once('close', onGivenUp);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onConnectError);
      // a stream destroyed before this point has closed already (its 'close' comes on the next
      // tick, before any I/O) and onGivenUp destroyed the socket, so 'connect' never fires for it
      stream.off('close', onGivenUp);
      socket.setNoDelay(true);
      stream.accept();
      this.#init.metrics.count('stream_accepted_total', open.service);
      splice(socket, stream, log);
    });
  }

  /** Destroys every target connection (agent stopping). */
  destroy(): void {
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }
}
