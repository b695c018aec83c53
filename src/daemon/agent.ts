import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { JOIN_PATH, TUNNEL_PATH, isIpv4, parseHostPort, validateServiceName, parsePort, type AgentConfig } from '../config/index.js';
import {
  CONTROL_SCHEMA,
  type ControlHandlers,
  type ExposeRequest,
  type MetricFamily,
  type PeerView,
  type ServiceView,
  type StatusResponse,
} from '../control/index.js';
import { ControlServer, MetricsServer } from '../control/index.js';
import { metricFamilies } from './metrics-export.js';
import { ErrorCodes, MeshError, toMeshError } from '../errors.js';
import { DEFAULT_NAT_TABLE, Forwarder, LocalServices, NatTable, type LocalTarget } from '../forward/index.js';
import { MeshNode, readJsonFile, writeJsonFile } from '../mesh/index.js';
import { DnsServer, HostsFileWriter, VipAllocator } from '../names/index.js';
import { TunnelServer, verifyTunnelConfig, type TunnelConfig } from '../tunnel/index.js';
import type { Clock } from '../util/clock.js';
import { systemClock } from '../util/clock.js';
import type { Random } from '../util/random.js';
import { systemRandom } from '../util/random.js';
import { systemUpstreams } from './resolve-config.js';
import { ownPackageVersion } from '../util/package-root.js';
import { compareText } from '../util/compare.js';

/**
 * The daemon: builds every part in dependency order, starts them, and closes them in reverse
 * order (STYLE lifecycle). It owns no protocol logic; it translates between the parts.
 */

export const SERVICES_FILE = 'services.json';
export const VIPS_FILE = 'vips.json';
const DNS_TTL_SECONDS = 10;

interface StoredExposure {
  name: string;
  port: number;
  targetHost: string;
  targetPort: number;
  /** Absent in files written before access rules existed: every member. */
  allowFrom?: string[] | null;
}

export interface AgentInit {
  config: AgentConfig;
  logger?: Logger;
  clock?: Clock;
  random?: Random;
  tunnelConfig?: Partial<TunnelConfig>;
  /** Certificate lifetime and renewal timing (tests shorten them; defaults: one year, 120 days, hourly). */
  certTimings?: { lifetimeMs?: number; renewBeforeMs?: number; renewCheckMs?: number };
}

export class Agent {
  readonly config: AgentConfig;
  readonly logger: Logger;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #tunnelConfig: TunnelConfig;
  readonly node: MeshNode;
  readonly #local: LocalServices;
  readonly #nat: NatTable | undefined;
  readonly #forwarder: Forwarder;
  readonly #vips: VipAllocator;
  readonly #hostsFile: HostsFileWriter | undefined;
  #tunnelServer: TunnelServer | undefined;
  #dns: DnsServer | undefined;
  #control: ControlServer | undefined;
  #metricsServer: MetricsServer | undefined;
  /** Exposures added with `expose` (persisted) and declared in the config file (not persisted). */
  readonly #runtimeExposures = new Map<string, StoredExposure>();
  #isRefreshScheduled = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;

