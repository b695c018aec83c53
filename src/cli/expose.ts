import type { Command } from 'commander';
import type { ExposeRequest } from '../control/index.js';
import { addControlOption, type CliContext, type ControlOptions } from './context.js';
import { collectAccessRulesArg, parseHostPortArg, parseNameArg, parsePortArg } from './args.js';
import { sanitize } from './output.js';

interface ExposeFlags extends ControlOptions {
  target?: string;
  allowFrom?: string[];
}

export function registerExposeCommand(program: Command, ctx: CliContext): void {
  addControlOption(
    program
      .command('expose')
      .description('offer a local service to the mesh under NAME')
      .argument('<name>', 'service name (a DNS label, e.g. the Compose service name)', parseNameArg)
      .argument('<port>', 'port the mesh reaches it on', parsePortArg)
      .option('--target <host:port>', 'where this node dials it (default 127.0.0.1:PORT)', parseHostPortArg)
      .option('--allow-from <rules>', "only these may reach it: node names and tag:<tag>, comma-separated (repeatable; default every member)", collectAccessRulesArg),
  ).action(async (name: string, port: number, flags: ExposeFlags) => {
    const request: ExposeRequest = { name, port };
    if (flags.target !== undefined) request.target = flags.target;
    if (flags.allowFrom !== undefined) request.allowFrom = flags.allowFrom;
    const { service } = await ctx.client(flags).expose(request);
    const target = flags.target ?? `127.0.0.1:${port}`;
    ctx.stdout.write(sanitize(`exposed ${service.name} on port ${port} -> ${target} (other nodes reach it as ${service.name}:${port}, address ${service.vip})`) + '\n');
    if (flags.allowFrom !== undefined) ctx.stdout.write(sanitize(`only from: ${flags.allowFrom.join(', ') || 'nobody (this node only)'}`) + '\n');
    for (const problem of service.problems) ctx.stderr.write(sanitize(`warning: ${service.name}: ${problem}`) + '\n');
  });
}
