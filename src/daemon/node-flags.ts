/**
 * Flags for the Node.js (V8) process that runs the agent. main.ts's first line passes them
 * (`#!/usr/bin/env -S node ...`), so the installed `osmoda-mesh` and the NixOS unit get them; a
 * launcher that starts `node main.js agent` itself must pass them too (tests and benchmarks do).
 *
 * --single-threaded-gc: every 64 KiB the agent relays allocates a few Buffers (socket reads, the
 * AEAD's output), and V8 answers that external memory with a full mark-compact every ~60 ms. By
 * default those collections run on up to 7 helper threads, which on a 2-core server fight the
 * agent's own thread and the kernel for the cores. Marking the agent's ~10 MB heap on the main
 * thread instead cut CPU per relayed GB from 9.2 to 5.6 s and raised one-stream throughput
 * 1.4-1.6x in the same benchmark runs (README, Benchmarks: the "V8 default GC" row is the same
 * agent without the flag).
 *
 * --max-semi-space-size=1 (MB): the young generation grows to 2 x 16 MB under a high allocation
 * rate (5 s of new connections did it) and V8 keeps it at that size. A cap of 4 first brought an
 * agent on loopback from 107-121 to 95-101 MB after bulk, round-trip and new-connection
 * workloads; a cap of 1, measured against 4 in the same sequence (1 GiB, 20k round trips, 5 s of
 * new connections), left 78/74 MB instead of 86/91 MB 13 s later, with a 12-13 MB heap instead of
 * 26 MB, and 68 instead of 69-72 MB fresh. It doubles the minor collections of a round-trip run
 * (about 200 instead of 100 per 20k round trips, 0.5 ms each: under 1 % of the agent's CPU), with
 * no loss of bulk throughput measured (228/230/188 against 195/208/190 MB/s for 1 GiB). The agent
 * asks for a minor collection every 4 MiB relayed anyway (util/buffer-reclaim.ts), so a bigger
 * nursery buys nothing on the data path.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--single-threaded-gc', '--max-semi-space-size=1'];

/** The AGENT_NODE_FLAGS this process was started without (empty when all are in effect). */
export function missingAgentNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  return AGENT_NODE_FLAGS.filter((flag) => !execArgv.includes(flag));
}
