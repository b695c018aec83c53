/**
 * The network benchmarks: two namespaces joined by veth, the same workloads over every path
 * (direct TCP, the mesh under each Node version, ssh -L, wireguard-go, nebula, socat). All paths
 * are set up once and stay up; each round runs every path in turn, so slow drift on the machine
 * touches all of them alike, in another order each round (roundOrder), so no path always runs
 * right after the same one. Figures are medians over the rounds.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { createBenchTopology, sweepStale } from './netns.js';
import { directPath, meshPath, nebulaPath, nodeRelayPath, socatPath, sshPath, startServers, waitReachable, wireguardPath, type BenchPath } from './paths.js';
import { sampleWhile } from './proc.js';
import type { Metric, PathRecord } from './report.js';
import { findOnPath } from './netns-primitives.js';
import { ensureTools, nodeBinaries, packageOf, type ToolReport } from './tools.js';
import { connectionRate, iperf, roundOrder, roundTrips, worstFairShareDeviationPct, type Durations } from './workloads.js';
import { AGENT_ENVIRONMENT, AGENT_NODE_FLAGS } from '../src/daemon/process-settings.js';

export interface NetworkOptions {
  durations: Durations;
  rounds: number;
  coldRepeats: number;
  isInstallAllowed: boolean;
  /** Only paths whose name contains one of these (all when empty). */
  only: readonly string[];
  /** Node majors for the mesh rows; the machine's own comes first. */
  nodeMajors: readonly number[];
  log: (line: string) => void;
}

export interface NetworkResult {
  records: PathRecord[];
  tools: ToolReport | null;
  /** Why the whole section did not run, or null. */
  skipped: string | null;
  topology: { client: string; server: string; underlay: string } | null;
}

/** A quarter of the agent's default 1024 streams per tunnel: past this, the next round would run into the limit. */
const LEAK_RESTART_STREAMS = 256;

type PathFactory = { name: string; needs: string[]; make: () => Promise<BenchPath>; isReverse?: boolean };

function prerequisites(): string | null {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push(`Linux (got ${process.platform})`);
  if (process.getuid?.() !== 0) missing.push(`root (running as uid ${process.getuid?.() ?? '?'})`);
  if (findOnPath('ip') === undefined) missing.push('`ip` (iproute2)');
  return missing.length === 0 ? null : `needs ${missing.join(', ')}`;
}

