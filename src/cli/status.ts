import type { Command } from 'commander';
import { addControlOption, addJsonOption, CliExit, type CliContext, type ControlOptions } from './context.js';
import { ExitCodes } from './exit-codes.js';
import { writeJson } from './output.js';
import { isAnyPeerUp, renderNode, renderPeers, renderServices } from './views.js';

interface ReadFlags extends ControlOptions {
  json?: boolean;
}

export function registerStatusCommand(program: Command, ctx: CliContext): void {
  addJsonOption(
    addControlOption(
      program.command('status').description('this node, its peers (state, path, heartbeat, RTT, traffic) and the services; exit 3 when no peer is up'),
    ),
  ).action(async (flags: ReadFlags) => {
    const answer = await ctx.client(flags).status();
    if (flags.json) {
      writeJson(ctx.stdout, answer);
    } else {
      ctx.stdout.write(renderNode(answer.node, ctx.now()));
      ctx.stdout.write('\n' + renderPeers(answer.peers));
      ctx.stdout.write('\n' + renderServices(answer.services));
    }
    // SPEC §5: scripts and health checks read "connected" from the exit status, --json or not.
    if (!isAnyPeerUp(answer.peers)) {
      ctx.stderr.write('no peer is up\n');
      throw new CliExit(ExitCodes.NOT_CONNECTED);
    }
  });
}
