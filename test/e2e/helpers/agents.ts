/**
 * Agents as separate processes in the namespaces of a Topology: start (and restart with the same
 * state), the CLI against each agent's control socket, status polling, and log tails for failures.
 * Shared by the e2e suites that need more than the fixed setup of mesh.test.ts.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StatusResponse } from '../../../src/control/protocol.js';
import { AGENT_ENVIRONMENT, AGENT_NODE_FLAGS } from '../../../src/daemon/process-settings.js';
import type { ExecResult, Topology } from './netns.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const MAIN_JS = join(REPO_ROOT, 'dist/src/main.js');
/** `node` arguments that start an agent the way the installed osmoda-mesh does (its V8 flags, then main.js agent). */
export const AGENT_ARGV: readonly string[] = [...AGENT_NODE_FLAGS, MAIN_JS, 'agent'];
/** The environment to start it with, as the installed osmoda-mesh sets it (AGENT_ENVIRONMENT over this process's). */
export const agentEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ ...process.env, ...AGENT_ENVIRONMENT, ...extra });
const LOG_TAIL_BYTES = 6 * 1024;

export interface PollOptions {
  timeoutMs: number;
  intervalMs?: number;
}

/**
 * Calls `probe` until it returns a value other than undefined, bounded by time and by a count
 * derived from it. Throws naming `what` and the last thing seen.
 */
export async function pollUntil<T>(what: string, opts: PollOptions, probe: () => Promise<T | undefined>, lastSeen?: () => string): Promise<T> {
  const intervalMs = opts.intervalMs ?? 250;
  const deadline = Date.now() + opts.timeoutMs;
  const maxAttempts = Math.ceil(opts.timeoutMs / intervalMs) + 1;
  for (let attempt = 0; attempt < maxAttempts && Date.now() < deadline; attempt++) {
    const got = await probe();
    if (got !== undefined) return got;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`${what}: not reached within ${opts.timeoutMs} ms${lastSeen === undefined ? '' : `; last seen: ${lastSeen()}`}`);
}

export function tail(path: string, bytes = LOG_TAIL_BYTES): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > bytes ? `…${text.slice(-bytes)}` : text;
  } catch (err) {
    return `(cannot read ${path}: ${(err as Error).message})`;
  }
}

export function describeExec(r: ExecResult): string {
  return `exit ${r.timedOut ? 'timeout' : (r.code ?? r.signal)}; stdout: ${r.stdout.trim().slice(0, 1000)}; stderr: ${r.stderr.trim().slice(0, 1000)}`;
}

export interface AgentSpec {
  /** Arguments after `agent` (e.g. --config FILE). */
  args: readonly string[];
  env?: NodeJS.ProcessEnv;
}

export class AgentFleet {
  readonly #topo: Topology;
  readonly #dir: string;
  readonly #specs = new Map<string, AgentSpec>();
  readonly #children = new Map<string, ChildProcess>();

  constructor(topo: Topology, dir: string) {
    if (!existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run \`npm run build\` first (\`npm test\` does)`);
    this.#topo = topo;
    this.#dir = dir;
  }

  sockOf(host: string): string {
    return join(this.#dir, `${host}.sock`);
  }

  logOf(host: string): string {
    return join(this.#dir, `${host}.log`);
  }

  child(host: string): ChildProcess | undefined {
    return this.#children.get(host);
  }

  /** Starts the agent of `host` (or restarts it with the spec it had), appending to its log. */
  start(host: string, spec?: AgentSpec): ChildProcess {
    const use = spec ?? this.#specs.get(host);
    if (use === undefined) throw new Error(`no agent spec for ${host}`);
    this.#specs.set(host, use);
    const logFd = openSync(this.logOf(host), 'a');
    try {
      const child = this.#topo.spawn(host, process.execPath, [...AGENT_ARGV, '--control', this.sockOf(host), ...use.args], {
        env: agentEnv({ OSMODA_MESH_DNS_UPSTREAMS: 'none', ...use.env }),
        stdio: ['ignore', logFd, logFd],
      });
      this.#children.set(host, child);
      return child;
    } finally {
      closeSync(logFd);
    }
  }

  async stop(host: string, graceMs = 5_000): Promise<void> {
    const child = this.#children.get(host);
    if (child !== undefined) await this.#topo.kill(child, graceMs);
    this.#children.delete(host);
  }

  async stopAll(): Promise<void> {
    for (const host of [...this.#children.keys()]) await this.stop(host, 2_000);
  }

  cli(host: string, args: readonly string[], timeoutMs = 15_000): Promise<ExecResult> {
    return this.#topo.exec(host, process.execPath, [MAIN_JS, ...args, '--control', this.sockOf(host)], { timeoutMs });
  }

  async cliOk(host: string, args: readonly string[]): Promise<string> {
    const r = await this.cli(host, args);
    if (r.code !== 0) throw new Error(`osmoda-mesh ${args.join(' ')} on ${host}: ${describeExec(r)}`);
    return r.stdout;
  }

  /** `status --json`, or undefined while the agent does not answer (exit 3 with JSON is an answer). */
  async status(host: string): Promise<StatusResponse | undefined> {
    const r = await this.cli(host, ['status', '--json'], 10_000);
    if ((r.code !== 0 && r.code !== 3) || r.stdout.trim() === '') return undefined;
    try {
      return JSON.parse(r.stdout) as StatusResponse;
    } catch {
      return undefined;
    }
  }

  async waitAnswers(host: string, timeoutMs = 20_000): Promise<void> {
    await pollUntil(`agent ${host} answers on its control socket`, { timeoutMs }, async () => {
      const child = this.#children.get(host);
      if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) {
        throw new Error(`agent ${host} exited (${child.exitCode ?? child.signalCode}) before answering; log: ${tail(this.logOf(host))}`);
      }
      return (await this.status(host)) === undefined ? undefined : true;
    });
  }

  /** Waits until every listed host sees every other one up. */
  async waitAllUp(hosts: readonly string[], timeoutMs: number): Promise<void> {
    let last = '';
    await pollUntil(
      'every agent sees every peer up',
      { timeoutMs },
      async () => {
        const views = await Promise.all(hosts.map(async (h) => [h, await this.status(h)] as const));
        const stateOf = (s: StatusResponse | undefined, peer: string): string => s?.peers.find((p) => p.name === peer)?.state ?? 'absent';
        last = views.map(([h, s]) => `${h}: ${hosts.filter((p) => p !== h).map((p) => `${p}=${stateOf(s, p)}`).join(' ')}`).join('; ');
        return views.every(([h, s]) => hosts.every((p) => p === h || stateOf(s, p) === 'up')) ? true : undefined;
      },
      () => last,
    );
  }

  printLogs(why: string): void {
    for (const host of this.#specs.keys()) console.error(`----- ${why}: tail of agent ${host} log (${this.logOf(host)}) -----\n${tail(this.logOf(host))}`);
  }
}
