/**
 * Medians, ranges and the Markdown tables of the network benchmarks. Every figure is the median of
 * the runs with its range (min–max); ratios are taken against `direct` and `ssh -L` of the same run.
 */

export const METRICS = [
  'gbps_1',
  'gbps_4',
  'fair_share_dev_pct_4',
  'gbps_1_reverse',
  'gbps_4_reverse',
  'retransmits_1',
  'rr_p50_us',
  'rr_p99_us',
  'conn_per_s',
  'rss_mb_load',
  'rss_mb_idle',
  'rss_mb_load_client',
  'rss_mb_load_server',
  'rss_mb_conn',
  'rss_mb_load_reverse',
  'rss_private_mb_load',
  'rss_private_mb_idle',
  'cpu_load_client_pct',
  'cpu_load_server_pct',
  'cpu_idle_client_pct',
  'cpu_idle_server_pct',
  'cpu_s_per_gb',
  'cpu_conn_client_pct',
  'cpu_conn_server_pct',
  'conn_per_s_before_first_error',
  'streams_left_open_client',
  'streams_left_open_server',
  'cold_start_ms',
  'cold_tunnel_up_ms',
  'cold_first_conn_ms',
] as const;
export type Metric = (typeof METRICS)[number];

export interface PathRecord {
  path: string;
  /** Why the path did not run, or null. */
  skipped: string | null;
  meta: Record<string, unknown>;
  runs: Partial<Record<Metric, number[]>>;
  /** Workloads that failed in some run, with the error; their figure is missing from that run. */
  errors: string[];
  /** Things the harness did or saw that a reader must know (an agent restart between rounds). */
  notes: string[];
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function range(values: readonly number[]): [number, number] | null {
  if (values.length === 0) return null;
  return [Math.min(...values), Math.max(...values)];
}

const round = (n: number | null, digits: number): number | null => (n === null ? null : Number(n.toFixed(digits)));
const DIGITS: Partial<Record<Metric, number>> = { retransmits_1: 0, rr_p50_us: 0, rr_p99_us: 0, conn_per_s: 0, rss_mb_load: 1, rss_mb_idle: 1, rss_mb_conn: 1, rss_mb_load_reverse: 1, rss_private_mb_load: 1, rss_private_mb_idle: 1, fair_share_dev_pct_4: 0, cold_start_ms: 1, cold_tunnel_up_ms: 1, cold_first_conn_ms: 2 };
const digitsOf = (m: Metric): number => DIGITS[m] ?? 3;

/** The JSON object of one path: the required keys first, then the rest. */
export function pathJson(p: PathRecord): Record<string, unknown> {
  const med = (m: Metric): number | null => round(median(p.runs[m] ?? []), digitsOf(m));
  const ranges: Record<string, [number, number]> = {};
  for (const m of METRICS) {
    const r = range(p.runs[m] ?? []);
    if (r !== null) ranges[m] = [round(r[0], digitsOf(m))!, round(r[1], digitsOf(m))!];
  }
  return {
    path: p.path,
    gbps_1: med('gbps_1'),
    gbps_4: med('gbps_4'),
    rr_p50_us: med('rr_p50_us'),
    rr_p99_us: med('rr_p99_us'),
    conn_per_s: med('conn_per_s'),
    rss_mb_load: med('rss_mb_load'),
    rss_mb_idle: med('rss_mb_idle'),
    fair_share_dev_pct_4: med('fair_share_dev_pct_4'),
    gbps_1_reverse: med('gbps_1_reverse'),
    gbps_4_reverse: med('gbps_4_reverse'),
    retransmits_1: med('retransmits_1'),
    rss_mb_load_client: med('rss_mb_load_client'),
    rss_mb_load_server: med('rss_mb_load_server'),
    rss_mb_conn: med('rss_mb_conn'),
    rss_mb_load_reverse: med('rss_mb_load_reverse'),
    rss_private_mb_load: med('rss_private_mb_load'),
    rss_private_mb_idle: med('rss_private_mb_idle'),
    cpu: {
      load_client_pct: med('cpu_load_client_pct'),
      load_server_pct: med('cpu_load_server_pct'),
      idle_client_pct: med('cpu_idle_client_pct'),
      idle_server_pct: med('cpu_idle_server_pct'),
      s_per_gb: med('cpu_s_per_gb'),
      conn_client_pct: med('cpu_conn_client_pct'),
      conn_server_pct: med('cpu_conn_server_pct'),
    },
    cold: p.runs.cold_start_ms === undefined ? null : { tunnel_up_ms: med('cold_tunnel_up_ms'), first_byte_ms: med('cold_start_ms'), first_conn_ms: med('cold_first_conn_ms') },
    ranges,
    runs: Object.fromEntries(Object.entries(p.runs).map(([k, v]) => [k, v.map((x) => Number(x.toFixed(3)))])),
    skipped: p.skipped,
    conn_per_s_before_first_error: med('conn_per_s_before_first_error'),
    streams_left_open: p.runs.streams_left_open_client === undefined ? null : { client: med('streams_left_open_client'), server: med('streams_left_open_server') },
    errors: p.errors,
    notes: p.notes,
    meta: p.meta,
  };
}

function fmt(n: number | null, digits: number): string {
  if (n === null) return '—';
  if (digits === 0) return Math.round(n).toLocaleString('en-US').replace(/,/g, ' ');
  return n.toFixed(digits);
}

/** "4.55 (4.40–4.61)", or the bare figure for a single run. */
function cell(p: PathRecord, m: Metric, digits: number): string {
  const values = p.runs[m] ?? [];
  if (values.length === 0) return '—';
  const med = fmt(median(values), digits);
  if (values.length === 1) return med;
  return `${med} (${fmt(Math.min(...values), digits)}–${fmt(Math.max(...values), digits)})`;
}

function ratio(p: PathRecord, base: PathRecord | undefined, m: Metric): string {
  const a = median(p.runs[m] ?? []);
  const b = base === undefined ? null : median(base.runs[m] ?? []);
  if (a === null || b === null || b === 0) return '—';
  return `${(a / b).toFixed(2)}x`;
}

export function markdownTables(records: readonly PathRecord[], runs: number): string {
  const ran = records.filter((r) => r.skipped === null);
  const direct = ran.find((r) => r.path === 'direct');
  const ssh = ran.find((r) => r.path === 'ssh -L');
  const head = runs > 1 ? `median (min–max) of ${runs} runs` : 'one run';
  const lines: string[] = [];
  lines.push(`| path (${head}) | Gbit/s, 1 stream | Gbit/s, 4 streams | RR p50 µs | RR p99 µs | conn/s | RSS per node MB, load | idle | private MB, load | idle | CPU % under load, client + server |`);
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of ran) {
    const cpuC = median(r.runs.cpu_load_client_pct ?? []);
    const cpuS = median(r.runs.cpu_load_server_pct ?? []);
    const cpu = cpuC === null && cpuS === null ? '—' : `${fmt(cpuC ?? 0, 0)} + ${fmt(cpuS ?? 0, 0)}`;
    lines.push(`| ${r.path} | ${cell(r, 'gbps_1', 2)} | ${cell(r, 'gbps_4', 2)} | ${cell(r, 'rr_p50_us', 0)} | ${cell(r, 'rr_p99_us', 0)} | ${cell(r, 'conn_per_s', 0)} | ${cell(r, 'rss_mb_load', 0)} | ${cell(r, 'rss_mb_idle', 0)} | ${cell(r, 'rss_private_mb_load', 0)} | ${cell(r, 'rss_private_mb_idle', 0)} | ${r.path === 'direct' ? '—' : cpu} |`);
  }
  lines.push('');
  lines.push('| ratio (same run) | 1 stream ×direct | ×ssh | 4 streams ×direct | ×ssh | p50 ×direct | ×ssh | p99 ×direct | ×ssh | conn/s ×direct | ×ssh |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of ran) {
    const cols = (['gbps_1', 'gbps_4', 'rr_p50_us', 'rr_p99_us', 'conn_per_s'] as const).flatMap((m) => [ratio(r, direct, m), ratio(r, ssh, m)]);
    lines.push(`| ${r.path} | ${cols.join(' | ')} |`);
  }
  const retransmits = ran.filter((r) => r.runs.retransmits_1 !== undefined).map((r) => `${r.path} ${fmt(median(r.runs.retransmits_1!), 0)}`);
  if (retransmits.length > 0) lines.push('', `TCP retransmits in the 1-stream run (median): ${retransmits.join(', ')}.`);
  const skipped = records.filter((r) => r.skipped !== null);
  if (skipped.length > 0) {
    lines.push('');
    for (const r of skipped) lines.push(`- skipped **${r.path}**: ${r.skipped}`);
  }
  const failed = ran.filter((r) => r.errors.length > 0);
  if (failed.length > 0) lines.push('');
  for (const r of failed) lines.push(`- ${r.path}: ${r.errors.length} problem(s), e.g. ${r.errors[0]}`);
  for (const r of ran) for (const n of r.notes) lines.push(`- ${r.path}: ${n}`);
  return lines.join('\n');
}

