import { CommanderError } from 'commander';
import { ErrorCodes, MeshError } from '../errors.js';
import { CliExit, UsageError } from './context.js';
import { sanitize } from './output.js';

/** SPEC §2 cli: 0 ok, 1 error, 2 usage, 3 not connected / agent unreachable. */
export const ExitCodes = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  NOT_CONNECTED: 3,
} as const;

const HINTS: Partial<Record<string, string>> = {
  [ErrorCodes.AGENT_UNREACHABLE]: 'the CLI talks to a running agent over its control socket; check `systemctl status osmoda-mesh` or `journalctl -u osmoda-mesh`',
  [ErrorCodes.NOT_JOINED]: 'join a mesh first with `osmoda-mesh join --token-file FILE`, or create one with `osmoda-mesh init --mesh NAME`',
  [ErrorCodes.ALREADY_JOINED]: 'this node already belongs to a mesh; `osmoda-mesh status` shows which',
  [ErrorCodes.NOT_ADMIN]: 'run this on an admin node (one that ran `osmoda-mesh init`)',
  [ErrorCodes.TOKEN_EXPIRED]: 'create a new token on an admin node with `osmoda-mesh token create`',
  [ErrorCodes.TOKEN_USED_UP]: 'create a new token on an admin node with `osmoda-mesh token create --uses N`',
  [ErrorCodes.TOKEN_UNKNOWN]: 'the issuer does not know this token; create a new one with `osmoda-mesh token create`',
  [ErrorCodes.TOKEN_MALFORMED]: 'a join token starts with osmt1_; copy it whole, e.g. into a file for --token-file',
  [ErrorCodes.TOKEN_WRONG_MESH]: 'this token is for another mesh than the one this node belongs to',
  [ErrorCodes.NAME_TAKEN]: 'choose another node name with --name',
  [ErrorCodes.UNKNOWN_SERVICE]: 'list the services this node knows with `osmoda-mesh services`',
  [ErrorCodes.NO_PROVIDER]: 'no node providing it is up; see `osmoda-mesh status`',
  [ErrorCodes.PEER_DOWN]: 'see `osmoda-mesh status` for the peer\'s state and last error',
  [ErrorCodes.JOIN_FAILED]: 'check that this node can reach an endpoint of the issuer (see the agent log)',
};

export function hintFor(code: string): string | undefined {
  return HINTS[code];
}

/**
 * Maps anything a verb threw to an exit code, printing `error: …` (and a hint for known codes) on
 * stderr. Commander has already printed its own parse errors.
 */
export function exitCodeFor(err: unknown, stderr: { write(chunk: string): unknown }): number {
  if (err instanceof CliExit) return err.exitCode;
  if (err instanceof CommanderError) {
    // --help and --version end with exitCode 0; every parse failure is a usage error.
    return err.exitCode === 0 ? ExitCodes.OK : ExitCodes.USAGE;
  }
  if (err instanceof UsageError) {
    stderr.write(`error: ${sanitize(err.message)}\n`);
    return ExitCodes.USAGE;
  }
  if (err instanceof MeshError) {
    stderr.write(`error: ${sanitize(err.message)}\n`);
    const hint = hintFor(err.code);
    if (hint) stderr.write(`hint: ${hint}\n`);
    const isNotConnected = err.code === ErrorCodes.AGENT_UNREACHABLE || err.code === ErrorCodes.PEER_DOWN || err.code === ErrorCodes.PING_TIMEOUT;
    return isNotConnected ? ExitCodes.NOT_CONNECTED : ExitCodes.ERROR;
  }
  stderr.write(`error: ${sanitize(err instanceof Error ? err.message : String(err))}\n`);
  return ExitCodes.ERROR;
}
