import type { Command } from 'commander';
import { addControlOption, type CliContext, type ControlOptions } from './context.js';
import { parseNameArg } from './args.js';
import { sanitize } from './output.js';

interface InitFlags extends ControlOptions {
  mesh: string;
}

export function registerInitCommand(program: Command, ctx: CliContext): void {
  addControlOption(
    program
      .command('init')
      .description('create a new mesh with this node as its first admin')
      .requiredOption('--mesh <name>', 'mesh name (a DNS label)', parseNameArg),
  ).action(async (flags: InitFlags) => {
    const answer = await ctx.client(flags).init({ mesh: flags.mesh });
    ctx.stdout.write(
      sanitize(`created mesh ${answer.mesh} (id ${answer.meshId}); this node is ${answer.node}, an admin`) +
        '\nnext: `osmoda-mesh token create` and, on each other server, `osmoda-mesh join --token-file FILE`\n',
    );
  });
}
