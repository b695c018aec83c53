import type { Command } from 'commander';
import type { PingRequest } from '../control/index.js';
import { addControlOption, addJsonOption, type CliContext, type ControlOptions } from './context.js';
import { parseCountArg, parseNameArg } from './args.js';
import { formatRtt, sanitize, writeJson } from './output.js';

interface PingFlags extends ControlOptions {
  count?: number;
  json?: boolean;
}

export function registerPingCommand(program: Command, ctx: CliContext): void {
  addJsonOption(
    addControlOption(
      program
        .command('ping')
        .description('round trip to a peer through its encrypted tunnel; exit 3 when no tunnel to it is up')
        .argument('<node>', 'the peer\'s node name', parseNameArg)
        .option('--count <n>', 'how many pings, one per second (default 1, at most 100)', parseCountArg),
    ),
  ).action(async (node: string, flags: PingFlags) => {
    const request: PingRequest = { node };
    if (flags.count !== undefined) request.count = flags.count;
    const answer = await ctx.client(flags).ping(request);
    if (flags.json) {
      writeJson(ctx.stdout, answer);
      return;
    }
    for (const rtt of answer.rttMs) ctx.stdout.write(sanitize(`pong from ${answer.node} through the tunnel in ${formatRtt(rtt)}`) + '\n');
  });
}
