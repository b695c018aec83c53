/**
 * Linux namespace, process and program-lookup helpers shared by the benchmark topology (bench/netns.ts) and the
 * end-to-end test topology (test/e2e/helpers/netns.ts). They live under bench/ because the build
 * compiles bench/ and not test/, while the tests may import from anywhere.
 *
 * Both topologies name everything they create `<prefix><pid>-…`, so that a later run can tell a
 * dead run's leftovers from a live one's (`sweepStaleOf`).
 */
import { execFileSync, spawn as spawnChild, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants as fsConstants, readdirSync, readFileSync, rmSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ErrorCodes, MeshError } from '../src/errors.js';

const IP_TIMEOUT_MS = 15_000;
/** How long deleteNamespaceSync waits for the processes it SIGKILLed: 100 x 20 ms. */
const KILL_WAIT_STEPS = 100;
const KILL_WAIT_STEP_MS = 20;

/** The program `name` on PATH, or in the sbin and bin dirs a root shell would search (an `ip` or `sshd` off a user's PATH). */
export function findOnPath(name: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** Runs `ip ARGS` (as root); throws INTERNAL with ip's stderr when it fails. */
export function runIp(args: readonly string[], timeoutMs = IP_TIMEOUT_MS): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new MeshError(ErrorCodes.INTERNAL, `ip ${args.join(' ')}: failed: ${stderr.trim() || String(err)}`, { cause: err });
  }
}

/** runIp, with '' for a failure (cleanup paths, where the thing may already be gone). */
export function tryIp(args: readonly string[]): string {
  try {
    return runIp(args);
  } catch {
    return '';
  }
}

export function listNamespaces(): string[] {
  return tryIp(['netns', 'list'])
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name !== '');
}

export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM means it exists but belongs to someone else: still alive.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True while `pid` exists and is not a zombie (a killed child may wait a while for its reaper). */
export function isPidRunning(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // The state letter follows the last ')': the command name itself may contain parentheses.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** Signals the process group `pid` leads (children are spawned detached, so each leads one). */
export function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // group already gone
  }
}

/**
 * SIGKILLs whatever still runs inside `ns` (daemons that double-forked out of our process groups),
 * waits (bounded) until they are gone so that ports and files are free, then deletes the namespace
 * and its /etc/netns dir. Synchronous so that an 'exit' hook can use it.
 */
export function deleteNamespaceSync(ns: string): void {
  const killed: number[] = [];
  for (const line of tryIp(['netns', 'pids', ns]).split('\n')) {
    const pid = Number(line.trim());
    if (Number.isInteger(pid) && pid > 1 && pid !== process.pid) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } catch {
        // exited meanwhile
      }
    }
  }
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < KILL_WAIT_STEPS && killed.some(isPidRunning); i++) Atomics.wait(sleeper, 0, 0, KILL_WAIT_STEP_MS);
  tryIp(['netns', 'del', ns]);
  rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
}

/**
 * Removes what runs that no longer exist left behind: namespaces whose name matches `namespaces`
 * and entries of each dir that match its pattern, where the pattern's first group is the pid of
 * the run that made them and that pid is gone. Returns the namespaces and paths it removed.
 */
export function sweepStaleOf(namespaces: RegExp, dirs: readonly (readonly [dir: string, entries: RegExp])[]): string[] {
  const removed: string[] = [];
  const isStale = (name: string, pattern: RegExp): boolean => {
    const m = pattern.exec(name);
    if (m === null) return false;
    const pid = Number(m[1]);
    return pid !== process.pid && !isPidAlive(pid);
  };
  for (const ns of listNamespaces()) {
    if (!isStale(ns, namespaces)) continue;
    deleteNamespaceSync(ns);
    removed.push(ns);
  }
  for (const [dir, pattern] of dirs) {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (!isStale(entry, pattern)) continue;
      rmSync(join(dir, entry), { recursive: true, force: true });
      removed.push(join(dir, entry));
    }
  }
  return removed;
}

/** Resolves true once `child` has exited, false after `ms` without an exit. */
export function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, ms);
    timer.unref();
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

export interface NsExecOptions {
  /** On expiry the whole process group is killed and `timedOut` is set. */
  timeoutMs?: number;
  input?: string | Uint8Array;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Output kept per stream; more is dropped (and `truncated` set) so a chatty command cannot exhaust memory. Default 16 MiB. */
  maxOutputBytes?: number;
}

