import { Command } from 'commander';
import { createContext, type CliDeps } from './context.js';
import { exitCodeFor } from './exit-codes.js';
import { ownPackageVersion } from '../util/package-root.js';
import { registerAgentCommand } from './agent.js';
import { registerInitCommand } from './init.js';
import { registerTokenCommand } from './token.js';
import { registerJoinCommand } from './join.js';
import { registerStatusCommand } from './status.js';
import { registerPeersCommand } from './peers.js';
import { registerServicesCommand } from './services.js';
import { registerExposeCommand } from './expose.js';
import { registerUnexposeCommand } from './unexpose.js';
import { registerResolveCommand } from './resolve.js';
import { registerPingCommand } from './ping.js';
import { registerRevokeCommand } from './revoke.js';
import { registerComposeCommand } from './compose.js';

/**
 * The whole command line. Output settings and exitOverride are set on the root before the verbs
 * are added, because commander copies them into each subcommand when it is created.
 */
export function buildProgram(deps: CliDeps): Command {
  const ctx = createContext(deps);
  const program = new Command('osmoda-mesh');
  program
    .description('encrypted service mesh agent: reach Compose service names across servers')
    .version(deps.version ?? ownPackageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => void deps.stdout.write(text),
      writeErr: (text) => void deps.stderr.write(text),
    })
    .showHelpAfterError('(add --help for usage)')
    .showSuggestionAfterError(true);
  registerAgentCommand(program, ctx);
  registerInitCommand(program, ctx);
  registerTokenCommand(program, ctx);
  registerJoinCommand(program, ctx);
  registerStatusCommand(program, ctx);
  registerPeersCommand(program, ctx);
  registerServicesCommand(program, ctx);
  registerExposeCommand(program, ctx);
  registerUnexposeCommand(program, ctx);
  registerResolveCommand(program, ctx);
  registerPingCommand(program, ctx);
  registerRevokeCommand(program, ctx);
  registerComposeCommand(program, ctx);
  return program;
}

/** Runs one command line (process.argv shape: node, script, args…) and returns the exit code. */
export async function runCli(argv: readonly string[], deps: CliDeps): Promise<number> {
  const program = buildProgram(deps);
  try {
    await program.parseAsync([...argv], { from: 'node' });
    return 0;
  } catch (err) {
    return exitCodeFor(err, deps.stderr);
  }
}
