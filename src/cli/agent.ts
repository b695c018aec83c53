import type { Command } from 'commander';
import type { AgentCliOptions } from '../config/index.js';
import { CONTROL_SOCKET_ENV } from '../control/index.js';
import { CliExit, type CliContext } from './context.js';
import { collectEndpointArg, parseHostPortArg } from './args.js';

/** commander's parsed flags have the same names as the daemon's options. */
type AgentFlags = AgentCliOptions;

/** Builds the daemon's options from the flags, leaving out what was not given (the config decides). */
export function agentOptionsFromFlags(flags: AgentFlags, env: Readonly<Record<string, string | undefined>>): AgentCliOptions {
  const options: AgentCliOptions = {};
  if (flags.config !== undefined) options.config = flags.config;
  if (flags.stateDir !== undefined) options.stateDir = flags.stateDir;
  if (flags.listen !== undefined) options.listen = flags.listen;
  if (flags.publicEndpoint !== undefined) options.publicEndpoint = flags.publicEndpoint;
  // The same variable the client verbs read, so `OSMODA_MESH_CONTROL=… osmoda-mesh agent` and
  // `osmoda-mesh status` agree on the socket.
  const control = flags.control ?? (env[CONTROL_SOCKET_ENV] || undefined);
  if (control !== undefined) options.control = control;
  if (flags.dns !== undefined) options.dns = flags.dns;
  if (flags.vipRange !== undefined) options.vipRange = flags.vipRange;
  return options;
}

export function registerAgentCommand(program: Command, ctx: CliContext): void {
  program
    .command('agent')
    .description('run the mesh agent in the foreground (flags override the config file)')
    .option('--config <file>', 'JSON config file')
    .option('--state-dir <dir>', 'state directory (keys, certificate, membership)')
    .option('--listen <host:port>', 'tunnel listen address (default 0.0.0.0:18800)', parseHostPortArg)
    .option('--public-endpoint <url>', 'endpoint advertised to peers, e.g. ws://203.0.113.7:18800/osmoda-mesh/v1 (repeatable)', collectEndpointArg)
    .option('--control <path>', `control socket (env ${CONTROL_SOCKET_ENV})`)
    .option('--dns <host:port|off>', "mesh DNS listen address (default 127.77.0.53:53); 'off' runs no DNS server", (value: string) =>
      value === 'off' ? value : parseHostPortArg(value),
    )
    .option('--vip-range <cidr>', 'virtual IP range inside 127.0.0.0/8 (default 127.77.0.0/16)')
    .action(async (flags: AgentFlags) => {
      const code = await ctx.runAgent(agentOptionsFromFlags(flags, ctx.env));
      if (code !== 0) throw new CliExit(code);
    });
}
