/** The agent's configuration: one JSON file (the NixOS module writes it with builtins.toJSON). */

export interface ServiceConfig {
  port: number;
  targetHost: string;
  targetPort: number;
  /**
   * Who may open streams to this service, checked by this (the providing) node against the
   * opener's certificate: node names and `tag:<tag>` entries. null: every mesh member; []: no one
   * (reachable only from this node itself).
   */
  allowFrom: string[] | null;
}

export type ForwardMode = 'bind' | 'nat';

export interface DnsConfig {
  enable: boolean;
  /** host:port of the mesh DNS server. */
  listen: string;
  /**
   * Resolvers for every name outside the mesh, "host" or "host:port"; null: the nameservers of
   * /etc/resolv.conf other than the agent itself; []: forward nothing (answer SERVFAIL).
   */
  upstreams: string[] | null;
  domain: string;
}

export interface AgentConfig {
  /** This node's name in the mesh (DNS label). Default: the host name. */
  nodeName: string;
  stateDir: string;
  /** host:port the tunnel server listens on. */
  listen: string;
  /** URLs peers dial to reach this node, e.g. ws://203.0.113.5:18800 (the path is added). */
  publicEndpoints: string[];
  control: string;
  dns: DnsConfig;
  vipRange: string;
  /**
   * How VIP:port reaches the agent (SPEC §4a). bind: listen on VIP:port (no privileges; clashes
   * with a local server on 0.0.0.0:port). nat: listen on 127.0.0.1 ports of the agent's choosing
   * and DNAT VIP:port to them with nftables (needs CAP_NET_ADMIN and the nft command).
   */
  forwardMode: ForwardMode;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  tags: string[];
  /** Exposed services declared in config (merged with ones added by `expose`). */
  services: Record<string, ServiceConfig>;
  /** File with a join token, read once at start while the node has not joined. */
  joinTokenFile: string | null;
  /** Create the mesh on first start if this node has none. */
  bootstrap: { meshName: string | null };
  /** host:port for Prometheus /metrics and /healthz over plain HTTP; null: not served. */
  metricsListen: string | null;
  /** Hosts file (e.g. /etc/hosts) to keep a marked block of mesh names in; null: none. */
  hostsFile: string | null;
}

export const DEFAULT_PORT = 18800;
export const TUNNEL_PATH = '/osmoda-mesh/v1';
export const JOIN_PATH = '/osmoda-mesh/v1/join';

export function defaultConfig(hostName: string): AgentConfig {
  return {
    nodeName: hostName,
    stateDir: '/var/lib/osmoda-mesh',
    listen: `0.0.0.0:${DEFAULT_PORT}`,
    publicEndpoints: [],
    control: '/run/osmoda-mesh/control.sock',
    dns: { enable: true, listen: '127.77.0.53:53', upstreams: null, domain: 'mesh' },
    vipRange: '127.77.0.0/16',
    forwardMode: 'bind',
    logLevel: 'info',
    tags: [],
    services: {},
    joinTokenFile: null,
    bootstrap: { meshName: null },
    metricsListen: null,
    hostsFile: null,
  };
}
