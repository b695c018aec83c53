import type { Command } from 'commander';
import { addControlOption, type CliContext, type ControlOptions } from './context.js';
import { parseNameArg } from './args.js';
import { sanitize } from './output.js';

export function registerUnexposeCommand(program: Command, ctx: CliContext): void {
  addControlOption(
    program.command('unexpose').description('stop offering a service from this node').argument('<name>', 'service name', parseNameArg),
  ).action(async (name: string, flags: ControlOptions) => {
    const answer = await ctx.client(flags).unexpose({ name });
    ctx.stdout.write(sanitize(answer.wasExposed ? `unexposed ${answer.name}` : `${answer.name} was not exposed on this node; nothing to do`) + '\n');
  });
}
