import type { Command } from 'commander';
import type { Clock } from '../util/clock.js';
import type { RunAgent } from '../config/index.js';
import { ErrorCodes, MeshError } from '../errors.js';
import { ControlClient, CONTROL_SOCKET_ENV, DEFAULT_CONTROL_SOCKET } from '../control/index.js';

/** Where the CLI writes; process.stdout/stderr in production, string buffers in tests. */
export interface TextSink {
  write(chunk: string): unknown;
}

export interface CliDeps {
  runAgent: RunAgent;
  stdout: TextSink;
  stderr: TextSink;
  env: Readonly<Record<string, string | undefined>>;
  /** For "3s ago" and certificate expiry; the system clock by default. */
  clock?: Pick<Clock, 'now'>;
  /** Overrides the version read from package.json. */
  version?: string;
  /** Control client timeouts (tests shorten them). */
  timeoutMs?: number;
  joinTimeoutMs?: number;
}

/** Everything a verb needs, passed explicitly (no package-level flag structs). */
export interface CliContext {
  readonly stdout: TextSink;
  readonly stderr: TextSink;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly runAgent: RunAgent;
  now(): number;
  client(options: ControlOptions): ControlClient;
}

export interface ControlOptions {
  control?: string;
}

/** Thrown by a verb to end with a given exit code after it has printed what it wanted. */
export class CliExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
    this.name = 'CliExit';
  }
}

/** A usage mistake found after commander parsed the line (e.g. two token sources): exit 2. */
export class UsageError extends MeshError {
  constructor(message: string) {
    super(ErrorCodes.INVALID_ARGUMENT, message);
    this.name = 'UsageError';
  }
}

export function createContext(deps: CliDeps): CliContext {
  const clock = deps.clock ?? { now: () => Date.now() };
  return {
    stdout: deps.stdout,
    stderr: deps.stderr,
    env: deps.env,
    runAgent: deps.runAgent,
    now: () => clock.now(),
    client: (options) => {
      const init: ConstructorParameters<typeof ControlClient>[0] = { socketPath: controlSocketPath(options, deps.env) };
      if (deps.timeoutMs !== undefined) init.timeoutMs = deps.timeoutMs;
      if (deps.joinTimeoutMs !== undefined) init.joinTimeoutMs = deps.joinTimeoutMs;
      return new ControlClient(init);
    },
  };
}

/** --control, else OSMODA_MESH_CONTROL, else the default path. */
export function controlSocketPath(options: ControlOptions, env: Readonly<Record<string, string | undefined>>): string {
  if (options.control !== undefined && options.control !== '') return options.control;
  const fromEnv = env[CONTROL_SOCKET_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return DEFAULT_CONTROL_SOCKET;
}

export function addControlOption(command: Command): Command {
  return command.option('--control <path>', `agent control socket (env ${CONTROL_SOCKET_ENV}, default ${DEFAULT_CONTROL_SOCKET})`);
}

export function addJsonOption(command: Command): Command {
  return command.option('--json', 'print the API answer as JSON');
}