export function meshTable(records: readonly PathRecord[]): string {
  const meshes = records.filter((r) => r.skipped === null && r.path.startsWith('mesh'));
  if (meshes.length === 0) return '';
  const lines = [
    '| mesh agent | Gbit/s 1 stream | 4 streams | furthest of 4 from fair share % | reverse (-R) 1 | 4 | RR p50 µs | conn/s | conn/s before the first failure | RSS per node MB, conn/s | RSS per node MB, -R 1 stream | streams left open client / server | CPU % load client + server | CPU s per GB | cold: tunnel up ms | first byte ms | that connection ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of meshes) {
    const cpu = `${fmt(median(r.runs.cpu_load_client_pct ?? []), 0)} + ${fmt(median(r.runs.cpu_load_server_pct ?? []), 0)}`;
    lines.push(
      `| ${r.path}, ${String(r.meta.node ?? '')} | ${cell(r, 'gbps_1', 2)} | ${cell(r, 'gbps_4', 2)} | ${cell(r, 'fair_share_dev_pct_4', 0)} | ${cell(r, 'gbps_1_reverse', 2)} | ${cell(r, 'gbps_4_reverse', 2)} | ${cell(r, 'rr_p50_us', 0)} | ${cell(r, 'conn_per_s', 0)} | ${cell(r, 'conn_per_s_before_first_error', 0)} | ${cell(r, 'rss_mb_conn', 0)} | ${cell(r, 'rss_mb_load_reverse', 0)} | ${cell(r, 'streams_left_open_client', 0)} / ${cell(r, 'streams_left_open_server', 0)} | ${cpu} | ${cell(r, 'cpu_s_per_gb', 1)} | ${cell(r, 'cold_tunnel_up_ms', 0)} | ${cell(r, 'cold_start_ms', 0)} | ${cell(r, 'cold_first_conn_ms', 1)} |`,
    );
  }
  return lines.join('\n');
}

