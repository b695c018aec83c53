import type { Command } from 'commander';
import { addControlOption, addJsonOption, CliExit, type CliContext, type ControlOptions } from './context.js';
import { ExitCodes } from './exit-codes.js';
import { writeJson } from './output.js';
import { isAnyPeerUp, renderPeers } from './views.js';

interface ReadFlags extends ControlOptions {
  json?: boolean;
}

export function registerPeersCommand(program: Command, ctx: CliContext): void {
  addJsonOption(addControlOption(program.command('peers').description('the peers of this node; exit 3 when none is up'))).action(
    async (flags: ReadFlags) => {
      const answer = await ctx.client(flags).peers();
      if (flags.json) writeJson(ctx.stdout, answer);
      else ctx.stdout.write(renderPeers(answer.peers));
      if (!isAnyPeerUp(answer.peers)) {
        ctx.stderr.write('no peer is up\n');
        throw new CliExit(ExitCodes.NOT_CONNECTED);
      }
    },
  );
}
