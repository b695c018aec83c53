/**
 * Network-namespace topology for end-to-end tests: one namespace per host, all joined by veth pairs
 * to a Linux bridge that lives in a "switch" namespace of its own. Nothing is created in the root
 * namespace (the veth pair is made inside the host namespace and its peer moved straight into the
 * switch), so a crashed test can leave namespaces behind but never a stray address or link on the
 * machine. Names carry `osmt-<pid>-` so `sweepStale` can tell which leftovers belong to dead runs.
 */
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { findOnPath, isPidRunning, NamespaceProcesses, runIp, sweepStaleOf, type NsExecOptions, type NsExecResult, type NsSpawnOptions } from '../../../bench/netns-primitives.js';

export { isPidRunning };

export interface HostInfo {
  /** Namespace name, usable with `ip netns exec`. */
  readonly ns: string;
  /** The host's address on the shared bridge (10.77.<subnet>.<n>, /24). */
  readonly ip: string;
}

/** `timeoutMs` defaults to 15 000 ms here; `maxOutputBytes` to 16 MiB. */
export type ExecOptions = NsExecOptions;
export type ExecResult = NsExecResult;
export type SpawnInNsOptions = NsSpawnOptions;

export interface ResolverConfig {
  nameserver: string;
  search?: string | readonly string[];
}

export interface Topology {
  /** The `osmt-<pid>-<tag>-` prefix shared by every namespace of this topology. */
  readonly prefix: string;
  readonly switchNs: string;
  /** `10.77.<subnet>` (no trailing dot); hosts are `.1`, `.2`, … in the order given. */
  readonly subnet: string;
  readonly hosts: Readonly<Record<string, HostInfo>>;
  exec(host: string, cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Like `exec`, but rejects with the command's stderr unless it exits 0. */
  execOk(host: string, cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts a long-lived process in its own process group; `destroy()` kills that group. */
  spawn(host: string, cmd: string, args?: readonly string[], opts?: SpawnInNsOptions): ChildProcess;
  /** SIGTERM to the child's process group, SIGKILL after `graceMs` (default 3000); resolves once it has exited. */
  kill(child: ChildProcess, graceMs?: number): Promise<void>;
  /** Writes /etc/netns/<ns>/resolv.conf, which `ip netns exec` bind-mounts over /etc/resolv.conf. */
  setResolver(host: string, config: ResolverConfig): void;
  linkDown(host: string): Promise<void>;
  linkUp(host: string): Promise<void>;
  /** Kills every process started here or still inside our namespaces, deletes the namespaces and their /etc/netns dirs. Idempotent. */
  destroy(): Promise<void>;
}

export interface TopologyOptions {
  hosts: readonly string[];
}

/** Prefix every namespace and temp dir this harness creates starts with. */
export const NAME_PREFIX = 'osmt-';
const HOST_NAME = /^[a-z][a-z0-9]{0,11}$/;
const MAX_HOSTS = 200;
const STALE_NAME = /^osmt-(\d+)-/;
/** Temp dirs go here, not os.tmpdir(): the postgres user must be able to reach them, and the sweep must find them. */
export const TMP_ROOT = '/tmp';

/** The bin dir of the newest PostgreSQL under /usr/lib/postgresql (Debian keeps server binaries off PATH). */
export function findPostgresBinDir(): string | undefined {
  let versions: string[];
  try {
    versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v));
  } catch {
    return undefined;
  }
  versions.sort((x, y) => Number(y) - Number(x));
  for (const v of versions) {
    const dir = `/usr/lib/postgresql/${v}/bin`;
    try {
      accessSync(join(dir, 'postgres'), fsConstants.X_OK);
      return dir;
    } catch {
      // broken install of this version; try an older one
    }
  }
  return undefined;
}

export type E2eAvailability = { ok: true } | { ok: false; reason: string };

/** What the e2e suites need from the machine; `reason` lists everything missing at once. */
export function e2eAvailability(): E2eAvailability {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push(`Linux (got ${process.platform})`);
  if (process.getuid?.() !== 0) missing.push(`root (running as uid ${process.getuid?.() ?? 'unknown'})`);
  for (const bin of ['ip', 'ping', 'redis-server', 'redis-cli', 'runuser', 'psql', 'pg_isready']) {
    if (findOnPath(bin) === undefined) missing.push(`\`${bin}\` on PATH`);
  }
  const pgBin = findPostgresBinDir();
  if (pgBin === undefined) missing.push('postgres/initdb/pg_ctl under /usr/lib/postgresql/<version>/bin');
  else {
    for (const bin of ['initdb', 'pg_ctl']) {
      try {
        accessSync(join(pgBin, bin), fsConstants.X_OK);
      } catch {
        missing.push(`${join(pgBin, bin)}`);
      }
    }
  }
  if (missing.length === 0) return { ok: true };
  return { ok: false, reason: `missing: ${missing.join(', ')} (CI installs them in .ci/run)` };
}

