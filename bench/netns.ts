/**
 * Two network namespaces joined by one veth pair, for the benchmark paths: `client` and `server`.
 * Both ends of the pair are born inside our namespaces, so the root namespace never sees a link or
 * an address of ours; 10.x addresses exist only inside them. Every name carries `osmb-<pid>-`, so
 * `sweepStale` can tell a dead run's leftovers (namespaces, /etc/netns dirs, temp dirs, wireguard
 * sockets) from a live one's. Cleanup runs on destroy(), on process exit and on SIGINT/SIGTERM.
 * The namespace and process primitives are shared with the e2e tests (netns-primitives.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { NamespaceProcesses, runIp, sweepStaleOf, type NsExecOptions, type NsExecResult, type NsSpawnOptions } from './netns-primitives.js';

export const BENCH_PREFIX = 'osmb-';
const STALE_NAME = /^osmb-(\d+)-/;
/** wireguard-go keeps its UAPI socket here, named after the interface (`wb<pid>c`). */
const WG_RUN_DIR = '/var/run/wireguard';
const STALE_WG = /^wb(\d+)[cs]\.sock$/;

export type Side = 'client' | 'server';

export type ExecResult = NsExecResult;

export interface BenchTopology {
  readonly prefix: string;
  /** Per-run number (1..250) used in addresses and interface names. */
  readonly id: number;
  readonly ns: Readonly<Record<Side, string>>;
  /** Underlay addresses on the veth pair, 10.201.<id>.1 (client) and .2 (server). */
  readonly ip: Readonly<Record<Side, string>>;
  /** A temp dir named with the prefix (swept if the run dies). */
  readonly dir: string;
  exec(side: Side, cmd: string, args?: readonly string[], opts?: NsExecOptions): Promise<ExecResult>;
  execOk(side: Side, cmd: string, args?: readonly string[], opts?: NsExecOptions): Promise<ExecResult>;
  /** A long-lived process in its own process group inside the namespace. `ip netns exec` execs, so child.pid is the command's pid. */
  spawn(side: Side, cmd: string, args?: readonly string[], opts?: NsSpawnOptions): ChildProcess;
  kill(child: ChildProcess, graceMs?: number): Promise<void>;
  destroy(): Promise<void>;
}

/** Removes namespaces, /etc/netns dirs, /tmp dirs and wireguard sockets of benchmark runs whose pid is gone. */
export function sweepStale(): string[] {
  return sweepStaleOf(STALE_NAME, [
    ['/etc/netns', STALE_NAME],
    ['/tmp', STALE_NAME],
    [WG_RUN_DIR, STALE_WG],
  ]);
}

/** Settings inside each namespace only: many short connections (conn/s) must not run out of ports. */
const NS_SYSCTLS: readonly (readonly [string, string])[] = [
  ['net.ipv4.tcp_tw_reuse', '1'],
  ['net.ipv4.ip_local_port_range', '1024 65000'],
];

export async function createBenchTopology(): Promise<BenchTopology> {
  sweepStale();
  const id = (process.pid % 250) + 1;
  const prefix = `${BENCH_PREFIX}${process.pid}-`;
  const ns = { client: `${prefix}c`, server: `${prefix}s` } as const;
  const addr = { client: `10.201.${id}.1`, server: `10.201.${id}.2` } as const;
  const dir = mkdtempSync(join('/tmp', prefix));
  const processes = new NamespaceProcesses(`bench topology ${prefix}`, {
    defaultTimeoutMs: 30_000,
    afterCleanupSync: () => {
      for (const side of ['c', 's']) rmSync(join(WG_RUN_DIR, `wb${id}${side}.sock`), { force: true });
      rmSync(dir, { recursive: true, force: true });
    },
  });

  const exec = (side: Side, cmd: string, args: readonly string[] = [], opts: NsExecOptions = {}): Promise<ExecResult> => processes.exec(ns[side], cmd, args, opts);
  const topology: BenchTopology = {
    prefix,
    id,
    ns,
    ip: addr,
    dir,
    exec,
    async execOk(side, cmd, args = [], opts = {}) {
      const r = await exec(side, cmd, args, opts);
      if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${side}: exit ${r.timedOut ? 'timeout' : (r.code ?? r.signal)}: ${r.stderr.trim().slice(0, 1500)}`);
      return r;
    },
    spawn: (side, cmd, args = [], opts = {}) => processes.spawn(ns[side], cmd, args, opts),
    kill: (child, graceMs) => processes.kill(child, graceMs),
    destroy: () => processes.destroy(),
  };

  try {
    for (const side of ['client', 'server'] as const) processes.addNamespace(ns[side]);
    // One veth pair, both ends created inside our namespaces (eth0 on each side).
    runIp(['-n', ns.client, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.server]);
    for (const side of ['client', 'server'] as const) {
      runIp(['-n', ns[side], 'addr', 'add', `${addr[side]}/24`, 'dev', 'eth0']);
      runIp(['-n', ns[side], 'link', 'set', 'eth0', 'up']);
      for (const [key, value] of NS_SYSCTLS) {
        // sysctl -w exits 0 even when the kernel refuses a value: read it back.
        await topology.exec(side, 'sysctl', ['-q', '-w', `${key}=${value}`]);
        const got = (await topology.execOk(side, 'sysctl', ['-n', key])).stdout.trim().split(/\s+/).join(' ');
        if (got !== value) throw new Error(`sysctl ${key} in ${ns[side]}: set ${value}, reads ${got}`);
      }
    }
  } catch (err) {
    await topology.destroy();
    throw err;
  }
  return topology;
}
