/**
 * Two network namespaces joined by one veth pair, for the benchmark paths: `client` and `server`.
 * Both ends of the pair are born inside our namespaces, so the root namespace never sees a link or
 * an address of ours; 10.x addresses exist only inside them. Every name carries `osmb-<pid>-`, so
 * `sweepStale` can tell a dead run's leftovers (namespaces, /etc/netns dirs, temp dirs, wireguard
 * sockets) from a live one's. Cleanup runs on destroy(), on process exit and on SIGINT/SIGTERM.
 * (Ideas from test/e2e/helpers/netns.ts, which tsconfig does not compile for bench/.)
 */
import { execFileSync, spawn as spawnChild, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const BENCH_PREFIX = 'osmb-';
const STALE_NAME = /^osmb-(\d+)-/;
/** wireguard-go keeps its UAPI socket here, named after the interface (`wb<pid>c`). */
const WG_RUN_DIR = '/var/run/wireguard';
const STALE_WG = /^wb(\d+)[cs]\.sock$/;

export type Side = 'client' | 'server';

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface BenchTopology {
  readonly prefix: string;
  /** Per-run number (1..250) used in addresses and interface names. */
  readonly id: number;
  readonly ns: Readonly<Record<Side, string>>;
  /** Underlay addresses on the veth pair, 10.201.<id>.1 (client) and .2 (server). */
  readonly ip: Readonly<Record<Side, string>>;
  /** A temp dir named with the prefix (swept if the run dies). */
  readonly dir: string;
  exec(side: Side, cmd: string, args?: readonly string[], opts?: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string }): Promise<ExecResult>;
  execOk(side: Side, cmd: string, args?: readonly string[], opts?: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string }): Promise<ExecResult>;
  /** A long-lived process in its own process group inside the namespace. `ip netns exec` execs, so child.pid is the command's pid. */
  spawn(side: Side, cmd: string, args?: readonly string[], opts?: { env?: NodeJS.ProcessEnv; stdio?: SpawnOptions['stdio'] }): ChildProcess;
  kill(child: ChildProcess, graceMs?: number): Promise<void>;
  destroy(): Promise<void>;
}

function ip(args: readonly string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`ip ${args.join(' ')}: ${stderr.trim() || String(err)}`, { cause: err });
  }
}

function tryIp(args: readonly string[]): string {
  try {
    return ip(args);
  } catch {
    return '';
  }
}

function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** SIGKILLs what still runs inside `ns` (daemons that left our process groups), waits for it, deletes the namespace. Synchronous for the exit hook. */
function deleteNamespaceSync(ns: string): void {
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
  for (let i = 0; i < 100 && killed.some(isRunning); i++) Atomics.wait(sleeper, 0, 0, 20);
  tryIp(['netns', 'del', ns]);
  rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
}

