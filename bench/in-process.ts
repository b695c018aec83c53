import { agentsLoopback } from './agents-loopback.js';
import { cryptoPrimitives } from './crypto-primitives.js';
import { markdownTable } from './harness.js';
import { bareWsThroughput, coldBareWs, coldTunnelSetup, muxThroughput } from './mux-throughput.js';
import { protocolCosts } from './protocol.js';
import { x25519Backend } from '../src/crypto/keys/index.js';
import { median } from './report.js';

/**
 * The in-process benchmarks: crypto primitives, handshake rate and frame codec; the tunnel + mux
 * path in one process against a bare ws baseline; cold setup of a fresh tunnel against a fresh
 * bare ws connection; and two real agents on loopback against direct TCP. Prints Markdown tables
 * through `out` and returns the figures for the JSON. Every figure is compared with a baseline
 * measured in the same run (the machine is noisy and has 2 cores).
 */
export async function runInProcess(isQuick: boolean, out: (text: string) => void): Promise<Record<string, unknown>> {
  const opts = isQuick ? { ms: 200, repeats: 1 } : { ms: 700, repeats: 3 };
  const repeats = isQuick ? 1 : 3;

  const crypto = cryptoPrimitives(opts);
  out('## Crypto primitives (ratio to node:crypto in the same run)\n\n' + markdownTable(crypto) + '\n\n');
  const protocol = protocolCosts(opts);
  out('## Protocol costs in process\n\n' + markdownTable(protocol) + '\n\n');

  const tunnelBytes = (isQuick ? 128 : 256) * 2 ** 20;
  const tunnelRuns: Record<string, number[]> = { 'bare ws (no Noise, no mux)': [], 'tunnel + mux, 1 stream': [], 'tunnel + mux, 4 streams': [] };
  for (let r = 0; r < repeats; r++) {
    tunnelRuns['bare ws (no Noise, no mux)']!.push((await bareWsThroughput(tunnelBytes)).mbPerSec);
    const one = await muxThroughput(tunnelBytes, 1);
    const four = await muxThroughput(tunnelBytes, 4);
    if (!one.sha256Match || !four.sha256Match) throw new Error('tunnel bench: data arrived corrupted');
    tunnelRuns['tunnel + mux, 1 stream']!.push(one.mbPerSec);
    tunnelRuns['tunnel + mux, 4 streams']!.push(four.mbPerSec);
  }
  const baseWs = median(tunnelRuns['bare ws (no Noise, no mux)']!)!;
  out(`## Tunnel path in one process (${tunnelBytes / 2 ** 20} MiB, median of ${repeats}; both ends share one core)\n\n| path | MB/s | runs | ratio to bare ws |\n| --- | ---: | --- | ---: |\n`);
  for (const [name, runs] of Object.entries(tunnelRuns)) {
    out(`| ${name} | ${median(runs)!.toFixed(0)} | ${runs.map((v) => v.toFixed(0)).join(', ')} | ${(median(runs)! / baseWs).toFixed(2)}x |\n`);
  }

  // Cold setup: a fresh connection to the first byte back. The two alternate, so that both see the
  // same moments of a noisy host.
  const coldRuns = isQuick ? 20 : 100;
  const coldWarmup = isQuick ? 5 : 20;
  const coldPaths = {
    'bare ws': { what: 'TCP connect, WebSocket upgrade, 1 byte echoed as a message', measure: coldBareWs },
    tunnel: { what: 'the same, then Noise XX with a certificate checked on each side, a mux stream opened with 1 byte of early data, echoed', measure: coldTunnelSetup },
  };
  const cold: Record<string, { p50: number[]; p90: number[] }> = {};
  for (let r = 0; r < repeats; r++) {
    for (const [name, path] of Object.entries(coldPaths)) {
      const result = await path.measure(coldRuns, coldWarmup);
      (cold[name] ??= { p50: [], p90: [] }).p50.push(result.p50Ms);
      cold[name].p90.push(result.p90Ms);
    }
  }
  const coldBase = median(cold['bare ws']!.p50)!;
  out(`\n## Cold setup in one process (fresh connection to the first byte back; ${coldRuns} each after ${coldWarmup} warm-up, median of ${repeats})\n\n| path | what | p50 ms | p90 ms | p50 of each repeat | ratio to bare ws |\n| --- | --- | ---: | ---: | --- | ---: |\n`);
  for (const [name, { p50, p90 }] of Object.entries(cold)) {
    out(`| ${name} | ${coldPaths[name as keyof typeof coldPaths].what} | ${median(p50)!.toFixed(2)} | ${median(p90)!.toFixed(2)} | ${p50.map((v) => v.toFixed(2)).join(', ')} | ${(median(p50)! / coldBase).toFixed(2)}x |\n`);
  }

  const loopBytes = (isQuick ? 256 : 512) * 2 ** 20;
  const loopRuns = { direct: [] as number[], mesh: [] as number[], cpu: [] as number[], rss: [] as number[] };
  for (let r = 0; r < repeats; r++) {
    const results = await agentsLoopback(loopBytes, 19_700 + r * 20);
    for (const res of results) {
      loopRuns[res.path].push(res.mbPerSec);
      if (res.path === 'mesh') {
        loopRuns.cpu.push((res.agentCpuMs ?? 0) / (res.bytes / 2 ** 20));
        loopRuns.rss.push(Math.max(...(res.agentRssMb ?? [0])));
      }
    }
  }
  const direct = median(loopRuns.direct)!;
  out(`\n## Two agent processes on loopback (${loopBytes / 2 ** 20} MiB over TCP, median of ${repeats})\n\n| path | MB/s | runs | ratio to direct |\n| --- | ---: | --- | ---: |\n`);
  out(`| direct TCP | ${direct.toFixed(0)} | ${loopRuns.direct.map((v) => v.toFixed(0)).join(', ')} | 1.00x |\n`);
  out(`| through the mesh | ${median(loopRuns.mesh)!.toFixed(0)} | ${loopRuns.mesh.map((v) => v.toFixed(0)).join(', ')} | ${(median(loopRuns.mesh)! / direct).toFixed(2)}x |\n`);
  out(`\nagent CPU per MiB (both agents): ${median(loopRuns.cpu)!.toFixed(1)} ms; largest agent RSS after the transfer: ${median(loopRuns.rss)} MB\n`);

  // the handshake the agent does: with the X25519 it uses
  const handshake = protocol.find((m) => m.group === 'handshake' && m.name.endsWith(x25519Backend()));
  return {
    noise_handshakes_per_s: handshake === undefined ? null : Math.round(handshake.opsPerSec),
    crypto,
    protocol,
    tunnelInProcess: { bytes: tunnelBytes, runs: tunnelRuns },
    coldSetupInProcess: { runsEach: coldRuns, tunnelP50Ms: median(cold['tunnel']!.p50), bareWsP50Ms: coldBase, runs: cold },
    agentsLoopback: { bytes: loopBytes, runs: loopRuns },
  };
}
