import type { Command } from 'commander';
import { addControlOption, addJsonOption, type CliContext, type ControlOptions } from './context.js';
import { formatFields, formatList, writeJson } from './output.js';

interface ReadFlags extends ControlOptions {
  json?: boolean;
}

export function registerResolveCommand(program: Command, ctx: CliContext): void {
  addJsonOption(
    addControlOption(
      program
        .command('resolve')
        .description('what the mesh DNS answers for NAME on this node, and who provides it')
        .argument('<name>', 'service name, e.g. db or db.mesh'),
    ),
  ).action(async (name: string, flags: ReadFlags) => {
    const answer = await ctx.client(flags).resolve(name);
    if (flags.json) {
      writeJson(ctx.stdout, answer);
      return;
    }
    const s = answer.service;
    const fields: [string, string][] = [
      ['name', answer.name],
      ['addresses', formatList(answer.addresses)],
      ['ports', formatList(s.ports.map(String))],
      ['providers', formatList(s.providers.map((p) => `${p.node}(${p.state})`))],
    ];
    for (const problem of s.problems) fields.push(['problem', problem]);
    ctx.stdout.write(formatFields(fields));
  });
}
