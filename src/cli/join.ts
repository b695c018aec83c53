import { open } from 'node:fs/promises';
import type { Command } from 'commander';
import type { JoinRequestBody } from '../control/index.js';
import { ErrorCodes, MeshError } from '../errors.js';
import { addControlOption, UsageError, type CliContext, type ControlOptions } from './context.js';
import { parseNameArg } from './args.js';
import { sanitize } from './output.js';

export const TOKEN_ENV = 'OSMODA_MESH_TOKEN';
/** A token is a few hundred bytes; a bigger file is the wrong file. */
const MAX_TOKEN_FILE_BYTES = 64 * 1024;

interface JoinFlags extends ControlOptions {
  tokenFile?: string;
  name?: string;
}

export async function readTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    const file = await open(path, 'r');
    try {
      const buffer = Buffer.alloc(MAX_TOKEN_FILE_BYTES + 1);
      const { bytesRead } = await file.read(buffer, 0, buffer.length, null);
      if (bytesRead > MAX_TOKEN_FILE_BYTES) {
        throw new UsageError(`--token-file ${path}: expected a join token file of at most ${MAX_TOKEN_FILE_BYTES} bytes, got a bigger file`);
      }
      text = buffer.subarray(0, bytesRead).toString('utf8');
    } finally {
      await file.close();
    }
  } catch (err) {
    if (err instanceof MeshError) throw err;
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `--token-file ${path}: cannot read it: ${(err as Error).message}`, { cause: err });
  }
  const token = text.trim();
  if (token.length === 0) throw new UsageError(`--token-file ${path}: expected a join token, got an empty file`);
  return token;
}

/** Exactly one source: the argument or --token-file; OSMODA_MESH_TOKEN only when neither is given. */
export async function resolveToken(
  positional: string | undefined,
  flags: JoinFlags,
  env: Readonly<Record<string, string | undefined>>,
): Promise<{ token: string; source: 'argument' | 'file' | 'env' }> {
  if (positional !== undefined && flags.tokenFile !== undefined) {
    throw new UsageError('join: give the token either as an argument or with --token-file, not both');
  }
  if (flags.tokenFile !== undefined) return { token: await readTokenFile(flags.tokenFile), source: 'file' };
  if (positional !== undefined) {
    if (positional.trim().length === 0) throw new UsageError('join: expected a join token argument, got an empty string');
    return { token: positional.trim(), source: 'argument' };
  }
  const fromEnv = env[TOKEN_ENV]?.trim();
  if (fromEnv) return { token: fromEnv, source: 'env' };
  throw new UsageError(`join: no token; give --token-file FILE, the token as an argument, or set ${TOKEN_ENV}`);
}

export function registerJoinCommand(program: Command, ctx: CliContext): void {
  addControlOption(
    program
      .command('join')
      .description(`join a mesh with a token from \`osmoda-mesh token create\` (also read from ${TOKEN_ENV})`)
      .argument('[token]', 'the join token (prefer --token-file: arguments are visible in the process list)')
      .option('--token-file <file>', 'file holding the join token')
      .option('--name <name>', 'node name in the mesh (default: the host name)', parseNameArg),
  ).action(async (positional: string | undefined, flags: JoinFlags) => {
    const { token, source } = await resolveToken(positional, flags, ctx.env);
    if (source === 'argument') {
      ctx.stderr.write(`warning: a token given as an argument is visible to other users in the process list; prefer --token-file or ${TOKEN_ENV}\n`);
    }
    const request: JoinRequestBody = { token };
    if (flags.name !== undefined) request.name = flags.name;
    const answer = await ctx.client(flags).join(request);
    ctx.stdout.write(
      sanitize(
        answer.wasAlreadyJoined
          ? `already a member of mesh ${answer.mesh} as ${answer.node}; nothing to do`
          : `joined mesh ${answer.mesh} as ${answer.node}`,
      ) + '\n',
    );
  });
}