export const CAVEATS = [
  'All processes (iperf3 or the echo tool on both ends, and the path\'s own daemons) share the same 2 vCPUs, which are also shared with other work on the host: compare paths within one run, never across runs.',
  'Round-trip latency here is mostly vCPU wake-up and scheduling time (each round trip wakes 2 to 4 processes), not wire time; p99 is the noisiest figure.',
  'conn/s and RR use one small Node client (bench/echo.ts) for every path, so the client\'s own cost is in every row; conn/s of socat includes its fork per connection.',
  'CPU is user + system time of the path\'s own processes during the 1-stream forward iperf3 run, in % of one core (100 = one core busy); RSS is per node (the larger of the client-side and server-side process sets).',
  'Private MB is the part of that RSS only the path\'s processes hold (RssAnon: heaps, stacks, JIT code). The rest is pages of the executables and libraries they map, which every process running the same binary shares and the kernel can drop and read back when memory is short; for a Node agent that is most of its RSS.',
  'The Node echo client and server themselves fill both vCPUs at about 4.5k conn/s on a quiet moment of this machine, so direct conn/s is a ceiling of the tool, not of the kernel, and ratios to it understate the gap.',
  'wireguard-go and nebula carry TCP in UDP: when the receiving daemon waits for a CPU its socket buffer (Debian\'s default 208 KiB) overflows (UdpRcvbufErrors in the server namespace match the retransmits above) and the inner TCP backs off, so on a busy host they fall much further below their quiet-machine figures than the TCP relays (ssh, socat, the mesh), which only slow down.',
  'Cold start restarts the client-side agent (state kept, the provider\'s agent keeps running) and times from the process spawn, so it includes Node start-up and loading the state dir.',
];
