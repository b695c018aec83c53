/**
 * Network-namespace topology for end-to-end tests: one namespace per host, all joined by veth pairs
 * to a Linux bridge that lives in a "switch" namespace of its own. Nothing is created in the root
 * namespace (the veth pair is made inside the host namespace and its peer moved straight into the
 * switch), so a crashed test can leave namespaces behind but never a stray address or link on the
 * machine. Names carry `osmt-<pid>-` so `sweepStale` can tell which leftovers belong to dead runs.
 */
import { execFileSync, spawn as spawnChild } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ErrorCodes, MeshError } from '../../../src/errors.js';

export interface HostInfo {
  /** Namespace name, usable with `ip netns exec`. */
  readonly ns: string;
  /** The host's address on the shared bridge (10.77.<subnet>.<n>, /24). */
  readonly ip: string;
}

export interface ExecOptions {
  /** Default 15 000 ms; on expiry the whole process group is killed and `timedOut` is set. */
  timeoutMs?: number;
  input?: string | Uint8Array;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Output kept per stream; more is dropped (and `truncated` set) so a chatty command cannot exhaust memory. Default 16 MiB. */
  maxOutputBytes?: number;
}

export interface ExecResult {
  /** Exit status, or null when the process died from a signal (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  truncated: boolean;
}

export interface SpawnInNsOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  stdio?: SpawnOptions['stdio'];
}

export interface ResolverConfig {
  nameserver: string;
  search?: string | readonly string[];
}

export interface Topology {
  /** The `osmt-<pid>-<tag>-` prefix shared by every namespace of this topology. */
  readonly prefix: string;
  readonly switchNs: string;
  /** `10.77.<subnet>` (no trailing dot); hosts are `.1`, `.2`, … in the order given. */
  readonly subnet: string;
  readonly hosts: Readonly<Record<string, HostInfo>>;
  exec(host: string, cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Like `exec`, but rejects with the command's stderr unless it exits 0. */
  execOk(host: string, cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts a long-lived process in its own process group; `destroy()` kills that group. */
  spawn(host: string, cmd: string, args?: readonly string[], opts?: SpawnInNsOptions): ChildProcess;
  /** SIGTERM to the child's process group, SIGKILL after `graceMs` (default 3000); resolves once it has exited. */
  kill(child: ChildProcess, graceMs?: number): Promise<void>;
  /** Writes /etc/netns/<ns>/resolv.conf, which `ip netns exec` bind-mounts over /etc/resolv.conf. */
  setResolver(host: string, config: ResolverConfig): void;
  linkDown(host: string): Promise<void>;
  linkUp(host: string): Promise<void>;
  /** Kills every process started here or still inside our namespaces, deletes the namespaces and their /etc/netns dirs. Idempotent. */
  destroy(): Promise<void>;
}

export interface TopologyOptions {
  hosts: readonly string[];
}

/** Prefix every namespace and temp dir this harness creates starts with. */
export const NAME_PREFIX = 'osmt-';
const HOST_NAME = /^[a-z][a-z0-9]{0,11}$/;
const MAX_HOSTS = 200;
const ROOT_CMD_TIMEOUT_MS = 15_000;
const EXIT_WAIT_MS = 5_000;
const KILL_WAIT_STEPS = 100;
const KILL_WAIT_STEP_MS = 20;
const STALE_NAME = /^osmt-(\d+)-/;
/** Temp dirs go here, not os.tmpdir(): the postgres user must be able to reach them, and the sweep must find them. */
export const TMP_ROOT = '/tmp';

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/** The bin dir of the newest PostgreSQL under /usr/lib/postgresql (Debian keeps server binaries off PATH). */
export function findPostgresBinDir(): string | undefined {
  let versions: string[];
  try {
    versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v));
  } catch {
    return undefined;
  }
  versions.sort((x, y) => Number(y) - Number(x));
  for (const v of versions) {
    const dir = `/usr/lib/postgresql/${v}/bin`;
    try {
      accessSync(join(dir, 'postgres'), fsConstants.X_OK);
      return dir;
    } catch {
      // broken install of this version; try an older one
    }
  }
  return undefined;
}

export type E2eAvailability = { ok: true } | { ok: false; reason: string };

/** What the e2e suites need from the machine; `reason` lists everything missing at once. */
export function e2eAvailability(): E2eAvailability {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push(`Linux (got ${process.platform})`);
  if (process.getuid?.() !== 0) missing.push(`root (running as uid ${process.getuid?.() ?? 'unknown'})`);
  for (const bin of ['ip', 'ping', 'redis-server', 'redis-cli', 'runuser', 'psql', 'pg_isready']) {
    if (findOnPath(bin) === undefined) missing.push(`\`${bin}\` on PATH`);
  }
  const pgBin = findPostgresBinDir();
  if (pgBin === undefined) missing.push('postgres/initdb/pg_ctl under /usr/lib/postgresql/<version>/bin');
  else {
    for (const bin of ['initdb', 'pg_ctl']) {
      try {
        accessSync(join(pgBin, bin), fsConstants.X_OK);
      } catch {
        missing.push(`${join(pgBin, bin)}`);
      }
    }
  }
  if (missing.length === 0) return { ok: true };
  return { ok: false, reason: `missing: ${missing.join(', ')} (CI installs them in .ci/run)` };
}

