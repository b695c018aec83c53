#!/usr/bin/env -S MALLOC_ARENA_MAX=1 node --single-threaded-gc --max-semi-space-size=1
import { runCli } from './cli/index.js';
import type { RunAgent } from './config/index.js';

// The first line is src/daemon/process-settings.ts's agentShebang(): its environment and V8 flags
// (a test keeps them equal).

// The daemon (protobuf schema, crypto, servers) loads only for `agent`: client verbs start faster.
const runAgent: RunAgent = async (options) => (await import('./daemon/index.js')).runAgent(options);

// `osmoda-mesh status | head -1` closes stdout early: that is not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await runCli(process.argv, {
  runAgent,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});
