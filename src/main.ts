#!/usr/bin/env node
import { runCli } from './cli/index.js';
import { runAgent } from './daemon/index.js';

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