function tunReason(): string | null {
  try {
    accessSync('/dev/net/tun', fsConstants.R_OK | fsConstants.W_OK);
    return null;
  } catch (err) {
    return `/dev/net/tun is not usable (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
  }
}

export async function runNetwork(opts: NetworkOptions): Promise<NetworkResult> {
  const log = opts.log;
  const why = prerequisites();
  if (why !== null) {
    log(`network benchmarks SKIPPED: ${why}`);
    return { records: [], tools: null, skipped: why, topology: null };
  }
  const tools = ensureTools({ isInstallAllowed: opts.isInstallAllowed, log });
  for (const [pkg, reason] of Object.entries(tools.missing)) log(`missing ${pkg}: ${reason}`);
  if (tools.paths.iperf3 === undefined) {
    const reason = `iperf3 is missing: ${tools.missing.iperf3 ?? 'not found'}`;
    log(`network benchmarks SKIPPED: ${reason}`);
    return { records: [], tools, skipped: reason, topology: null };
  }
  const nodes = nodeBinaries(opts.nodeMajors, { isInstallAllowed: opts.isInstallAllowed, log });
  const tun = tunReason();
  const need = (programs: string[]): string | null => {
    const absent = programs.filter((p) => tools.paths[p] === undefined);
    return absent.length === 0 ? null : `${absent.join(', ')} not available (${[...new Set(absent.map((p) => tools.missing[packageOf(p)] ?? 'not installed'))].join('; ')})`;
  };

  for (const gone of sweepStale()) log(`removed a dead run's leftover: ${gone}`);
  const topo = await createBenchTopology();
  log(`namespaces ${topo.ns.client} (${topo.ip.client}) and ${topo.ns.server} (${topo.ip.server}), veth MTU 1500`);
  const records: PathRecord[] = [];
  const live: { path: BenchPath; record: PathRecord; isReverse: boolean }[] = [];
  try {
    const servers = await startServers(topo, tools.paths.iperf3);
    const factories: (PathFactory & { skip?: string | null })[] = [{ name: 'direct', needs: [], make: async () => directPath(topo) }];
    nodes.forEach((n, index) => {
      const name = index === 0 ? 'mesh' : `mesh (node ${n.major})`;
      factories.push({
        name,
        needs: [],
        skip: n.skipped ?? null,
        // -R for the machine's Node only: 4 × 11 s per round more for each row would break the time budget.
        isReverse: index === 0,
        make: () => meshPath(topo, { name, nodePath: n.path!, nodeVersion: n.version!, nodeFlags: AGENT_NODE_FLAGS, env: AGENT_ENVIRONMENT, index }),
      });
    });
    // The same agent on the machine's Node without AGENT_NODE_FLAGS, and without AGENT_ENVIRONMENT,
    // so that the effect of each is a ratio within one run.
    const own = nodes[0];
    if (own !== undefined && own.skipped === undefined) {
      factories.push({
        name: 'mesh (V8 default GC)',
        needs: [],
        make: () => meshPath(topo, { name: 'mesh (V8 default GC)', nodePath: own.path!, nodeVersion: own.version!, nodeFlags: [], env: AGENT_ENVIRONMENT, index: nodes.length }),
      });
      factories.push({
        name: 'mesh (glibc default arenas)',
        needs: [],
        make: () => meshPath(topo, { name: 'mesh (glibc default arenas)', nodePath: own.path!, nodeVersion: own.version!, nodeFlags: AGENT_NODE_FLAGS, env: {}, index: nodes.length + 1 }),
      });
    }
    factories.push({ name: 'ssh -L', needs: ['ssh', 'ssh-keygen', 'sshd'], make: () => sshPath(topo, tools.paths) });
    factories.push({ name: 'wireguard-go', needs: ['wireguard-go', 'wg'], skip: tun, make: () => wireguardPath(topo, tools.paths) });
    factories.push({ name: 'nebula', needs: ['nebula', 'nebula-cert'], skip: tun, make: () => nebulaPath(topo, tools.paths) });
    factories.push({ name: 'socat', needs: ['socat'], make: () => socatPath(topo, tools.paths) });
    factories.push({ name: 'node relay', needs: [], make: () => nodeRelayPath(topo, { shape: 'one', nodeFlags: AGENT_NODE_FLAGS, env: AGENT_ENVIRONMENT }) });
    factories.push({ name: 'node relay chain', needs: [], make: () => nodeRelayPath(topo, { shape: 'chain', nodeFlags: AGENT_NODE_FLAGS, env: AGENT_ENVIRONMENT }) });

    // Set up concurrently (each path has its own ports, devices and temp files); keep the order for the tables.
    const chosen = factories.filter((f) => opts.only.length === 0 || opts.only.some((o) => f.name.includes(o)));
    const setups = await Promise.all(
      chosen.map(async (f) => {
        const record: PathRecord = { path: f.name, skipped: null, meta: {}, runs: {}, errors: [], notes: [] };
        const reason = typeof f.skip === 'string' ? f.skip : need(f.needs);
        if (reason !== null) {
          record.skipped = reason;
          log(`skip ${f.name}: ${reason}`);
          return { record };
        }
        const t0 = performance.now();
        try {
          const path = await f.make();
          record.meta = path.meta;
          log(`${f.name}: up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
          return { record, path };
        } catch (err) {
          record.skipped = `setup failed: ${(err as Error).message}`;
          log(`skip ${f.name}: ${record.skipped}`);
          return { record };
        }
      }),
    );
    for (const [i, s] of setups.entries()) {
      records.push(s.record);
      if (s.path !== undefined) live.push({ path: s.path, record: s.record, isReverse: chosen[i]!.isReverse === true });
    }

    const d = opts.durations;
    const push = (record: PathRecord, m: Metric, v: number | null): void => {
      if (v === null || !Number.isFinite(v)) return;
      (record.runs[m] ??= []).push(v);
    };
    const attempt = async <T>(record: PathRecord, what: string, fn: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await fn();
      } catch (err) {
        // iperf3 -s can be left "busy" by a client that failed: restart it and try once more.
        if (what.startsWith('iperf3')) {
          await servers.restartIperf();
          try {
            return await fn();
          } catch (err2) {
            err = err2;
          }
        }
        const msg = `${what}: ${(err as Error).message}`;
        record.errors.push(msg);
        log(`  ${record.path}: FAILED ${msg}`);
        return undefined;
      }
    };

    for (let round = 1; round <= opts.rounds; round++) {
      const order = roundOrder(live, round);
      log(`round ${round}/${opts.rounds}: ${order.map((l) => l.record.path).join(', ')}`);
      for (const { path, record, isReverse } of order) {
        const t0 = performance.now();
        const sides = path.pids();
        const hasProcesses = sides.client.length + sides.server.length > 0;
        if (hasProcesses) {
          // Idle: every other path ran meanwhile, this one carried nothing.
          const idle = await sampleWhile(sides, () => new Promise((r) => setTimeout(r, d.idleSeconds * 1000)), 1000);
          push(record, 'rss_mb_idle', Math.max(idle.rssMbMax.client, idle.rssMbMax.server));
          push(record, 'rss_private_mb_idle', Math.max(idle.privateMbMax.client, idle.privateMbMax.server));
          push(record, 'cpu_idle_client_pct', idle.cpuPct.client);
          push(record, 'cpu_idle_server_pct', idle.cpuPct.server);
        }
        const one = await attempt(record, 'iperf3 -P 1', () => sampleWhile(sides, () => iperf(topo, tools.paths.iperf3!, path.targets.iperf, { streams: 1, isReverse: false, d }), 1000));
        if (one !== undefined) {
          push(record, 'gbps_1', one.result.gbps);
          // Retransmits show drops on the path (the receiving wireguard-go or nebula socket overflowing while it waits for a CPU, or an MTU problem).
          push(record, 'retransmits_1', one.result.retransmits);
          if (hasProcesses) {
            push(record, 'rss_mb_load', Math.max(one.rssMbMax.client, one.rssMbMax.server));
            push(record, 'rss_private_mb_load', Math.max(one.privateMbMax.client, one.privateMbMax.server));
            push(record, 'rss_mb_load_client', one.rssMbMax.client);
            push(record, 'rss_mb_load_server', one.rssMbMax.server);
            push(record, 'cpu_load_client_pct', one.cpuPct.client);
            push(record, 'cpu_load_server_pct', one.cpuPct.server);
            // CPU seconds of the path's processes per GB moved, during this run.
            push(record, 'cpu_s_per_gb', (one.cpuPct.client + one.cpuPct.server) / 100 / (one.result.gbps / 8));
          }
        }
        const four = await attempt(record, 'iperf3 -P 4', () => iperf(topo, tools.paths.iperf3!, path.targets.iperf, { streams: 4, isReverse: false, d }));
        push(record, 'gbps_4', four?.gbps ?? null);
        push(record, 'fair_share_dev_pct_4', four === undefined ? null : worstFairShareDeviationPct(four.streamGbps));
        if (isReverse) {
          // The agents' memory in this direction too: there the client's agent writes what the tunnel
          // brings to a local socket, and a chunk waiting in that socket's queue can outlive the
          // minor collections that free the forward direction's (util/buffer-reclaim.ts).
          const r1 = await attempt(record, 'iperf3 -P 1 -R', () => sampleWhile(sides, () => iperf(topo, tools.paths.iperf3!, path.targets.iperf, { streams: 1, isReverse: true, d }), 1000));
          push(record, 'gbps_1_reverse', r1?.result.gbps ?? null);
          if (hasProcesses && r1 !== undefined) push(record, 'rss_mb_load_reverse', Math.max(r1.rssMbMax.client, r1.rssMbMax.server));
          const r4 = await attempt(record, 'iperf3 -P 4 -R', () => iperf(topo, tools.paths.iperf3!, path.targets.iperf, { streams: 4, isReverse: true, d }));
          push(record, 'gbps_4_reverse', r4?.gbps ?? null);
        }
        const rr = await attempt(record, 'round trips', () => roundTrips(topo, path.targets.echo, d));
        push(record, 'rr_p50_us', rr?.p50Us ?? null);
        push(record, 'rr_p99_us', rr?.p99Us ?? null);
        const connSampled = await attempt(record, 'conn/s', () => sampleWhile(sides, () => connectionRate(topo, path.targets.conn, d), 1000));
        const conn = connSampled?.result;
        push(record, 'conn_per_s', conn?.perSec ?? null);
        if (hasProcesses && connSampled !== undefined) {
          push(record, 'cpu_conn_client_pct', connSampled.cpuPct.client);
          push(record, 'cpu_conn_server_pct', connSampled.cpuPct.server);
          // The RSS under load above is from the bulk run; new connections grow other parts (sockets, streams, a busier young generation).
          push(record, 'rss_mb_conn', Math.max(connSampled.rssMbMax.client, connSampled.rssMbMax.server));
        }
        if (conn !== undefined && conn.errors > 0) {
          push(record, 'conn_per_s_before_first_error', conn.perSecBeforeFirstError);
          record.errors.push(`conn/s round ${round}: ${conn.errors} failed connections, the first after ${conn.firstErrorS?.toFixed(2)} s and ${Math.round((conn.perSecBeforeFirstError ?? 0) * (conn.firstErrorS ?? 0))} good ones (last: ${conn.lastError})`);
        }
        if (path.streamsOpen !== undefined) {
          // Every connection of the workloads has closed by now: whatever the agents still count is a leak.
          await new Promise((r) => setTimeout(r, 1000));
          const open = await path.streamsOpen().catch(() => undefined);
          if (open !== undefined) {
            push(record, 'streams_left_open_client', open.client);
            push(record, 'streams_left_open_server', open.server);
            if (open.client + open.server > 0) log(`  ${path.name}: ${open.client} (client agent) and ${open.server} (server agent) streams still open after every connection closed`);
            if (Math.max(open.client, open.server) >= LEAK_RESTART_STREAMS && round < opts.rounds) {
              record.notes.push(`round ${round}: both agents restarted after the round, ${open.client}/${open.server} streams left open (client/server)`);
              log(`  ${path.name}: restarting both agents so the next round starts with an empty stream table`);
              await path.restartBoth!().catch((err: Error) => record.errors.push(`restart after round ${round}: ${err.message}`));
            }
          }
        }
        log(
          `  ${path.name.padEnd(16)} ${fmtN(one?.result.gbps, 2)} / ${fmtN(four?.gbps, 2)} Gbit/s, RR p50 ${fmtN(rr?.p50Us, 0)} p99 ${fmtN(rr?.p99Us, 0)} µs, ${fmtN(conn?.perSec, 0)} conn/s` +
            (hasProcesses && one !== undefined ? `, CPU ${one.cpuPct.client.toFixed(0)}+${one.cpuPct.server.toFixed(0)} %, RSS ${one.rssMbMax.client.toFixed(0)}/${one.rssMbMax.server.toFixed(0)} MB` : '') +
            ` (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
        );
      }
    }

    // Cold start, last (it restarts the client-side agent, state kept): from the agent process being
    // spawned to (a) its tunnel to the provider showing up in /v1/peers and (b) the first byte back
    // through the VIP (a probe retrying every 5 ms); and how long that first successful connection
    // itself took, on the tunnel that had just come up.
    for (const { path, record } of live) {
      if (path.restartClient === undefined || path.waitPeerUp === undefined) continue;
      for (let i = 0; i < opts.coldRepeats; i++) {
        const ok = await attempt(record, 'cold start', async () => {
          const spawnedAt = await path.restartClient!();
          const [reach, upAt] = await Promise.all([waitReachable(topo, path.targets.conn, 30_000, `${path.name} after restart`), path.waitPeerUp!(30_000)]);
          return { startMs: Number(reach.okAtNs - spawnedAt) / 1e6, tunnelUpMs: Number(upAt - spawnedAt) / 1e6, firstConnMs: reach.attemptMs };
        });
        push(record, 'cold_start_ms', ok?.startMs ?? null);
        push(record, 'cold_tunnel_up_ms', ok?.tunnelUpMs ?? null);
        push(record, 'cold_first_conn_ms', ok?.firstConnMs ?? null);
      }
      const show = (m: Metric, digits: number): string => (record.runs[m] ?? []).map((v) => v.toFixed(digits)).join(', ');
      log(`  ${path.name} cold: tunnel up ${show('cold_tunnel_up_ms', 0)} ms, first byte back ${show('cold_start_ms', 0)} ms after spawn; that first connection took ${show('cold_first_conn_ms', 1)} ms`);
    }
    for (const { path } of live.reverse()) await path.close().catch(() => undefined);
    await servers.close();
  } finally {
    await topo.destroy();
  }
  return { records, tools, skipped: null, topology: { client: topo.ns.client, server: topo.ns.server, underlay: `veth, ${topo.ip.client} ↔ ${topo.ip.server}, MTU 1500` } };
}

function fmtN(n: number | undefined, digits: number): string {
  return n === undefined ? '—' : n.toFixed(digits);
}