export interface NsExecResult {
  /** Exit status, or null when the process died from a signal (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  truncated: boolean;
}

export interface NsSpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  stdio?: SpawnOptions['stdio'];
}

const EXIT_WAIT_MS = 5_000;
const DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

/**
 * The namespaces a topology created and the processes it started in them, and their removal: on
 * destroy(), on process exit and on SIGINT/SIGTERM (a run stopped with Ctrl-C leaves nothing).
 * Every process gets its own process group (`ip netns exec` execs, so child.pid is the command's
 * pid), so that cleanup reaches grandchildren (runuser → postgres → backends).
 */
export class NamespaceProcesses {
  readonly #label: string;
  readonly #defaultTimeoutMs: number;
  readonly #afterCleanupSync: () => void;
  readonly #namespaces: string[] = [];
  readonly #children = new Set<ChildProcess>();
  #destroying: Promise<void> | undefined;
  readonly #onExit = (): void => this.#destroySync();
  readonly #onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${this.#label}: ${signal}: removing namespaces ${this.#namespaces.join(', ')}\n`);
    this.#destroySync();
    this.#removeHooks();
    // Our listener suppressed the default action; if nobody else handles the signal, restore it.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };

  /** `afterCleanupSync` removes what else the topology made (temp dirs, sockets); it runs on every cleanup path. */
  constructor(label: string, opts: { defaultTimeoutMs: number; afterCleanupSync?: () => void }) {
    this.#label = label;
    this.#defaultTimeoutMs = opts.defaultTimeoutMs;
    this.#afterCleanupSync = opts.afterCleanupSync ?? ((): void => undefined);
    process.on('exit', this.#onExit);
    process.on('SIGINT', this.#onSignal);
    process.on('SIGTERM', this.#onSignal);
  }

  /** Creates namespace `ns` with its loopback up; destroy() deletes it. */
  addNamespace(ns: string): void {
    runIp(['netns', 'add', ns]);
    this.#namespaces.push(ns);
    runIp(['-n', ns, 'link', 'set', 'lo', 'up']);
  }

  /** A long-lived process in its own process group inside `ns`. */
  spawn(ns: string, cmd: string, args: readonly string[] = [], opts: NsSpawnOptions = {}): ChildProcess {
    if (this.#destroying !== undefined) throw new MeshError(ErrorCodes.INTERNAL, `${this.#label}: spawn '${cmd}' after destroy()`);
    const child = spawnChild('ip', ['netns', 'exec', ns, cmd, ...args], {
      detached: true,
      stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
    });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    // A spawn failure (ENOENT) is reported through 'exit' too; without a listener it would crash the process.
    child.on('error', () => undefined);
    return child;
  }

  /** Runs `cmd` in `ns` to its end (or its timeout) and collects its output. */
  exec(ns: string, cmd: string, args: readonly string[] = [], opts: NsExecOptions = {}): Promise<NsExecResult> {
    const maxBytes = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    const child = this.spawn(ns, cmd, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      ...(opts.env === undefined ? {} : { env: opts.env }),
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
    });
    return new Promise((resolve) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outBytes = 0;
      let errBytes = 0;
      let truncated = false;
      let timedOut = false;
      let spawnError = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        if (outBytes + chunk.length > maxBytes) truncated = true;
        else out.push(chunk);
        outBytes += chunk.length;
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        if (errBytes + chunk.length > maxBytes) truncated = true;
        else err.push(chunk);
        errBytes += chunk.length;
      });
      child.on('error', (e) => (spawnError = e.message));
      const timer = setTimeout(() => {
        timedOut = true;
        if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
      }, opts.timeoutMs ?? this.#defaultTimeoutMs);
      timer.unref();
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') + spawnError, timedOut, truncated });
      });
      if (opts.input !== undefined && child.stdin !== null) {
        child.stdin.on('error', () => undefined); // the command may exit without reading its input
        child.stdin.end(opts.input);
      }
    });
  }

  /** SIGTERM to the child's process group, SIGKILL after `graceMs`; resolves once it has exited. */
  async kill(child: ChildProcess, graceMs = 3_000): Promise<void> {
    if (child.pid === undefined) return;
    killGroup(child.pid, 'SIGTERM');
    if (await waitForExit(child, graceMs)) return;
    killGroup(child.pid, 'SIGKILL');
    await waitForExit(child, EXIT_WAIT_MS);
  }

  /** Kills every process started here or still inside the namespaces, deletes them and the rest. Idempotent. */
  destroy(): Promise<void> {
    this.#destroying ??= (async () => {
      await Promise.all([...this.#children].map((c) => this.kill(c, 2_000)));
      this.#destroySync();
      this.#removeHooks();
    })();
    return this.#destroying;
  }

  #destroySync(): void {
    for (const child of this.#children) if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
    this.#children.clear();
    for (const ns of this.#namespaces.splice(0).reverse()) deleteNamespaceSync(ns);
    this.#afterCleanupSync();
  }

  #removeHooks(): void {
    process.off('exit', this.#onExit);
    process.off('SIGINT', this.#onSignal);
    process.off('SIGTERM', this.#onSignal);
  }
}