  constructor(init: AgentInit) {
    this.config = init.config;
    this.#clock = init.clock ?? systemClock;
    this.#random = init.random ?? systemRandom;
    this.#tunnelConfig = verifyTunnelConfig(init.tunnelConfig);
    this.logger =
      init.logger ??
      pino({
        level: init.config.logLevel,
        base: { node: init.config.nodeName },
        // secrets never reach the logs, whatever a caller passes (STYLE logs)
        redact: { paths: ['token', '*.token', 'secret', '*.secret', 'psk', '*.psk', 'privateKey', '*.privateKey'], censor: '[redacted]' },
      });
    this.node = new MeshNode({
      stateDir: init.config.stateDir,
      nodeName: init.config.nodeName,
      publicEndpoints: init.config.publicEndpoints,
      tags: init.config.tags,
      clock: this.#clock,
      random: this.#random,
      logger: this.logger,
      tunnelConfig: this.#tunnelConfig,
      onStream: (stream, open, peer) => this.#local.handleStream(stream, open, peer),
      ...(init.certTimings?.lifetimeMs === undefined ? {} : { certLifetimeMs: init.certTimings.lifetimeMs }),
      ...(init.certTimings?.renewBeforeMs === undefined ? {} : { certRenewBeforeMs: init.certTimings.renewBeforeMs }),
      ...(init.certTimings?.renewCheckMs === undefined ? {} : { certRenewCheckMs: init.certTimings.renewCheckMs }),
      onChange: () => this.#scheduleRefresh(),
    });
    this.#local = new LocalServices({ logger: this.logger, metrics: this.node.metrics, connectTimeoutMs: 5_000 });
    this.#nat = init.config.forwardMode === 'nat' ? new NatTable({ table: DEFAULT_NAT_TABLE }) : undefined;
    this.#forwarder = new Forwarder({ node: this.node, local: this.#local, logger: this.logger, metrics: this.node.metrics, nat: this.#nat });
    const vipJson = readJsonFile<unknown>(join(init.config.stateDir, VIPS_FILE), false);
    this.#vips = vipJson === undefined ? new VipAllocator({ cidr: init.config.vipRange }) : this.#loadVips(vipJson);
    for (const e of readJsonFile<{ services: StoredExposure[] }>(join(init.config.stateDir, SERVICES_FILE), false)?.services ?? []) {
      this.#runtimeExposures.set(`${e.name}:${e.port}`, e);
    }
    this.#hostsFile = init.config.hostsFile === null ? undefined : new HostsFileWriter(init.config.hostsFile, init.config.dns.domain);
    this.#applyExposures();
  }

