/**
 * Memory and CPU of a path's processes from /proc: a root pid and every descendant (sshd forks a
 * child per connection, socat one per connection). CPU is utime + stime + cutime + cstime (fields
 * 14 to 17 of /proc/<pid>/stat, in clock ticks), RSS is VmRSS from /proc/<pid>/status.
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

function readRssKb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]);
  } catch {
    return 0;
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
}

export function usage(roots: readonly number[]): Usage {
  let ticks = 0;
  let rssKb = 0;
  for (const pid of processTree(roots)) {
    ticks += readStat(pid)?.cpuTicks ?? 0;
    rssKb += readRssKb(pid);
  }
  return { cpuMs: ticks * TICK_MS, rssMb: rssKb / 1024 };
}

/**
 * Samples the trees of each side while `work` runs: CPU in % of one core over the whole run (so
 * 100 = one core busy) and the largest RSS seen (sampled every `everyMs`).
 */
export async function sampleWhile<T, K extends string>(sides: Readonly<Record<K, readonly number[]>>, work: () => Promise<T>, everyMs = 500): Promise<{ result: T; cpuPct: Record<K, number>; rssMbMax: Record<K, number> }> {
  const keys = Object.keys(sides) as K[];
  const before = Object.fromEntries(keys.map((k) => [k, usage(sides[k])])) as Record<K, Usage>;
  const rssMbMax = Object.fromEntries(keys.map((k) => [k, before[k].rssMb])) as Record<K, number>;
  const t0 = performance.now();
  const timer = setInterval(() => {
    for (const k of keys) rssMbMax[k] = Math.max(rssMbMax[k], usage(sides[k]).rssMb);
  }, everyMs);
  try {
    const result = await work();
    const ms = performance.now() - t0;
    const cpuPct = {} as Record<K, number>;
    for (const k of keys) {
      const after = usage(sides[k]);
      rssMbMax[k] = Math.max(rssMbMax[k], after.rssMb);
      cpuPct[k] = ((after.cpuMs - before[k].cpuMs) / ms) * 100;
    }
    return { result, cpuPct, rssMbMax };
  } finally {
    clearInterval(timer);
  }
}
