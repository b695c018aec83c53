import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname } from 'node:path';

/** Small, dependency-free measuring helpers shared by the bench scripts. */

export interface Measurement {
  name: string;
  group: string;
  opsPerSec: number;
  /** Bytes processed per second, for throughput cases. */
  bytesPerSec?: number;
  /** Ratio to the group's baseline measured in the same run (baseline = 1). */
  ratio?: number;
  runs: number[];
}

/**
 * Runs `fn` repeatedly for `ms` milliseconds, `repeats` times, and keeps the median ops/s: the
 * machine is noisy (2 vCPUs), so a single run is not a figure.
 */
export function measure(name: string, group: string, fn: () => void, opts: { ms: number; repeats: number; bytesPerOp?: number }): Measurement {
  for (let i = 0; i < 3; i++) fn(); // warm-up: JIT and key caches
  const runs: number[] = [];
  for (let r = 0; r < opts.repeats; r++) {
    let ops = 0;
    const start = performance.now();
    let now = start;
    // bounded by time and by count
    while (now - start < opts.ms && ops < 50_000_000) {
      fn();
      ops++;
      if ((ops & 7) === 0) now = performance.now();
    }
    now = performance.now();
    runs.push((ops * 1000) / (now - start));
  }
  const sorted = [...runs].sort((a, b) => a - b);
  const opsPerSec = sorted[Math.floor(sorted.length / 2)]!;
  const m: Measurement = { name, group, opsPerSec, runs };
  if (opts.bytesPerOp !== undefined) m.bytesPerSec = opsPerSec * opts.bytesPerOp;
  return m;
}

/** Sets each measurement's ratio to the first one of its group (the baseline). */
export function withRatios(ms: Measurement[]): Measurement[] {
  const baseline = new Map<string, number>();
  for (const m of ms) if (!baseline.has(m.group)) baseline.set(m.group, m.opsPerSec);
  return ms.map((m) => ({ ...m, ratio: m.opsPerSec / baseline.get(m.group)! }));
}

function fmt(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return n.toFixed(1);
}

export function markdownTable(ms: Measurement[]): string {
  const lines = ['| group | case | ops/s | throughput | ratio to baseline |', '| --- | --- | ---: | ---: | ---: |'];
  for (const m of ms) {
    const tput = m.bytesPerSec === undefined ? '' : `${fmt(m.bytesPerSec)}B/s`;
    lines.push(`| ${m.group} | ${m.name} | ${fmt(m.opsPerSec)} | ${tput} | ${m.ratio === undefined ? '' : `${m.ratio.toFixed(3)}x`} |`);
  }
  return lines.join('\n');
}

export function machine(): Record<string, unknown> {
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
  };
}

export function saveJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(value, null, 2) + '\n');
}
