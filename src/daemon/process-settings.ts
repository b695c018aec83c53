/**
 * How the agent's process must be started: V8 flags on node's command line and environment
 * variables read before any of our code runs. main.ts's first line carries both
 * (`#!/usr/bin/env -S NAME=value node --flags`, see agentShebang), nix/package.nix's wrapper reads
 * them from that line, so the installed `osmoda-mesh` and the NixOS unit get them; a launcher that
 * starts `node main.js agent` itself must pass them too (tests, benchmarks and the demo do).
 */

/**
 * Node (V8) flags.
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
 * rate (5 s of new connections did it) and V8 keeps it at that size. On loopback, after 1 GiB,
 * 20k round trips and 5 s of new connections: with a cap of 4 the agents peaked at 90-123 MB and
 * held 72-108 MB 13 s later; with 1 they peaked at 80-94 and held 73-84, and started 3-5 MB
 * smaller. The cost is about twice the minor collections (~200 instead of ~100 per 20k round
 * trips, 0.3-0.5 ms each); CPU per new connection differed less than between runs of one
 * setting (3 alternating runs favoured 4, 4 more favoured 1), and no bulk throughput was lost:
 * the agent asks for a minor collection every 4 MiB relayed anyway (util/buffer-reclaim.ts), so a
 * bigger nursery buys nothing on the data path. (The cap was at 4 for a while because of a
 * start-up hang that turned out to be a Node 20 key-generation deadlock, see
 * crypto/keys/x25519.ts, not the cap.)
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--single-threaded-gc', '--max-semi-space-size=1'];

/** The AGENT_NODE_FLAGS this process was started without (empty when all are in effect). */
export function missingAgentNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  return AGENT_NODE_FLAGS.filter((flag) => !execArgv.includes(flag));
}

/**
 * Environment variables.
 *
 * MALLOC_ARENA_MAX=1: glibc gives the threads that allocate (V8's compiler threads, libuv's pool)
 * `malloc` arenas of their own, 64 MB-aligned mappings apart from the main heap. After 1 GiB, 20k
 * round trips and 3 s of new connections on loopback, the agents' main heap was back to its fresh
 * 3.5 MB (util/malloc-trim.ts), but four thread arenas held 6.6 MB where two had held 1.1 MB
 * fresh: what stays there is what malloc_trim cannot return, free space between live chunks. With
 * one arena for every thread the agents settled at 63.5-65.6 MB instead of 69.7-71 and peaked
 * lower during the load (docs/BENCHMARKS.md, "Where the idle memory goes"). The agent's own work runs on the
 * main thread, so the threads sharing one arena seldom wait for its lock. glibc fixes the limit
 * when the first thread other than the main one allocates, before main.js runs: mallopt from the
 * process itself would be too late.
 */
export const AGENT_ENVIRONMENT: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '1' };

/**
 * The AGENT_ENVIRONMENT variables this process was started without. One set to another value
 * counts as set: the Nix wrapper sets them only when unset, so an operator's choice stands.
 */
export function missingAgentEnvironment(env: NodeJS.ProcessEnv = process.env): string[] {
  return Object.keys(AGENT_ENVIRONMENT).filter((name) => env[name] === undefined || env[name] === '');
}

/** The first line of main.ts and of the bundled main.js: `env -S` sets the variables, then runs node with the flags. */
export function agentShebang(): string {
  const assignments = Object.entries(AGENT_ENVIRONMENT).map(([name, value]) => `${name}=${value}`);
  return `#!/usr/bin/env -S ${[...assignments, 'node', ...AGENT_NODE_FLAGS].join(' ')}`;
}