/**
 * Removes namespaces, /etc/netns dirs and temp dirs named `osmt-<pid>-…` whose pid is no longer
 * running: leftovers of a run that was SIGKILLed before its hooks could clean up. Returns what it removed.
 */
export function sweepStale(): string[] {
  return sweepStaleOf(STALE_NAME, [
    ['/etc/netns', STALE_NAME],
    [TMP_ROOT, STALE_NAME],
  ]);
}

export async function createTopology(options: TopologyOptions): Promise<Topology> {
  const names = options.hosts;
  if (names.length === 0 || names.length > MAX_HOSTS) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `topology hosts: expected 1..${MAX_HOSTS} names, got ${names.length}`,
    );
  }
  const seen = new Set<string>();
  for (const name of names) {
    if (!HOST_NAME.test(name)) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `topology host name: expected ${HOST_NAME.source}, got '${name}'`,
      );
    }
    if (seen.has(name)) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `topology host name: '${name}' appears twice`);
    }
    seen.add(name);
  }

  sweepStale();

  // A random tag lets one process build several topologies; the subnet only has to differ between
  // concurrent runs for readability in `ip` output, since each topology's bridge is isolated anyway.
  const tag = Math.floor(Math.random() * 0x10000)
    .toString(16)
    .padStart(4, '0');
  const prefix = `${NAME_PREFIX}${process.pid}-${tag}-`;
  const subnet = `10.77.${(process.pid % 250) + 1}`;
  const switchNs = `${prefix}sw`;
  const hosts: Record<string, HostInfo> = {};
  names.forEach((name, i) => {
    hosts[name] = { ns: `${prefix}${name}`, ip: `${subnet}.${i + 1}` };
  });

  const processes = new NamespaceProcesses(`topology ${prefix}`, { defaultTimeoutMs: 15_000 });

  const hostInfo = (host: string): HostInfo => {
    const info = hosts[host];
    if (info === undefined) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `topology host: got '${host}', expected one of ${Object.keys(hosts).join(', ')}`,
      );
    }
    return info;
  };

  const exec = (host: string, cmd: string, args: readonly string[] = [], opts: ExecOptions = {}): Promise<ExecResult> => processes.exec(hostInfo(host).ns, cmd, args, opts);

  const setLink = async (host: string, state: 'up' | 'down'): Promise<void> => {
    runIp(['-n', hostInfo(host).ns, 'link', 'set', 'eth0', state]);
  };

  const topology: Topology = {
    prefix,
    switchNs,
    subnet,
    hosts,
    exec,
    async execOk(host, cmd, args = [], opts = {}) {
      const r = await exec(host, cmd, args, opts);
      if (r.code !== 0) {
        throw new MeshError(
          ErrorCodes.INTERNAL,
          `${cmd} ${args.join(' ')} in ${host}: expected exit 0, got ${r.timedOut ? 'timeout' : (r.code ?? r.signal)}: ${r.stderr.trim().slice(0, 2000)}`,
        );
      }
      return r;
    },
    spawn: (host, cmd, args = [], opts = {}) => processes.spawn(hostInfo(host).ns, cmd, args, opts),
    kill: (child, graceMs) => processes.kill(child, graceMs),
    setResolver(host, config) {
      const { ns } = hostInfo(host);
      const search = typeof config.search === 'string' ? [config.search] : (config.search ?? []);
      const lines = [`nameserver ${config.nameserver}`];
      if (search.length > 0) lines.push(`search ${search.join(' ')}`);
      mkdirSync(`/etc/netns/${ns}`, { recursive: true });
      writeFileSync(`/etc/netns/${ns}/resolv.conf`, `${lines.join('\n')}\n`);
    },
    linkDown: (host) => setLink(host, 'down'),
    linkUp: (host) => setLink(host, 'up'),
    destroy: () => processes.destroy(),
  };

  try {
    processes.addNamespace(switchNs);
    runIp(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
    runIp(['-n', switchNs, 'link', 'set', 'br0', 'up']);
    names.forEach((name, i) => {
      const { ns, ip } = hosts[name] as HostInfo;
      processes.addNamespace(ns);
      // Both ends are born inside our namespaces: the root namespace never sees them.
      runIp(['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', switchNs]);
      runIp(['-n', switchNs, 'link', 'set', `p${i}`, 'master', 'br0']);
      runIp(['-n', switchNs, 'link', 'set', `p${i}`, 'up']);
      runIp(['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      runIp(['-n', ns, 'link', 'set', 'eth0', 'up']);
    });
  } catch (err) {
    await topology.destroy();
    throw err;
  }
  return topology;
}
