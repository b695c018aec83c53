/**
 * Memory and CPU of a path's processes from /proc: a root pid and every descendant (sshd forks a
 * child per connection, socat one per connection). CPU is utime + stime + cutime + cstime (fields
 * 14 to 17 of /proc/<pid>/stat, in clock ticks), RSS is VmRSS from /proc/<pid>/status, and the
 * private part of it RssAnon from the same file: memory only the process holds (heaps, stacks, JIT
 * code), without the pages of the executable and the libraries it maps, which every process
 * running the same binary shares and which the kernel can drop and read back when memory is short.
 * A Node agent's RSS is mostly such pages of the `node` binary (README, Benchmarks). Both are
 * summed over the tree, so pages a forked child still shares copy-on-write with its parent (sshd's
 * per-connection children) count once for each: an upper bound for those paths.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK). */
const TICK_MS = 10;

interface Stat {
  ppid: number;
  cpuTicks: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may hold spaces and parentheses: state is field 3.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // utime + stime, plus cutime + cstime: the CPU of children already reaped (socat forks one per
    // connection, and its time would otherwise vanish when the child exits inside the window).
    return { ppid: Number(f[1]), cpuTicks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
  } catch {
    return undefined;
  }
}

export interface MemoryKb {
  rssKb: number;
  privateKb: number;
}

/** VmRSS and RssAnon from the text of /proc/<pid>/status (0 for a line that is missing). */
export function parseStatusMemoryKb(status: string): MemoryKb {
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    return m === null ? 0 : Number(m[1]);
  };
  return { rssKb: kb('VmRSS'), privateKb: kb('RssAnon') };
}

function readMemoryKb(pid: number): MemoryKb {
  try {
    return parseStatusMemoryKb(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return { rssKb: 0, privateKb: 0 };
  }
}

/** The roots and all their living descendants. */
export function processTree(roots: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const st = readStat(pid);
    if (st === undefined) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(pid);
    children.set(st.ppid, list);
  }
  const out: number[] = [];
  const stack = roots.filter((p) => readStat(p) !== undefined);
  while (stack.length > 0) {
    const pid = stack.pop()!;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

export interface Usage {
  /** CPU time used so far by the tree's living processes, ms. */
  cpuMs: number;
  rssMb: number;
  /** The part of rssMb that is the processes' own (RssAnon). */
  privateMb: number;
}

export function usage(roots: readonly number[]): Usage {
  let ticks = 0;
  let rssKb = 0;
  let privateKb = 0;
  for (const pid of processTree(roots)) {
    ticks += readStat(pid)?.cpuTicks ?? 0;
    const memory = readMemoryKb(pid);
    rssKb += memory.rssKb;
    privateKb += memory.privateKb;
  }
  return { cpuMs: ticks * TICK_MS, rssMb: rssKb / 1024, privateMb: privateKb / 1024 };
}

/**
 * Samples the trees of each side while `work` runs: CPU in % of one core over the whole run (so
 * 100 = one core busy), and the largest RSS and private memory seen (sampled every `everyMs`).
 */
export async function sampleWhile<T, K extends string>(
  sides: Readonly<Record<K, readonly number[]>>,
  work: () => Promise<T>,
  everyMs = 500,
): Promise<{ result: T; cpuPct: Record<K, number>; rssMbMax: Record<K, number>; privateMbMax: Record<K, number> }> {
  const keys = Object.keys(sides) as K[];
  const before = Object.fromEntries(keys.map((k) => [k, usage(sides[k])])) as Record<K, Usage>;
  const rssMbMax = Object.fromEntries(keys.map((k) => [k, before[k].rssMb])) as Record<K, number>;
  const privateMbMax = Object.fromEntries(keys.map((k) => [k, before[k].privateMb])) as Record<K, number>;
  const note = (k: K, now: Usage): void => {
    rssMbMax[k] = Math.max(rssMbMax[k], now.rssMb);
    privateMbMax[k] = Math.max(privateMbMax[k], now.privateMb);
  };
  const t0 = performance.now();
  const timer = setInterval(() => {
    for (const k of keys) note(k, usage(sides[k]));
  }, everyMs);
  try {
    const result = await work();
    const ms = performance.now() - t0;
    const cpuPct = {} as Record<K, number>;
    for (const k of keys) {
      const after = usage(sides[k]);
      note(k, after);
      cpuPct[k] = ((after.cpuMs - before[k].cpuMs) / ms) * 100;
    }
    return { result, cpuPct, rssMbMax, privateMbMax };
  } finally {
    clearInterval(timer);
  }
}