  #loadVips(json: unknown): VipAllocator {
    try {
      const loaded = VipAllocator.fromJSON(json);
      if (loaded.cidr === this.config.vipRange) return loaded;
      this.logger.info({ from: loaded.cidr, to: this.config.vipRange }, 'vip range changed: service addresses will change');
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'stored VIP map unreadable: allocating afresh');
    }
    return new VipAllocator({ cidr: this.config.vipRange });
  }

  /** All exposures: config file first, then runtime ones (which may add ports or override). */
  #exposures(): StoredExposure[] {
    const out = new Map<string, StoredExposure>();
    for (const [name, s] of Object.entries(this.config.services)) {
      out.set(`${name}:${s.port}`, { name, port: s.port, targetHost: s.targetHost, targetPort: s.targetPort, allowFrom: s.allowFrom });
    }
    for (const [key, e] of this.#runtimeExposures) out.set(key, e);
    return [...out.values()];
  }

  #applyExposures(): void {
    const byName = new Map<string, Map<number, LocalTarget>>();
    for (const e of this.#exposures()) {
      let ports = byName.get(e.name);
      if (ports === undefined) byName.set(e.name, (ports = new Map()));
      ports.set(e.port, { host: e.targetHost, port: e.targetPort, allowFrom: e.allowFrom ?? null });
    }
    for (const existing of this.#local.all()) if (!byName.has(existing.name)) this.#local.delete(existing.name);
    for (const [name, ports] of byName) this.#local.set(name, ports);
    this.node.setServices([...byName].map(([name, ports]) => ({ name, ports: [...ports.keys()] })));
  }

  #saveExposures(): void {
    writeJsonFile(join(this.config.stateDir, SERVICES_FILE), { version: 1, services: [...this.#runtimeExposures.values()] });
  }

  async start(): Promise<void> {
    if (this.#nat !== undefined) {
      // first, before anything binds: without CAP_NET_ADMIN or nft, nat mode cannot work at all
      await this.#nat.apply([]);
      this.logger.info({ table: this.#nat.table }, 'nat mode: nftables table ready');
    }
    const listen = parseHostPort(this.config.listen, 'listen');
    this.#tunnelServer = new TunnelServer({
      host: listen.host,
      port: listen.port,
      routes: {
        [TUNNEL_PATH]: (ws, req) => this.node.handleTunnel(ws, req),
        [JOIN_PATH]: (ws) => this.node.handleJoin(ws),
      },
      maxPendingHandshakes: this.#tunnelConfig.maxPendingHandshakes,
      pendingHandshakes: () => this.node.pendingHandshakes,
      handshakeTimeoutMs: this.#tunnelConfig.handshakeTimeoutMs,
      handshakeRatePerSecond: this.#tunnelConfig.handshakeRatePerSecond,
      handshakeBurst: this.#tunnelConfig.handshakeBurst,
      maxPendingPerSource: this.#tunnelConfig.maxPendingPerSource,
      onRefused: (reason) => this.node.metrics.count('handshake_rejected_total', reason),
      logger: this.logger,
    });
    const bound = await this.#tunnelServer.listen();
    this.logger.info({ listen: `${bound.host}:${bound.port}`, endpoints: this.config.publicEndpoints }, 'tunnel server listening');
    if (this.config.dns.enable) {
      const dnsAddr = parseHostPort(this.config.dns.listen, 'dns.listen');
      const upstreams = this.config.dns.upstreams ?? systemUpstreams(dnsAddr.host);
      this.#dns = new DnsServer({
        host: dnsAddr.host,
        port: dnsAddr.port,
        domain: this.config.dns.domain,
        upstreams,
        lookup: (name) => this.#dnsLookup(name),
        logger: this.logger.child({ part: 'dns' }),
      });
      await this.#dns.start();
      this.logger.info({ dns: this.config.dns.listen, upstreams }, 'dns server listening');
    }
    if (this.config.metricsListen !== null) {
      const addr = parseHostPort(this.config.metricsListen, 'metricsListen');
      this.#metricsServer = new MetricsServer({
        host: addr.host,
        port: addr.port,
        collect: () => this.metrics(),
        health: () => ({ ok: true, text: `ok: ${this.node.isJoined ? `member of ${this.node.meshName}` : 'not joined'}, ${this.node.peers()?.upCount() ?? 0} peer(s) up` }),
        logger: this.logger.child({ part: 'metrics' }),
      });
      await this.#metricsServer.listen();
      this.logger.info({ metrics: this.config.metricsListen }, 'metrics listening');
    }
    this.#control = new ControlServer({ socketPath: this.config.control, handlers: this.#handlers(), logger: this.logger.child({ part: 'control' }) });
    await this.#control.start();
    this.logger.info({ control: this.config.control }, 'control socket ready');
    this.node.start();
    await this.#refresh();
    // a listener that clashed may bind later (the other process went away)
    this.#retryTimer = setInterval(() => void this.#forwarder.retryFailed(), 15_000);
    this.#retryTimer.unref();
    await this.#bootstrap();
    this.#warnOnTagDrift();
  }

  /**
   * Peers check allowFrom against the tags in this node's certificate, fixed when it joined; tags
   * edited in the config later change nothing until the node joins again. Say so rather than let
   * refusals look random.
   */
  #warnOnTagDrift(): void {
    const cert = this.node.cert;
    if (cert === undefined) return;
    const inCert = [...new Set(cert.tags)].sort();
    const inConfig = [...new Set(this.config.tags)].sort();
    if (inCert.join(',') === inConfig.join(',')) return;
    this.logger.warn(
      { certTags: inCert, configTags: inConfig },
      'config tags differ from the tags in this node\'s certificate; peers use the certificate\'s for allowFrom (join again with a new token to change them)',
    );
  }

  async #bootstrap(): Promise<void> {
    if (this.node.isJoined) return;
    if (this.config.bootstrap.meshName !== null && this.config.joinTokenFile === null) {
      this.node.initMesh(this.config.bootstrap.meshName);
      return;
    }
    if (this.config.joinTokenFile !== null) {
      let token: string;
      try {
        token = readFileSync(this.config.joinTokenFile, 'utf8').trim();
      } catch (err) {
        this.logger.error({ file: this.config.joinTokenFile, err: (err as Error).message }, 'cannot read the join token file');
        return;
      }
      if (token.length === 0) {
        this.logger.error({ file: this.config.joinTokenFile }, 'the join token file is empty: put a token from `osmoda-mesh token create` in it (this node has not joined)');
        return;
      }
      // joining needs the issuer; keep trying in the background so a boot-time race heals itself
      void this.#joinWithRetry(token, 0);
    }
  }

  async #joinWithRetry(token: string, attempt: number): Promise<void> {
    if (this.#closing || this.node.isJoined) return;
    try {
      await this.node.join(token, undefined);
    } catch (err) {
      const error = toMeshError(err);
      const isRetryable = error.code === ErrorCodes.JOIN_FAILED || error.code === ErrorCodes.DIAL_FAILED || error.code === ErrorCodes.HANDSHAKE_TIMEOUT;
      this.logger.error({ code: error.code, err: error.message, attempt }, 'join with the token file failed');
      if (isRetryable && attempt < 20) {
        const t = setTimeout(() => void this.#joinWithRetry(token, attempt + 1), Math.min(30_000, 1000 * 2 ** attempt));
        t.unref();
      }
    }
  }

  #scheduleRefresh(): void {
    if (this.#isRefreshScheduled) return;
    this.#isRefreshScheduled = true;
    setImmediate(() => {
      this.#isRefreshScheduled = false;
      this.#refresh().catch((err: unknown) => this.logger.error({ err: toMeshError(err).message }, 'refreshing names and listeners failed'));
    });
  }

  /** Where the mesh DNS sends clients for a service on this node, or undefined for its VIP. */
  #localAnswer(service: string, ports: number[]): string | undefined {
    const local = this.#local.get(service);
    if (local === undefined) return undefined;
    // only when every port of the service is served here on the same port of one IPv4 target
    const hosts = new Set<string>();
    for (const port of ports) {
      const target = local.ports.get(port);
      if (target === undefined || target.port !== port || !isIpv4(target.host)) return undefined;
      hosts.add(target.host);
    }
    return hosts.size === 1 ? [...hosts][0] : undefined;
  }

  async #refresh(): Promise<void> {
    if (this.#closing) return;
    const catalog = this.node.catalog();
    const wanted: { service: string; vip: string; ports: number[] }[] = [];
    let isVipMapChanged = false;
    for (const [service, ports] of catalog) {
      const before = this.#vips.lookup(service);
      const vip = this.#vips.allocate(service);
      if (before !== vip) isVipMapChanged = true;
      if (this.#localAnswer(service, ports) === undefined) wanted.push({ service, vip, ports });
    }
    if (isVipMapChanged) writeJsonFile(join(this.config.stateDir, VIPS_FILE), this.#vips.toJSON());
    if (this.#hostsFile !== undefined) {
      // the same answer the mesh DNS gives: the local target on a providing node, else the VIP
      const entries = [...catalog].map(([name, ports]) => ({ name, address: this.#localAnswer(name, ports) ?? this.#vips.allocate(name) }));
      try {
        this.#hostsFile.update(entries);
      } catch (err) {
        this.logger.error({ file: this.#hostsFile.path, err: (err as Error).message }, 'hosts file not updated');
      }
    }
    try {
      await this.#forwarder.reconcile(wanted);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'forward listeners could not be updated');
    }
  }

  #dnsLookup(name: string): { addresses: string[]; ttlSeconds: number } | 'nxdomain' | undefined {
    const ports = this.node.catalog().get(name);
    if (ports === undefined) return 'nxdomain';
    const address = this.#localAnswer(name, ports) ?? this.#vips.allocate(name);
    return { addresses: [address], ttlSeconds: DNS_TTL_SECONDS };
  }

  // ---- views for the control API ------------------------------------------------------------

  #peerViews(): PeerView[] {
    const peers = this.node.peers();
    return this.node
      .members()
      .filter((m) => m.nodeIdHex !== this.node.identity.nodeIdHex)
      .sort((a, b) => compareText(a.name, b.name))
      .map((m) => {
        const snap = peers?.snapshot(m.nodeIdHex);
        return {
          name: m.name,
          nodeId: m.nodeIdHex,
          state: snap?.state ?? 'down',
          path: snap?.path ?? null,
          lastHeartbeatAgeMs: snap?.lastHeardAgoMs ?? null,
          rttMs: snap?.rttMs ?? null,
          rxBytes: snap?.rxBytes ?? 0,
          txBytes: snap?.txBytes ?? 0,
          streams: snap?.streams ?? 0,
          bufferedBytes: snap?.bufferedBytes ?? 0,
          rekeys: snap?.rekeys ?? 0,
          services: m.services.map((s) => s.name).sort(),
          lastError: snap?.lastError ?? null,
        };
      });
  }

  #serviceView(service: string, ports: number[]): ServiceView {
    const local = this.#local.get(service);
    const targets = local ? [...local.ports.entries()].sort((a, b) => a[0] - b[0]) : [];
    return {
      name: service,
      vip: this.#vips.allocate(service),
      ports,
      providers: this.node.providersOf(service).map((p) => ({ node: p.name, state: p.state })),
      local: local
        ? // the targets in the order of `ports`: "127.0.0.1:5432" or "10.0.0.9:80, 10.0.0.9:443"
          {
            ports: targets.map(([port]) => port),
            target: targets.map(([, t]) => `${t.host}:${t.port}`).join(', '),
            allowFrom: accessRulesOf(targets.map(([, t]) => t)),
          }
        : null,
      problems: this.#forwarder.problemsOf(service),
    };
  }

  #serviceViews(): ServiceView[] {
    const catalog = this.node.catalog();
    for (const local of this.#local.all()) if (!catalog.has(local.name)) catalog.set(local.name, [...local.ports.keys()].sort((a, b) => a - b));
    return [...catalog].sort((a, b) => compareText(a[0], b[0])).map(([name, ports]) => this.#serviceView(name, ports));
  }

  status(): StatusResponse {
    const cert = this.node.cert;
    return {
      schema: CONTROL_SCHEMA,
      node: {
        name: this.node.nodeName,
        nodeId: this.node.identity.nodeIdHex,
        mesh: this.node.meshName,
        meshId: this.node.meshIdHex,
        isAdmin: this.node.isAdmin,
        isJoined: this.node.isJoined,
        endpoints: this.config.publicEndpoints,
        listen: this.config.listen,
        dns: this.config.dns.enable ? this.config.dns.listen : null,
        certExpiresAt: cert ? new Date(cert.expiresAtMs).toISOString() : null,
        certWarning: this.node.certWarning(),
        revoked: this.node.revokedNames(),
        version: ownPackageVersion(),
      },
      peers: this.#peerViews(),
      services: this.#serviceViews(),
    };
  }

  /** The Prometheus families served on metricsListen. */
  metrics(): MetricFamily[] {
    return metricFamilies({ metrics: this.node.metrics, peers: this.#peerViews(), serviceCount: this.node.catalog().size, dns: this.#dns?.stats() });
  }

  #handlers(): ControlHandlers {
    return {
      status: async () => this.status(),
      peers: async () => ({ schema: CONTROL_SCHEMA, peers: this.#peerViews() }),
      services: async () => ({ schema: CONTROL_SCHEMA, services: this.#serviceViews() }),
      resolve: async (name) => {
        const bare = name.toLowerCase().replace(/\.$/, '').replace(new RegExp(`\\.${this.config.dns.domain}$`), '');
        const ports = this.node.catalog().get(bare) ?? (this.#local.get(bare) ? [...this.#local.get(bare)!.ports.keys()] : undefined);
        if (ports === undefined) throw new MeshError(ErrorCodes.UNKNOWN_SERVICE, `no mesh service named '${bare}' (see \`osmoda-mesh services\`)`);
        const answer = this.#dnsLookup(bare);
        return {
          schema: CONTROL_SCHEMA,
          name: bare,
          addresses: answer === undefined || answer === 'nxdomain' ? [] : answer.addresses,
          service: this.#serviceView(bare, ports),
        };
      },
      init: async ({ mesh }) => {
        validateServiceName(mesh, 'mesh');
        const result = this.node.initMesh(mesh);
        return { schema: CONTROL_SCHEMA, mesh: result.meshName, meshId: result.meshIdHex, node: this.node.nodeName };
      },
      createToken: async ({ ttlMs, uses }) => {
        const result = this.node.createToken(ttlMs ?? 24 * 3600 * 1000, uses ?? 1);
        return { schema: CONTROL_SCHEMA, token: result.token, tokenId: result.tokenIdHex, expiresAt: new Date(result.expiresAtMs).toISOString(), uses: uses ?? 1 };
      },
      listTokens: async () => {
        const now = this.#clock.now();
        return {
          schema: CONTROL_SCHEMA,
          tokens: this.node
            .listTokens()
            .sort((a, b) => a.expiresAtMs - b.expiresAtMs)
            .map((t) => ({ tokenId: t.id, expiresAt: new Date(t.expiresAtMs).toISOString(), usesLeft: t.usesLeft, isExpired: t.expiresAtMs <= now })),
        };
      },
      revokeToken: async ({ tokenId }) => ({ schema: CONTROL_SCHEMA, tokenId, wasKnown: this.node.revokeToken(tokenId) }),
      revoke: async ({ node }) => {
        const result = this.node.revoke(node);
        return { schema: CONTROL_SCHEMA, node: result.name, nodeId: result.nodeIdHex, revokedCount: result.revokedCount };
      },
      ping: async ({ node, count }) => {
        const rttMs: number[] = [];
        for (let i = 0; i < (count ?? 1); i++) {
          if (i > 0) await new Promise((resolve) => setTimeout(resolve, 1000));
          rttMs.push(await this.node.ping(node, 5_000));
        }
        return { schema: CONTROL_SCHEMA, node, rttMs };
      },
      join: async ({ token, name }) => {
        if (name !== undefined) validateServiceName(name, 'name');
        const result = await this.node.join(token, name);
        return { schema: CONTROL_SCHEMA, mesh: result.meshName, node: result.nodeName, wasAlreadyJoined: result.wasAlreadyJoined };
      },
      expose: async (request: ExposeRequest) => {
        const name = validateServiceName(request.name, 'name');
        const port = parsePort(request.port, 'port');
        const target = request.target === undefined ? { host: '127.0.0.1', port } : parseHostPort(request.target, 'target', port);
        const allowFrom = request.allowFrom === undefined ? null : [...new Set(request.allowFrom)];
        this.#runtimeExposures.set(`${name}:${port}`, { name, port, targetHost: target.host, targetPort: target.port, allowFrom });
        this.#saveExposures();
        this.#applyExposures();
        await this.#refresh();
        this.logger.info({ service: name, port, target: `${target.host}:${target.port}`, allowFrom }, 'service exposed');
        return { schema: CONTROL_SCHEMA, service: this.#serviceView(name, this.node.catalog().get(name) ?? [port]) };
      },
      unexpose: async ({ name }) => {
        let wasExposed = false;
        for (const [key, e] of this.#runtimeExposures) {
          if (e.name === name) {
            this.#runtimeExposures.delete(key);
            wasExposed = true;
          }
        }
        if (this.config.services[name] !== undefined) {
          throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `service '${name}' is declared in the config file; remove it there`);
        }
        this.#saveExposures();
        this.#applyExposures();
        await this.#refresh();
        return { schema: CONTROL_SCHEMA, name, wasExposed };
      },
    };
  }

  /** Graceful stop in reverse start order; idempotent, late callers join the same close. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closing = (async () => {
      if (this.#retryTimer) clearInterval(this.#retryTimer);
      await this.#control?.close();
      await this.#metricsServer?.close();
      await this.#forwarder.close();
      await this.#dns?.close();
      await this.node.close();
      this.#local.destroy();
      await this.#tunnelServer?.close();
      try {
        this.#hostsFile?.remove();
      } catch (err) {
        this.logger.error({ err: (err as Error).message }, 'hosts file block not removed');
      }
      this.logger.info('agent stopped');
    })();
    return this.#closing;
  }
}

/**
 * One service's access rule for the views: rules are per port, but a service normally has one; if
 * its ports differ, the union is shown (null, every member, wins).
 */
function accessRulesOf(targets: readonly LocalTarget[]): string[] | null {
  const rules = new Set<string>();
  for (const t of targets) {
    if (t.allowFrom === null) return null;
    for (const rule of t.allowFrom) rules.add(rule);
  }
  return [...rules].sort();
}
