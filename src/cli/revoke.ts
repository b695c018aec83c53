import type { Command } from 'commander';
import { addControlOption, addJsonOption, type CliContext, type ControlOptions } from './context.js';
import { parseNameArg } from './args.js';
import { sanitize, writeJson } from './output.js';

interface RevokeFlags extends ControlOptions {
  json?: boolean;
}

export function registerRevokeCommand(program: Command, ctx: CliContext): void {
  addJsonOption(
    addControlOption(
      program
        .command('revoke')
        .description('remove a node from the mesh for good (admin only): every node cuts its tunnels and refuses it, its services disappear')
        .argument('<node>', "the member's node name", parseNameArg),
    ),
  ).action(async (node: string, flags: RevokeFlags) => {
    const answer = await ctx.client(flags).revoke({ node });
    if (flags.json) {
      writeJson(ctx.stdout, answer);
      return;
    }
    ctx.stdout.write(
      sanitize(`revoked ${answer.node} (node id ${answer.nodeId}); the signed revocation list (${answer.revokedCount} node(s)) is spreading to every member`) + '\n',
    );
  });
}
