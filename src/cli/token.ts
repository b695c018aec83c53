import type { Command } from 'commander';
import type { TokenCreateRequest } from '../control/index.js';
import { addControlOption, addJsonOption, type CliContext, type ControlOptions } from './context.js';
import { parseCountArg, parseDurationArg } from './args.js';
import { formatExpiry, formatTable, sanitize, writeJson } from './output.js';
import { UsageError } from './context.js';

interface TokenListFlags extends ControlOptions {
  json?: boolean;
}

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

  addJsonOption(addControlOption(token.command('list').description('the tokens this admin node issued: id, uses left, expiry'))).action(
    async (flags: TokenListFlags) => {
      const answer = await ctx.client(flags).listTokens();
      if (flags.json) {
        writeJson(ctx.stdout, answer);
        return;
      }
      if (answer.tokens.length === 0) {
        ctx.stdout.write('no tokens\n');
        return;
      }
      const rows = answer.tokens.map((t) => [t.tokenId, String(t.usesLeft), t.isExpired ? `expired ${t.expiresAt}` : formatExpiry(t.expiresAt, ctx.now())]);
      ctx.stdout.write(sanitize(formatTable(['TOKEN ID', 'USES LEFT', 'EXPIRES'], rows)));
    },
  );
  addControlOption(
    token
      .command('revoke')
      .description('revoke a token by its id (from `token list`): joins with it are refused from now on')
      .argument('<token-id>', 'the 32-hex-digit token id'),
  ).action(async (tokenId: string, flags: ControlOptions) => {
    if (!/^[0-9a-f]{32}$/.test(tokenId)) throw new UsageError(`token revoke: expected a token id of 32 hex digits (see \`osmoda-mesh token list\`), got '${tokenId.slice(0, 40)}'`);
    const answer = await ctx.client(flags).revokeToken({ tokenId });
    ctx.stdout.write(answer.wasKnown ? `revoked token ${answer.tokenId}\n` : `token ${answer.tokenId} is not known here (nothing to revoke)\n`);
  });
}