function isPidAlive(pid: number): boolean {
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

function runRoot(args: readonly string[], timeoutMs = ROOT_CMD_TIMEOUT_MS): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new MeshError(ErrorCodes.INTERNAL, `ip ${args.join(' ')}: failed: ${stderr.trim() || String(err)}`, {
      cause: err,
    });
  }
}

function tryRunRoot(args: readonly string[]): string {
  try {
    return runRoot(args);
  } catch {
    return '';
  }
}

function listNamespaces(): string[] {
  return tryRunRoot(['netns', 'list'])
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name !== '');
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // group already gone
  }
}

/** SIGKILLs whatever still runs inside `ns` (daemons that double-forked out of our process groups), then deletes it. Synchronous so the 'exit' hook can use it. */
function deleteNamespaceSync(ns: string): void {
  const killed: number[] = [];
  for (const line of tryRunRoot(['netns', 'pids', ns]).split('\n')) {
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
  // SIGKILL is asynchronous: wait (bounded) so that when destroy() returns, ports and files are free.
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < KILL_WAIT_STEPS && killed.some(isPidRunning); i++) Atomics.wait(sleeper, 0, 0, KILL_WAIT_STEP_MS);
  tryRunRoot(['netns', 'del', ns]);
  rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
}

/**
 * Removes namespaces, /etc/netns dirs and temp dirs named `osmt-<pid>-…` whose pid is no longer
 * running: leftovers of a run that was SIGKILLed before its hooks could clean up. Returns what it removed.
 */
export function sweepStale(): string[] {
  const removed: string[] = [];
  const isStale = (name: string): boolean => {
    const m = STALE_NAME.exec(name);
    if (m === null) return false;
    const pid = Number(m[1]);
    return pid !== process.pid && !isPidAlive(pid);
  };
  for (const ns of listNamespaces()) {
    if (isStale(ns)) {
      deleteNamespaceSync(ns);
      removed.push(ns);
    }
  }
  for (const [dir, kind] of [
    ['/etc/netns', 'netns-dir'],
    [TMP_ROOT, 'tmp'],
  ] as const) {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (!isStale(entry)) continue;
      rmSync(join(dir, entry), { recursive: true, force: true });
      removed.push(`${kind}:${join(dir, entry)}`);
    }
  }
  return removed;
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
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