/** Removes namespaces, /etc/netns dirs, /tmp dirs and wireguard sockets of benchmark runs whose pid is gone. */
export function sweepStale(): string[] {
  const removed: string[] = [];
  const isStale = (name: string, re: RegExp): boolean => {
    const m = re.exec(name);
    if (m === null) return false;
    const pid = Number(m[1]);
    return pid !== process.pid && !isPidAlive(pid);
  };
  for (const line of tryIp(['netns', 'list']).split('\n')) {
    const ns = line.trim().split(/\s+/)[0] ?? '';
    if (ns !== '' && isStale(ns, STALE_NAME)) {
      deleteNamespaceSync(ns);
      removed.push(`netns ${ns}`);
    }
  }
  for (const [dir, re] of [
    ['/etc/netns', STALE_NAME],
    ['/tmp', STALE_NAME],
    [WG_RUN_DIR, STALE_WG],
  ] as const) {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (!isStale(entry, re)) continue;
      rmSync(join(dir, entry), { recursive: true, force: true });
      removed.push(join(dir, entry));
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
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** Settings inside each namespace only: many short connections (conn/s) must not run out of ports. */
const NS_SYSCTLS: readonly (readonly [string, string])[] = [
  ['net.ipv4.tcp_tw_reuse', '1'],
  ['net.ipv4.ip_local_port_range', '1024 65000'],
];

export async function createBenchTopology(): Promise<BenchTopology> {
  sweepStale();
  const id = (process.pid % 250) + 1;
  const prefix = `${BENCH_PREFIX}${process.pid}-`;
  const ns = { client: `${prefix}c`, server: `${prefix}s` } as const;
  const addr = { client: `10.201.${id}.1`, server: `10.201.${id}.2` } as const;
  const dir = mkdtempSync(join('/tmp', prefix));
  const created: string[] = [];
  const children = new Set<ChildProcess>();
  let destroying: Promise<void> | undefined;

  const destroySync = (): void => {
    for (const child of children) if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
    children.clear();
    for (const name of created.splice(0).reverse()) deleteNamespaceSync(name);
    for (const side of ['c', 's']) rmSync(join(WG_RUN_DIR, `wb${id}${side}.sock`), { force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = (): void => destroySync();
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\nbench: ${signal}: removing namespaces ${ns.client}, ${ns.server}\n`);
    destroySync();
    removeHooks();
    process.kill(process.pid, signal);
  };
  const removeHooks = (): void => {
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const spawn = (side: Side, cmd: string, args: readonly string[] = [], opts: { env?: NodeJS.ProcessEnv; stdio?: SpawnOptions['stdio'] } = {}): ChildProcess => {
    if (destroying !== undefined) throw new Error(`bench topology ${prefix}: spawn '${cmd}' after destroy()`);
    const child = spawnChild('ip', ['netns', 'exec', ns[side], cmd, ...args], {
      detached: true,
      stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    children.add(child);
    child.once('exit', () => children.delete(child));
    child.on('error', () => undefined);
    return child;
  };

  const exec = (side: Side, cmd: string, args: readonly string[] = [], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<ExecResult> => {
    const child = spawn(side, cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], ...(opts.env === undefined ? {} : { env: opts.env }) });
    return new Promise((resolve) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let timedOut = false;
      let spawnError = '';
      child.stdout?.on('data', (c: Buffer) => out.push(c));
      child.stderr?.on('data', (c: Buffer) => err.push(c));
      child.on('error', (e) => (spawnError = e.message));
      const timer = setTimeout(() => {
        timedOut = true;
        if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
      }, opts.timeoutMs ?? 30_000);
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') + spawnError, timedOut });
      });
      if (opts.input !== undefined && child.stdin !== null) {
        child.stdin.on('error', () => undefined);
        child.stdin.end(opts.input);
      }
    });
  };

  const kill = async (child: ChildProcess, graceMs = 3_000): Promise<void> => {
    if (child.pid === undefined) return;
    killGroup(child.pid, 'SIGTERM');
    if (await waitForExit(child, graceMs)) return;
    killGroup(child.pid, 'SIGKILL');
    await waitForExit(child, 5_000);
  };

  const topology: BenchTopology = {
    prefix,
    id,
    ns,
    ip: addr,
    dir,
    exec,
    async execOk(side, cmd, args = [], opts = {}) {
      const r = await exec(side, cmd, args, opts);
      if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${side}: exit ${r.timedOut ? 'timeout' : (r.code ?? r.signal)}: ${r.stderr.trim().slice(0, 1500)}`);
      return r;
    },
    spawn,
    kill,
    destroy() {
      destroying ??= (async () => {
        await Promise.all([...children].map((c) => kill(c, 2_000)));
        destroySync();
        removeHooks();
      })();
      return destroying;
    },
  };

  try {
    for (const side of ['client', 'server'] as const) {
      ip(['netns', 'add', ns[side]]);
      created.push(ns[side]);
      ip(['-n', ns[side], 'link', 'set', 'lo', 'up']);
    }
    // One veth pair, both ends created inside our namespaces (eth0 on each side).
    ip(['-n', ns.client, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.server]);
    for (const side of ['client', 'server'] as const) {
      ip(['-n', ns[side], 'addr', 'add', `${addr[side]}/24`, 'dev', 'eth0']);
      ip(['-n', ns[side], 'link', 'set', 'eth0', 'up']);
      for (const [key, value] of NS_SYSCTLS) {
        // sysctl -w exits 0 even when the kernel refuses a value: read it back.
        await topology.exec(side, 'sysctl', ['-q', '-w', `${key}=${value}`]);
        const got = (await topology.execOk(side, 'sysctl', ['-n', key])).stdout.trim().split(/\s+/).join(' ');
        if (got !== value) throw new Error(`sysctl ${key} in ${ns[side]}: set ${value}, reads ${got}`);
      }
    }
  } catch (err) {
    await topology.destroy();
    throw err;
  }
  return topology;
}
