import { writeFileSync } from 'node:fs';
import { loadavg, release } from 'node:os';
import { machine, saveJson } from './harness.js';
import { runInProcess } from './in-process.js';
import { runNetwork, type NetworkResult } from './network.js';
import { CAVEATS, markdownTables, meshTable, pathJson } from './report.js';
import { FULL, QUICK } from './workloads.js';

/**
 * `npm run bench [-- --quick]`: the network paths between two namespaces (direct, the mesh under
 * Node 20/22/24, ssh -L, wireguard-go, nebula, socat), then the in-process benchmarks. Prints
 * Markdown and writes bench/results/latest.json (and latest.md).
 *
 * Flags: --quick (one round, short durations), --rounds=N, --only=mesh,ssh (paths whose name
 * contains one of these), --node=20,22,24, --no-install, --network-only, --in-process-only,
 * --out=FILE.json (default bench/results/latest.json).
 */
const argv = process.argv.slice(2);
const flag = (name: string): boolean => argv.includes(`--${name}`);
const value = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const known = ['quick', 'no-install', 'network-only', 'in-process-only', 'rounds', 'only', 'node', 'out'];
for (const a of argv) {
  if (!known.some((k) => a === `--${k}` || a.startsWith(`--${k}=`))) {
    process.stderr.write(`bench: unknown argument '${a}' (expected one of ${known.map((k) => `--${k}`).join(', ')})\n`);
    process.exit(2);
  }
}
const isQuick = flag('quick');
const rounds = Number(value('rounds') ?? (isQuick ? 1 : 3));
if (!Number.isInteger(rounds) || rounds < 1) {
  process.stderr.write(`bench: --rounds: expected a whole number ≥ 1, got '${value('rounds')}'\n`);
  process.exit(2);
}
const only = (value('only') ?? '').split(',').filter((s) => s !== '');
const ownMajor = Number(process.versions.node.split('.')[0]);
const nodeMajors = [ownMajor, ...(value('node') ?? '20,22,24').split(',').map(Number).filter((n) => Number.isInteger(n) && n !== ownMajor)];
const outPath = value('out') ?? new URL('../../bench/results/latest.json', import.meta.url).pathname;

const started = performance.now();
const info: Record<string, unknown> = { ...machine(), kernel: release(), openssl: process.versions.openssl, loadavgAtStart: loadavg().map((v) => Number(v.toFixed(2))) };
const out = (text: string): void => void process.stdout.write(text);
const log = (line: string): void => void process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
out(`osmoda-mesh benchmarks — ${String(info.date)} — ${String(info.cpu)} × ${String(info.cores)}, kernel ${String(info.kernel)}, node ${String(info.node)}${isQuick ? ' (quick)' : ''}\n\n`);

let network: NetworkResult = { records: [], tools: null, skipped: '--in-process-only', topology: null };
let markdown = '';
if (!flag('in-process-only')) {
  const d = isQuick ? QUICK : FULL;
  network = await runNetwork({ durations: d, rounds, coldRepeats: isQuick ? 1 : 3, isInstallAllowed: !flag('no-install'), only, nodeMajors, log });
  if (network.skipped === null) {
    const versions = network.tools === null ? '' : Object.values(network.tools.versions).join('; ');
    markdown =
      `## Paths between two network namespaces (veth), ${rounds === 1 ? 'one run' : `median of ${rounds} runs (min–max)`}\n\n` +
      `${String(info.cpu)} × ${String(info.cores)} vCPUs, kernel ${String(info.kernel)}, load average ${(info.loadavgAtStart as number[])[0]} when the run started. ` +
      `iperf3 ${d.iperfSeconds} s (+${d.iperfOmitSeconds} s omitted), RR: ${d.rrCount} round trips of 64 bytes, conn/s: ${d.connLoops} loops for ${d.connSeconds} s. ${versions}.\n\n` +
      markdownTables(network.records, rounds) +
      '\n\n### The mesh by Node version\n\n' +
      meshTable(network.records) +
      '\n\n' +
      CAVEATS.map((c) => `- ${c}`).join('\n') +
      '\n\n';
    out(markdown);
  } else {
    out(`## Paths between two network namespaces: SKIPPED (${network.skipped})\n\n`);
  }
}

const save = (inProcess: Record<string, unknown> | null): number => {
  const seconds = (performance.now() - started) / 1000;
  info.loadavgAtEnd = loadavg().map((v) => Number(v.toFixed(2)));
  saveJson(outPath, {
    date: info.date,
    machine: info,
    quick: isQuick,
    rounds,
    seconds: Math.round(seconds),
    paths: network.records.map(pathJson),
    network: { skipped: network.skipped, topology: network.topology, tools: network.tools, caveats: CAVEATS },
    in_process: inProcess,
  });
  if (markdown !== '') writeFileSync(outPath.replace(/\.json$/, '.md'), markdown);
  return seconds;
};
// the network figures took most of the run: on disk before anything else can go wrong
if (!flag('in-process-only')) save(null);

let inProcess: Record<string, unknown> | null = null;
if (!flag('network-only')) {
  log('in-process benchmarks');
  try {
    inProcess = await runInProcess(isQuick, out);
  } catch (err) {
    // reported in the results, not thrown: the network figures are already on disk (above)
    const message = err instanceof Error ? err.message : String(err);
    log(`in-process benchmarks FAILED: ${message}`);
    inProcess = { failed: message };
    process.exitCode = 1;
  }
}

const seconds = save(inProcess);
out(`\nsaved ${outPath} (${seconds.toFixed(0)} s in all)\n`);