export async function createTopology(options: TopologyOptions): Promise<Topology> {
  const names = options.hosts;
  if (names.length === 0 || names.length > MAX_HOSTS) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `topology hosts: expected 1..${MAX_HOSTS} names, got ${names.length}`,
    );
  }
  const seen = new Set<string>();
  for (const name of names) {
    if (!HOST_NAME.test(name)) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `topology host name: expected ${HOST_NAME.source}, got '${name}'`,
      );
    }
    if (seen.has(name)) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `topology host name: '${name}' appears twice`);
    }
    seen.add(name);
  }

  sweepStale();

  // A random tag lets one process build several topologies; the subnet only has to differ between
  // concurrent runs for readability in `ip` output, since each topology's bridge is isolated anyway.
  const tag = Math.floor(Math.random() * 0x10000)
    .toString(16)
    .padStart(4, '0');
  const prefix = `${NAME_PREFIX}${process.pid}-${tag}-`;
  const subnet = `10.77.${(process.pid % 250) + 1}`;
  const switchNs = `${prefix}sw`;
  const hosts: Record<string, HostInfo> = {};
  names.forEach((name, i) => {
    hosts[name] = { ns: `${prefix}${name}`, ip: `${subnet}.${i + 1}` };
  });

  const created: string[] = [];
  const children = new Set<ChildProcess>();
  let destroyPromise: Promise<void> | undefined;

  const killAllSync = (): void => {
    for (const child of children) if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
    children.clear();
  };
  const destroySync = (): void => {
    killAllSync();
    for (const ns of created.splice(0).reverse()) deleteNamespaceSync(ns);
  };
  const onExit = (): void => destroySync();
  const onSignal = (signal: NodeJS.Signals): void => {
    destroySync();
    removeHooks();
    // Our listener suppressed the default action; if nobody else handles the signal, restore it.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const removeHooks = (): void => {
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const hostInfo = (host: string): HostInfo => {
    const info = hosts[host];
    if (info === undefined) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `topology host: got '${host}', expected one of ${Object.keys(hosts).join(', ')}`,
      );
    }
    return info;
  };

  const trackedSpawn = (
    host: string,
    cmd: string,
    args: readonly string[],
    opts: SpawnInNsOptions,
  ): ChildProcess => {
    if (destroyPromise !== undefined) {
      throw new MeshError(ErrorCodes.INTERNAL, `topology ${prefix}: spawn '${cmd}' after destroy()`);
    }
    const { ns } = hostInfo(host);
    const child = spawnChild('ip', ['netns', 'exec', ns, cmd, ...args], {
      // Own process group, so cleanup reaches grandchildren (runuser → postgres → backends).
      detached: true,
      stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
    });
    children.add(child);
    child.once('exit', () => children.delete(child));
    // A spawn failure (ENOENT) is reported through 'exit' too; without a listener it would crash the worker.
    child.on('error', () => undefined);
    return child;
  };

  const exec = (host: string, cmd: string, args: readonly string[] = [], opts: ExecOptions = {}): Promise<ExecResult> => {
    const timeoutMs = opts.timeoutMs ?? 15_000;
    const maxBytes = opts.maxOutputBytes ?? 16 * 1024 * 1024;
    const child = trackedSpawn(host, cmd, args, {
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
      let spawnError: Error | undefined;
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
      child.on('error', (e) => {
        spawnError = e;
      });
      const timer = setTimeout(() => {
        timedOut = true;
        if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
      }, timeoutMs);
      timer.unref();
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        const stderr = Buffer.concat(err).toString('utf8');
        resolve({
          code,
          signal,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: spawnError === undefined ? stderr : `${stderr}${spawnError.message}`,
          timedOut,
          truncated,
        });
      });
      if (opts.input !== undefined && child.stdin !== null) {
        child.stdin.on('error', () => undefined); // the command may exit without reading its input
        child.stdin.end(opts.input);
      }
    });
  };

  const kill = async (child: ChildProcess, graceMs = 3_000): Promise<void> => {
    if (child.pid === undefined) return;
    killGroup(child.pid, 'SIGTERM');
    if (await waitForExit(child, graceMs)) return;
    killGroup(child.pid, 'SIGKILL');
    await waitForExit(child, EXIT_WAIT_MS);
  };

  const setLink = async (host: string, state: 'up' | 'down'): Promise<void> => {
    runRoot(['-n', hostInfo(host).ns, 'link', 'set', 'eth0', state]);
  };

  const topology: Topology = {
    prefix,
    switchNs,
    subnet,
    hosts,
    exec,
    async execOk(host, cmd, args = [], opts = {}) {
      const r = await exec(host, cmd, args, opts);
      if (r.code !== 0) {
        throw new MeshError(
          ErrorCodes.INTERNAL,
          `${cmd} ${args.join(' ')} in ${host}: expected exit 0, got ${r.timedOut ? 'timeout' : (r.code ?? r.signal)}: ${r.stderr.trim().slice(0, 2000)}`,
        );
      }
      return r;
    },
    spawn: (host, cmd, args = [], opts = {}) => trackedSpawn(host, cmd, args, opts),
    kill,
    setResolver(host, config) {
      const { ns } = hostInfo(host);
      const search = typeof config.search === 'string' ? [config.search] : (config.search ?? []);
      const lines = [`nameserver ${config.nameserver}`];
      if (search.length > 0) lines.push(`search ${search.join(' ')}`);
      mkdirSync(`/etc/netns/${ns}`, { recursive: true });
      writeFileSync(`/etc/netns/${ns}/resolv.conf`, `${lines.join('\n')}\n`);
    },
    linkDown: (host) => setLink(host, 'down'),
    linkUp: (host) => setLink(host, 'up'),
    destroy() {
      destroyPromise ??= (async () => {
        await Promise.all([...children].map((c) => kill(c, 2_000)));
        destroySync();
        removeHooks();
      })();
      return destroyPromise;
    },
  };

  try {
    runRoot(['netns', 'add', switchNs]);
    created.push(switchNs);
    runRoot(['-n', switchNs, 'link', 'set', 'lo', 'up']);
    runRoot(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
    runRoot(['-n', switchNs, 'link', 'set', 'br0', 'up']);
    names.forEach((name, i) => {
      const { ns, ip } = hosts[name] as HostInfo;
      runRoot(['netns', 'add', ns]);
      created.push(ns);
      runRoot(['-n', ns, 'link', 'set', 'lo', 'up']);
      // Both ends are born inside our namespaces: the root namespace never sees them.
      runRoot(['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', switchNs]);
      runRoot(['-n', switchNs, 'link', 'set', `p${i}`, 'master', 'br0']);
      runRoot(['-n', switchNs, 'link', 'set', `p${i}`, 'up']);
      runRoot(['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      runRoot(['-n', ns, 'link', 'set', 'eth0', 'up']);
    });
  } catch (err) {
    await topology.destroy();
    throw err;
  }
  return topology;
}
