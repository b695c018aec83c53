import type { Command } from 'commander';
import type { TokenCreateRequest } from '../control/index.js';
import { addControlOption, addJsonOption, type CliContext, type ControlOptions } from './context.js';
import { parseCountArg, parseDurationArg } from './args.js';
import { sanitize, writeJson } from './output.js';

interface TokenCreateFlags extends ControlOptions {
  ttl?: number;
  uses?: number;
  json?: boolean;
}

export function registerTokenCommand(program: Command, ctx: CliContext): void {
  const token = program.command('token').description('manage join tokens (on an admin node)');
  addJsonOption(
    addControlOption(
      token
        .command('create')
        .description('create a join token; prints only the token on stdout, so it can go straight into a file')
        .option('--ttl <duration>', 'lifetime, e.g. 30m, 24h, 7d (agent default if omitted)', parseDurationArg)
        .option('--uses <n>', 'how many nodes may join with it (agent default if omitted)', parseCountArg),
    ),
  ).action(async (flags: TokenCreateFlags) => {
    const request: TokenCreateRequest = {};
    if (flags.ttl !== undefined) request.ttlMs = flags.ttl;
    if (flags.uses !== undefined) request.uses = flags.uses;
    const answer = await ctx.client(flags).createToken(request);
    if (flags.json) {
      writeJson(ctx.stdout, answer);
      return;
    }
    // stdout carries the token alone (`osmoda-mesh token create > token`); the rest goes to stderr.
    ctx.stdout.write(`${answer.token}\n`);
    ctx.stderr.write(sanitize(`token ${answer.tokenId}: ${answer.uses} use(s), expires ${answer.expiresAt}; it is a secret, pass it with --token-file`) + '\n');
  });
}
