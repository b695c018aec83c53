import type { Command } from 'commander';
import { addControlOption, addJsonOption, type CliContext, type ControlOptions } from './context.js';
import { writeJson } from './output.js';
import { renderServices } from './views.js';

interface ReadFlags extends ControlOptions {
  json?: boolean;
}

export function registerServicesCommand(program: Command, ctx: CliContext): void {
  addJsonOption(addControlOption(program.command('services').description('the mesh services: virtual IP, ports, providers, problems'))).action(
    async (flags: ReadFlags) => {
      const answer = await ctx.client(flags).services();
      if (flags.json) writeJson(ctx.stdout, answer);
      else ctx.stdout.write(renderServices(answer.services));
    },
  );
}
