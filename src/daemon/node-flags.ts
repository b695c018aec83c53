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
 * --max-semi-space-size=4 (MB): the young generation grows to 2 x 16 MB under a high allocation
 * rate (5 s of new connections did it) and V8 keeps it at that size; capped at 4, an agent after
 * bulk, round-trip and new-connection workloads on loopback held a 26-29 MB heap instead of 46-50
 * and 95-101 MB of RSS instead of 107-121. The agent asks for a minor collection every 4 MiB
 * relayed anyway (util/buffer-reclaim.ts), so a bigger nursery buys nothing on the data path.
 * A cap of 1 held 8-17 MB less after the same workloads; it was tried and taken back while an
 * intermittent start-up hang (README, Benchmarks, Memory) is not understood, since the settings
 * with the longest record are these.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--single-threaded-gc', '--max-semi-space-size=4'];

/** The AGENT_NODE_FLAGS this process was started without (empty when all are in effect). */
export function missingAgentNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  return AGENT_NODE_FLAGS.filter((flag) => !execArgv.includes(flag));
}
