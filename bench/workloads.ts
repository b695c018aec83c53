/**
 * The workloads run from the client namespace through one path: iperf3 (1 and 4 streams, either
 * direction), 64-byte round trips and new connections per second with bench/echo.ts, and the
 * mesh's cold start. Each returns one figure; the caller repeats and takes medians.
 */
import type { BenchTopology } from './netns.js';
import { ECHO_MAIN, type Target } from './paths.js';

export interface Durations {
  iperfSeconds: number;
  /** Seconds iperf3 leaves out at the start (-O): TCP slow start and, for the mesh, JIT warm-up. */
  iperfOmitSeconds: number;
  rrCount: number;
  rrWarmup: number;
  connSeconds: number;
  connLoops: number;
  idleSeconds: number;
}

export const FULL: Durations = { iperfSeconds: 10, iperfOmitSeconds: 1, rrCount: 20_000, rrWarmup: 1_000, connSeconds: 5, connLoops: 8, idleSeconds: 2 };
export const QUICK: Durations = { iperfSeconds: 1, iperfOmitSeconds: 1, rrCount: 2_000, rrWarmup: 200, connSeconds: 1, connLoops: 8, idleSeconds: 1 };

export interface IperfResult {
  gbps: number;
  /** Each parallel stream's received rate, Gbit/s (one entry for -P 1). */
  streamGbps: number[];
  retransmits: number | null;
  /** iperf3's own CPU figures (% of one core, user + system) for its client and server. */
  clientCpuPct: number | null;
  serverCpuPct: number | null;
}

interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bits_per_second?: number };
    streams?: { receiver?: { bits_per_second?: number } }[];
    sum_sent?: { retransmits?: number };
    cpu_utilization_percent?: { host_total?: number; remote_total?: number };
  };
}

export async function iperf(topo: BenchTopology, iperf3: string, target: Target, opts: { streams: number; isReverse: boolean; d: Durations }): Promise<IperfResult> {
  const args = ['-c', target.host, '-p', String(target.port), '-t', String(opts.d.iperfSeconds), '-O', String(opts.d.iperfOmitSeconds), '-P', String(opts.streams), '-J', '--connect-timeout', '5000'];
  if (opts.isReverse) args.push('-R');
  const r = await topo.exec('client', iperf3, args, { timeoutMs: (opts.d.iperfSeconds + opts.d.iperfOmitSeconds + 20) * 1000 });
  let json: IperfJson;
  try {
    json = JSON.parse(r.stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 ${args.join(' ')}: ${r.timedOut ? 'timed out' : `exit ${r.code}`}, no JSON: ${r.stderr.trim().slice(0, 300)}`);
  }
  const bps = json.end?.sum_received?.bits_per_second;
  if (json.error !== undefined || bps === undefined) throw new Error(`iperf3 ${args.join(' ')}: ${json.error ?? 'no sum_received in the answer'}`);
  // In reverse mode the client host is the receiver; iperf3 reports host = the client either way.
  const cpu = json.end?.cpu_utilization_percent;
  const streamGbps = (json.end?.streams ?? []).map((st) => (st.receiver?.bits_per_second ?? 0) / 1e9);
  return { gbps: bps / 1e9, streamGbps, retransmits: json.end?.sum_sent?.retransmits ?? null, clientCpuPct: cpu?.host_total ?? null, serverCpuPct: cpu?.remote_total ?? null };
}

/**
 * How far the furthest stream is from an equal share of the total, in % of that share (0 = all
 * equal; the issue's target is within 20). Null for fewer than two streams.
 */
export function worstFairShareDeviationPct(streamGbps: readonly number[]): number | null {
  if (streamGbps.length < 2) return null;
  const share = streamGbps.reduce((a, b) => a + b, 0) / streamGbps.length;
  if (share <= 0) return null;
  return Math.max(...streamGbps.map((g) => Math.abs(g - share))) / share * 100;
}

/**
 * The order of the paths in round `round` (1-based): the given order, then reversed, then the odd
 * positions followed by the even ones, and again. Over three rounds no path runs first twice and
 * none follows the same path twice: what ran just before can weigh on the host (a conn/s run
 * leaves thousands of sockets in TIME_WAIT that expire 60 s later, a bulk run dirty caches), and
 * with one fixed order the same row would always carry it.
 */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  switch ((round - 1) % 3) {
    case 0:
      return [...items];
    case 1:
      return [...items].reverse();
    default:
      return [...items.filter((_, i) => i % 2 === 1), ...items.filter((_, i) => i % 2 === 0)];
  }
}

async function echoClient<T>(topo: BenchTopology, args: readonly string[], timeoutMs: number): Promise<T> {
  const r = await topo.exec('client', process.execPath, [ECHO_MAIN, ...args], { timeoutMs });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let json: T & { error?: string };
  try {
    json = JSON.parse(line) as T & { error?: string };
  } catch {
    throw new Error(`echo ${args.join(' ')}: ${r.timedOut ? 'timed out' : `exit ${r.code}`}: ${r.stderr.trim().slice(0, 300)}`);
  }
  if (json.error !== undefined) throw new Error(`echo ${args.join(' ')}: ${json.error}`);
  return json;
}

export interface RrResult {
  p50Us: number;
  p99Us: number;
  p90Us: number;
  maxUs: number;
}

export async function roundTrips(topo: BenchTopology, target: Target, d: Durations): Promise<RrResult> {
  const r = await echoClient<{ p50_us: number; p90_us: number; p99_us: number; max_us: number }>(topo, ['rr', target.host, String(target.port), String(d.rrCount), String(d.rrWarmup)], 120_000);
  return { p50Us: r.p50_us, p90Us: r.p90_us, p99Us: r.p99_us, maxUs: r.max_us };
}

export interface ConnResult {
  perSec: number;
  errors: number;
  lastError: string;
  /** Seconds into the run of the first failed connection, and the rate until then (null without errors). */
  firstErrorS: number | null;
  perSecBeforeFirstError: number | null;
}

export async function connectionRate(topo: BenchTopology, target: Target, d: Durations): Promise<ConnResult> {
  const r = await echoClient<{ per_s: number; errors: number; last_error: string; first_error_s: number | null; per_s_before_first_error: number | null }>(
    topo,
    ['conn', target.host, String(target.port), String(d.connLoops), String(d.connSeconds)],
    (d.connSeconds + 30) * 1000,
  );
  return { perSec: r.per_s, errors: r.errors, lastError: r.last_error, firstErrorS: r.first_error_s, perSecBeforeFirstError: r.per_s_before_first_error };
}
